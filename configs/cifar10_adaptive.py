"""Lee et al. VI-C on CIFAR-10 (ResNet-20, 140 epochs): the proposed adaptive batch and LR.

The proposed adaptive batch 256 -> 2048 (K = 5) with the LR co-scaled and x0.1
after epochs 80 and 120 (90.79 ± 0.2% in the paper).

One of their four methods, built by lbsgd.paper.lee_method("cifar10", ...).
Needs CIFAR-10 prepared by tensorflow-datasets under --data.data_dir (nothing
is downloaded):

    launch/run.sh -np 2 python -m lbsgd.train --config configs/cifar10_adaptive.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import lee_method


def get_config():
    return lee_method("cifar10", "adaptive")
