"""Lee et al. VI-C on CIFAR-10 (ResNet-20, 140 epochs): the fixed large batch with linear scaling.

The fixed large batch 2048 with linear LR scaling and a 5-epoch warmup (the
paper: it "significantly degrades").

One of their four methods, built by lbsgd.paper.lee_method("cifar10", ...).
Needs CIFAR-10 prepared by tensorflow-datasets under --data.data_dir (nothing
is downloaded):

    launch/run.sh -np 2 python -m lbsgd.train --config configs/cifar10_linear_scaling.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import lee_method


def get_config():
    return lee_method("cifar10", "linear_scaling")
