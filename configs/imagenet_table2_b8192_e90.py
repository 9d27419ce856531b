"""Table II, row 1: batch 8192 (256 nodes), 14200 iterations (90 epochs): 75.81/92.93 in
140 min.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table2_b8192_e90.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table2_b8192_e90", 8192, 90)
