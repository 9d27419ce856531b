"""Lee et al. VI-C on CIFAR-10 (ResNet-20, 140 epochs): the best-tuned fixed small batch.

The best-tuned fixed small batch 128 (91.51 ± 0.3% in the paper).

One of their four methods, built by lbsgd.paper.lee_method("cifar10", ...).
Needs CIFAR-10 prepared by tensorflow-datasets under --data.data_dir (nothing
is downloaded):

    launch/run.sh -np 2 python -m lbsgd.train --config configs/cifar10_best_small.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import lee_method


def get_config():
    return lee_method("cifar10", "best_small")
