"""The ImageNet runs of Codreanu et al. as configs (Tables I-III, VIII, IX, XI; Sections IV-V, VI).

Every run trains the unmodified ResNet-50 (zero-gamma last BN per block, BN
moving-average fraction 0.95) on ImageNet-1K at 224x224 with Inception scale
and aspect-ratio augmentation plus flips, momentum 0.9 with momentum
correction, base LR 0.1 per 256 images scaled linearly with the global batch
(held at 6.4 for batches of 16K and more), gradual warmup (5 epochs; 7-10
for very large batches) and linear (power-1 polynomial) decay. Runs that
use the Section V-B techniques start with weight decay 5e-5 and end with a
final collapse of ~6% of the epochs (power-2 LR decay, weight decay 1e-4,
scale/aspect augmentation off).

`configs/imagenet_*.py` call :func:`imagenet_resnet50` with the numbers of
one table row; the data directory is a flag (`--data.data_dir`).
"""

from __future__ import annotations

from lbsgd.config import (DataConfig, EnsembleConfig, ModelConfig, OptimizerConfig,
                          ScheduleConfig, TrainConfig)

IMAGENET_DATA_DIR = "data/tensorflow_datasets"
MAX_LR_LARGE_BATCH = 6.4  # Section V-C: "we keep it at a value of 6.4" for >= 16K


def imagenet_resnet50(name: str, batch_size: int, epochs: int, *, weight_decay: float = 1e-4,
                      collapse_epochs: float = 0.0, warmup_epochs: float = 5.0,
                      decay: str = "poly", step_epochs=(30, 60, 80),
                      weight_decay_epochs=(), weight_decay_values=(),
                      collapse_weight_decay: float = 0.0, kind: str = "standard",
                      ensemble: EnsembleConfig | None = None,
                      target_accuracies=(0.74, 0.755, 0.76, 0.765, 0.77)) -> TrainConfig:
    """A ResNet-50 ImageNet-1K run of the paper (see the module docstring)."""
    return TrainConfig(
        name=name, epochs=epochs, batch_size=batch_size, seed=0,
        target_accuracies=target_accuracies,
        data=DataConfig(name="imagenet2012", data_dir=IMAGENET_DATA_DIR, image_size=224,
                        augment="scale_aspect", flip=True, min_area=0.08, cache=True),
        model=ModelConfig(name="resnet50", bn_moving_average_fraction=0.95,
                          zero_gamma_last_bn=True),
        optimizer=OptimizerConfig(name="sgd", base_lr=0.1, reference_batch=256,
                                  max_lr=MAX_LR_LARGE_BATCH, momentum=0.9,
                                  weight_decay=weight_decay, momentum_correction=True),
        schedule=ScheduleConfig(kind=kind, warmup_epochs=warmup_epochs, decay=decay, power=1.0,
                                step_epochs=tuple(step_epochs),
                                collapse_epochs=collapse_epochs,
                                collapse_weight_decay=collapse_weight_decay,
                                weight_decay_epochs=tuple(weight_decay_epochs),
                                weight_decay_values=tuple(weight_decay_values),
                                ensemble=ensemble or EnsembleConfig()),
    )
