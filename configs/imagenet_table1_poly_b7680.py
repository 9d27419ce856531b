"""Table I, row 1: batch 7680 (240 nodes), 90 epochs, 5-epoch warmup, linear (power-1)
decay: 75.68/92.95.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table1_poly_b7680.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table1_poly_b7680", 7680, 90)
