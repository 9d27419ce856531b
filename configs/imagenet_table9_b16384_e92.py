"""Table IX, row 2: batch 16384 (512 nodes), 7200 iterations (92 epochs): 76.26/93.19 in
74 min. LR held at 6.4, 7-epoch warmup (the paper: 7-10 for >= 16K).

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table9_b16384_e92.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table9_b16384_e92", 16384, 92, weight_decay=5e-5, collapse_epochs=0.06, warmup_epochs=7)
