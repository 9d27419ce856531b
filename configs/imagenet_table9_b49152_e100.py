"""Table IX, row 4: batch 49152 (1536 nodes), 2600 iterations (100 epochs): 74.6/92.1 in
28 min. LR 6.4, 10-epoch warmup.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table9_b49152_e100.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table9_b49152_e100", 49152, 100, weight_decay=5e-5, collapse_epochs=0.06, warmup_epochs=10)
