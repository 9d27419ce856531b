"""The embedded default: ResNet-20 on scikit-learn's handwritten digits, offline.

A small end-to-end run of the Codreanu et al. recipe (linear LR scaling,
gradual warmup, polynomial decay, zero-gamma BN, BN moving average 0.95,
momentum SGD with L2 weight decay) on data that ships with scikit-learn.
"""

from lbsgd.config import (DataConfig, ModelConfig, OptimizerConfig, ScheduleConfig,
                          TrainConfig)


def get_config() -> TrainConfig:
    return TrainConfig(
        name="digits_resnet",
        epochs=15,
        batch_size=64,
        seed=0,
        target_accuracies=(0.90, 0.95, 0.97),
        data=DataConfig(name="digits", image_size=32, augment="crop"),
        model=ModelConfig(name="resnet20", bn_moving_average_fraction=0.95,
                          zero_gamma_last_bn=True),
        optimizer=OptimizerConfig(name="sgd", base_lr=0.4, reference_batch=256,
                                  momentum=0.9, weight_decay=5e-5),
        schedule=ScheduleConfig(warmup_epochs=2, decay="poly", power=1.0),
    )
