"""Table I, row 2: the same run with the classical 3-step x0.1 decay at epochs 30, 60,
80: 75.44/92.69.

Codreanu et al.; the shared settings are in lbsgd.paper. Needs ImageNet
prepared by tensorflow-datasets under --data.data_dir.

    launch/run.sh -np N python -m lbsgd.train --config configs/imagenet_table1_steps_b7680.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.paper import imagenet_resnet50


def get_config():
    return imagenet_resnet50(
        "imagenet_table1_steps_b7680", 7680, 90, decay="steps", step_epochs=(30, 60, 80))
