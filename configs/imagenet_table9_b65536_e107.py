"""Table IX, row 5 / Figure 3: batch 65536 (128 nodes x 512), 2100 iterations (107
epochs): 73.94/91.75. LR 6.4, 10-epoch warmup and the multi-step weight-decay increase
of Figure 3. The paper plots but does not list the steps; these are lbsgd's reading of
the figure: 5e-5, 6.25e-5 from epoch 30, 7.5e-5 from 60, 8.75e-5 from 85, then 1e-4 in a
7-epoch collapse.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table9_b65536_e107.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table9_b65536_e107", 65536, 107, weight_decay=5e-5, warmup_epochs=10,
        collapse_epochs=7, weight_decay_epochs=(30, 60, 85), weight_decay_values=(6.25e-5, 7.5e-5, 8.75e-5),
        collapse_weight_decay=1e-4)
