"""Table VIII, row 3: batch 4096, weight decay 5e-5 then a final collapse over the last
6% (5 of 90 epochs; power-2 LR decay, weight decay 1e-4, scale/aspect augmentation off):
76.65.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table8_collapse.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table8_collapse", 4096, 90, weight_decay=5e-5, collapse_epochs=0.06)
