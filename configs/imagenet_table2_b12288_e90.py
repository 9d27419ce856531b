"""Table II, row 2: batch 12288 (512 nodes), 9400 iterations (90 epochs): 75.25/92.90 in
80 min.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table2_b12288_e90.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table2_b12288_e90", 12288, 90)
