"""Table IX, row 3: batch 32768 (1024 nodes), 4000 iterations (100 epochs): 75.31/92.70
in 42 min. LR held at 6.4 (linear scaling would give 12.8), 8-epoch warmup.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table9_b32768_e100.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table9_b32768_e100", 32768, 100, weight_decay=5e-5, collapse_epochs=0.06, warmup_epochs=8)
