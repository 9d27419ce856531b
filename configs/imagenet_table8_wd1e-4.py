"""Table VIII, row 1: batch 4096, weight decay 1e-4, no collapse: 75.8 (90 epochs).

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table8_wd1e-4.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table8_wd1e-4", 4096, 90, weight_decay=1e-4)
