"""The papers' experiments as configs: Codreanu et al.'s ImageNet runs, Lee et al.'s four methods.

Codreanu et al. (Tables I-III, VIII, IX, XI; Sections IV-V, VI): every run trains the unmodified ResNet-50 (zero-gamma last BN per block, BN
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

Lee et al. (Section VI, Tables II-III) compare four training methods:
the best-tuned fixed small batch; a fixed large batch with the linear
scaling rule and a 5-epoch warmup; the adaptive batch with a fixed LR; and
the proposed adaptive batch with LR co-scaling and adaptive LR control.
:func:`lee_method` builds each for the Phantom restoration task
(`configs/phantom_*.py`) and for ResNet-20 on digits (`configs/digits_*`),
sized to run here in minutes.
"""

from __future__ import annotations

from lbsgd.config import (AdaptiveConfig, DataConfig, EnsembleConfig, ModelConfig,
                          OptimizerConfig, ScheduleConfig, StopConfig, TrainConfig,
                          check_argument_choice)

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


LEE_METHODS = ("best_small", "linear_scaling", "adaptive_fixed_lr", "adaptive")

# Per task: data, model, optimizer base (LR per `reference_batch`), epochs,
# B_small (best fixed), B_s, B_m, convergence stop. Phantom follows Table II
# (Adam, 1e-4 at batch 16; B_s = 32, B_m = 128); digits follows Table III's
# shape (momentum SGD; B_m the largest power of 2 under 5% of the training
# set: 64 of 1437; best small 8, B_s = 16: the ratios of Phantom's 16, 32, 128).
_LEE_TASKS = {
    "phantom": dict(
        data=DataConfig(name="phantom", image_size=32, num_train=1024, noise_std=0.1,
                        validation_fraction=0.25),
        model=ModelConfig(name="edsr", edsr_blocks=4, edsr_filters=32),
        optimizer=OptimizerConfig(name="adam", base_lr=1e-4, reference_batch=16,
                                  weight_decay=0.0, momentum_correction=False),
        epochs=60, small=16, start=32, large=128,
        stop=StopConfig(patience=10, min_delta=0.1),   # 0.1 dB (the paper: over 50 epochs)
        targets=()),
    "digits": dict(
        data=DataConfig(name="digits", image_size=32, augment="crop"),
        model=ModelConfig(name="resnet20"),
        optimizer=OptimizerConfig(name="sgd", base_lr=0.05, reference_batch=16, momentum=0.9,
                                  weight_decay=1e-4),
        epochs=40, small=8, start=16, large=64,
        stop=StopConfig(patience=10, min_delta=0.001),
        targets=(0.95, 0.97, 0.98)),
}


def lee_method(task: str, method: str, k_epochs: int = 0) -> TrainConfig:
    """One of Lee et al.'s four methods (LEE_METHODS) on "phantom" or "digits"."""
    check_argument_choice("task", task, tuple(_LEE_TASKS))
    check_argument_choice("method", method, LEE_METHODS)
    t = _LEE_TASKS[task]
    constant = ScheduleConfig(warmup_epochs=0, decay="constant")
    common = dict(name=f"{task}_{method}", epochs=t["epochs"], seed=0, data=t["data"],
                  model=t["model"], optimizer=t["optimizer"], stop=t["stop"],
                  target_accuracies=t["targets"])
    adaptive = dict(enabled=True, max_batch=t["large"], k_epochs=k_epochs,
                    theta_threshold=0.1)
    if method == "best_small":
        return TrainConfig(batch_size=t["small"], schedule=constant,
                           adaptive=AdaptiveConfig(log_theta=True), **common)
    if method == "linear_scaling":
        return TrainConfig(batch_size=t["large"],
                           schedule=ScheduleConfig(warmup_epochs=5, decay="constant"),
                           adaptive=AdaptiveConfig(log_theta=True), **common)
    if method == "adaptive_fixed_lr":
        return TrainConfig(batch_size=t["start"], schedule=constant,
                           adaptive=AdaptiveConfig(lr_scaling="none", **adaptive), **common)
    return TrainConfig(batch_size=t["start"], schedule=constant,
                       adaptive=AdaptiveConfig(lr_scaling="linear", lr_control="saturation",
                                               beta=0.1, saturation_patience=3,
                                               saturation_threshold=0.01, max_decays=2,
                                               **adaptive), **common)
