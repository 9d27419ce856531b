"""Table XI / Figure 4: the 120-epoch collapsed ensemble at batch 4096: linear decay to
epoch 30, power-2 to ~22% of the peak at 45, then 5 cycles (x3 in 3 epochs, /4 in 12)
ending at 60, 75, 90, 105, 120, a snapshot at each collapse end; 5-snapshot ensemble
77.5% top-1.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table11_ensemble_b4096_e120.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table11_ensemble_b4096_e120", 4096, 120, weight_decay=5e-5, kind="collapsed_ensemble")
