"""Table III, row 4 (fastest-to-74%): batch 12288 (512 nodes), 54 epochs: 74.05/92.07 in
46 min.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table3_b12288_e54.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table3_b12288_e54", 12288, 54, target_accuracies=(0.74,))
