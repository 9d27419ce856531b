"""Table III, row 1 (fastest-to-74%): batch 4096 (256 nodes), 37 epochs: 74.05/92.12 in
63 min.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table3_b4096_e37.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table3_b4096_e37", 4096, 37, target_accuracies=(0.74,))
