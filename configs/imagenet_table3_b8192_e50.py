"""Table III, rows 2-3 (fastest-to-74%): batch 8192, 7800 iterations (50 epochs):
74.12/92.16.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table3_b8192_e50.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table3_b8192_e50", 8192, 50, target_accuracies=(0.74,))
