"""Table IX, row 1: batch 10240 (512 nodes), 11400 iterations (91 epochs), with the V-B
techniques (wd 5e-5, final collapse): 76.40/93.16 in 82 min.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table9_b10240_e91.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table9_b10240_e91", 10240, 91, weight_decay=5e-5, collapse_epochs=0.06)
