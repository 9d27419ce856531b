"""ResNet-20 on CIFAR-10 (He et al.'s small-experiment setting), read from a local data dir.

Pad-and-crop plus flip augmentation, momentum SGD 0.9, weight decay 1e-4,
LR 0.1 at batch 128 scaled linearly, x0.1 at epochs 80 and 120 of 160.
Needs CIFAR-10 prepared by tensorflow-datasets under --data.data_dir:

    launch/run.sh -np 2 python -m lbsgd.train --config configs/cifar10_resnet20.py \\
        --data.data_dir=/path/to/tensorflow_datasets
"""

from lbsgd.config import (DataConfig, ModelConfig, OptimizerConfig, ScheduleConfig,
                          TrainConfig)


def get_config() -> TrainConfig:
    return TrainConfig(
        name="cifar10_resnet20",
        epochs=160,
        batch_size=128,
        target_accuracies=(0.90, 0.91, 0.92),
        data=DataConfig(name="cifar10", data_dir="data/tensorflow_datasets", image_size=32,
                        augment="crop", flip=True),
        model=ModelConfig(name="resnet20"),
        optimizer=OptimizerConfig(name="sgd", base_lr=0.1, reference_batch=128, momentum=0.9,
                                  weight_decay=1e-4),
        schedule=ScheduleConfig(warmup_epochs=0, decay="steps", step_epochs=(80, 120)),
    )
