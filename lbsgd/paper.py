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

import dataclasses

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
# fashion_mnist follows the CIFAR-10 run of Section VI-C at the suite's budget
# E (FASHION_EPOCHS): B_s = 256 (their maximum stable batch), B_m = 2048 (the
# largest power of 2 below 5% of the 60,000 training images, their rule), the
# best small batch 128; every method's LR decays x0.1 at the same fractions of
# the run as CIFAR's epochs 80 and 120 of 140 (the proposed method's first
# decay going to mu0 x beta), and the fixed large batch warms up for CIFAR's
# 5 of 140 epochs scaled to E.
_LEE_TASKS = {
    "phantom": dict(
        data=DataConfig(name="phantom", image_size=32, num_train=1024, noise_std=0.1,
                        validation_fraction=0.25),
        model=ModelConfig(name="edsr", edsr_blocks=4, edsr_filters=32),
        optimizer=OptimizerConfig(name="adam", base_lr=1e-4, reference_batch=16,
                                  weight_decay=0.0, momentum_correction=False),
        epochs=60, small=16, start=32, large=128,
        stop=StopConfig(patience=10, min_delta=0.1),   # 0.1 dB (the paper: over 50 epochs)
        targets=(), decay_epochs=()),
    "digits": dict(
        data=DataConfig(name="digits", image_size=32, augment="crop"),
        model=ModelConfig(name="resnet20"),
        optimizer=OptimizerConfig(name="sgd", base_lr=0.05, reference_batch=16, momentum=0.9,
                                  weight_decay=1e-4),
        epochs=40, small=8, start=16, large=64,
        stop=StopConfig(patience=10, min_delta=0.001),
        targets=(0.95, 0.97, 0.98), decay_epochs=()),
    # Section VI-C: ResNet-20 on CIFAR-10 for 140 epochs, LR x0.1 after epochs 80 and 120,
    # B_s = 256 (their probe), B_m = 2048 (their 5% rule), K = 5 (theta peaks at epoch 5
    # for batch 256), the best-tuned small batch 128; He et al.'s SGD (0.1 per 128,
    # momentum 0.9, weight decay 1e-4) and augmentation (pad-and-crop, flips). The fixed
    # large batch warms up for 5 epochs (Fig. 2's 'b=2048').
    "cifar10": dict(
        data=DataConfig(name="cifar10", data_dir="data/tensorflow_datasets", image_size=32,
                        augment="crop", flip=True),
        model=ModelConfig(name="resnet20"),
        optimizer=OptimizerConfig(name="sgd", base_lr=0.1, reference_batch=128, momentum=0.9,
                                  weight_decay=1e-4),
        epochs=140, small=128, start=256, large=2048, k_epochs=5,
        stop=StopConfig(), targets=(0.90, 0.91), decay_epochs=(80, 120),
        warmup_epochs=5),
}

LEE_CIFAR_EPOCHS = 140
LEE_CIFAR_DECAY_EPOCHS = (80, 120)
LEE_CIFAR_WARMUP_EPOCHS = 5


def _fashion_lee_task(epochs: int = 0) -> dict:
    epochs = epochs or FASHION_EPOCHS
    base = fashion_mnist("fashion_mnist", 128, epochs)
    scale = epochs / LEE_CIFAR_EPOCHS
    return dict(data=base.data, model=base.model,
                optimizer=OptimizerConfig(name="sgd", base_lr=FASHION_BASE_LR,
                                          reference_batch=FASHION_REFERENCE_BATCH,
                                          momentum=0.9, weight_decay=5e-5),
                epochs=epochs, small=128, start=256, large=lee_max_batch(60_000),
                stop=StopConfig(), targets=base.target_accuracies,
                decay_epochs=tuple(int(round(e * scale)) for e in LEE_CIFAR_DECAY_EPOCHS),
                warmup_epochs=LEE_CIFAR_WARMUP_EPOCHS * scale)


def lee_max_batch(num_train: int) -> int:
    """B_m by Lee et al.'s rule: the largest power of 2 below 5% of the training set."""
    if num_train < 40:
        raise ValueError(f"Argument `num_train` must be >= 40. Received: num_train={num_train}")
    b = 1
    while 2 * b < 0.05 * num_train:
        b *= 2
    return b


def lee_method(task: str, method: str, k_epochs: int = 0, seed: int = 0,
               epochs: int = 0) -> TrainConfig:
    """One of Lee et al.'s four methods (LEE_METHODS) on "phantom", "digits", "cifar10"
    (their Section VI-C settings) or "fashion_mnist".

    `epochs` (fashion_mnist only; 0: FASHION_EPOCHS) rescales the CIFAR schedule's epochs.
    `k_epochs` 0: the task's K (cifar10: the paper's 5), else theta's saturation.
    """
    check_argument_choice("task", task, (*_LEE_TASKS, "fashion_mnist"))
    check_argument_choice("method", method, LEE_METHODS)
    t = _fashion_lee_task(epochs) if task == "fashion_mnist" else _LEE_TASKS[task]
    k_epochs = k_epochs or t.get("k_epochs", 0)
    decays = t["decay_epochs"]
    constant = (ScheduleConfig(warmup_epochs=0, decay="steps", step_epochs=decays) if decays
                else ScheduleConfig(warmup_epochs=0, decay="constant"))
    common = dict(name=f"{task}_{method}", epochs=t["epochs"], seed=seed, data=t["data"],
                  model=t["model"], optimizer=t["optimizer"], stop=t["stop"],
                  target_accuracies=t["targets"])
    adaptive = dict(enabled=True, max_batch=t["large"], k_epochs=k_epochs,
                    theta_threshold=0.1)
    if method == "best_small":
        return TrainConfig(batch_size=t["small"], schedule=constant,
                           adaptive=AdaptiveConfig(log_theta=True), **common)
    if method == "linear_scaling":
        warmup = t.get("warmup_epochs", 5)
        return TrainConfig(batch_size=t["large"],
                           schedule=dataclasses.replace(constant, warmup_epochs=warmup),
                           adaptive=AdaptiveConfig(log_theta=True), **common)
    if method == "adaptive_fixed_lr":
        control = dict(lr_control="fixed", lr_decay_epochs=decays) if decays else {}
        return TrainConfig(batch_size=t["start"], schedule=constant,
                           adaptive=AdaptiveConfig(lr_scaling="none", **control, **adaptive),
                           **common)
    control = (dict(lr_control="fixed", lr_decay_epochs=decays) if decays else
               dict(lr_control="saturation", saturation_patience=3, saturation_threshold=0.01,
                    max_decays=2))
    return TrainConfig(batch_size=t["start"], schedule=constant,
                       adaptive=AdaptiveConfig(lr_scaling="linear", beta=0.1, **control,
                                               **adaptive), **common)


# --------------------------------------------------------------------------
# The reproduction suite on real data: Fashion-MNIST (benchmarks/reproduce.py).
# --------------------------------------------------------------------------

FASHION_EPOCHS = 16             # the suite's budget E: batch 128 reaches >= 91% test top-1
FASHION_REFERENCE_BATCH = 128   # the small batch base_lr belongs to (He et al.'s CIFAR)
FASHION_BASE_LR = 0.1           # He et al.'s CIFAR ResNet LR at batch 128; never tuned here
FASHION_LAMB_BASE_LR = 1e-3     # Adam's default LR, LAMB's at batch 128; never tuned here


def fashion_mnist(name: str, batch_size: int, epochs: int = FASHION_EPOCHS, *, seed: int = 0,
                  lr_scaling: bool = True, warmup_epochs: float = 2.0, decay: str = "poly",
                  step_epochs=None, collapse_epochs: float = 0.0,
                  weight_decay: float = 5e-5, collapse_weight_decay: float = 0.0,
                  kind: str = "standard", ensemble: EnsembleConfig | None = None,
                  base_lr: float = FASHION_BASE_LR, train_subset: int = 0,
                  precise_bn_batches: int = 0, optimizer: str = "sgd") -> TrainConfig:
    """Codreanu et al.'s recipe scaled to Fashion-MNIST (one row of benchmarks/reproduce.py).

    The full 60,000-image training set (`train_subset` > 0 trains on a
    stratified subset), test top-1 on the 10,000 test images. ResNet-8 with a
    stride-2 stem (BN tweaks of IV-C), momentum SGD 0.9 with
    momentum correction, Caffe-style L2, scale/aspect augmentation (random
    resized crop of at least 80% of the image, flips) that a collapse turns off
    leaving the pad-and-crop. `lr_scaling=False` keeps the reference LR at any
    batch (the "naive" row); otherwise the peak LR is base_lr x batch / 128.
    `decay="steps"` steps x0.1 at 1/3, 2/3 and 8/9 of the run (Table I's
    epochs 30, 60, 80 of 90) unless `step_epochs` says otherwise.

    `optimizer="lars"`: You et al. 2017's LARS with their trust coefficient
    0.001 and the same linearly scaled LR, warmup and poly decay (their
    prescription; the rank-1 variables excluded). `optimizer="lamb"`: Keras'
    Lamb at Adam's default LR 1e-3 for batch 128, square-root scaled with the
    batch (the LAMB paper's rule, You et al. 2020), no momentum correction.
    """
    if step_epochs is None:
        step_epochs = (epochs / 3, 2 * epochs / 3, 8 * epochs / 9)
    reference = FASHION_REFERENCE_BATCH if lr_scaling else batch_size
    if optimizer == "lamb":     # sqrt scaling, written as the LR at this batch
        base_lr = FASHION_LAMB_BASE_LR * (batch_size / FASHION_REFERENCE_BATCH) ** 0.5
        reference = batch_size
    return TrainConfig(
        name=name, epochs=epochs, batch_size=batch_size, seed=seed,
        target_accuracies=(0.80, 0.85, 0.88, 0.90),
        data=DataConfig(name="fashion_mnist", image_size=28, augment="scale_aspect", flip=True,
                        min_area=0.8, train_subset=train_subset),
        model=ModelConfig(name="resnet8", stem_stride=2, bn_moving_average_fraction=0.95,
                          zero_gamma_last_bn=True, precise_bn_batches=precise_bn_batches),
        optimizer=OptimizerConfig(
            name=optimizer, base_lr=base_lr, reference_batch=reference,
            momentum=0.9, weight_decay=weight_decay, momentum_correction=optimizer != "lamb",
            trust_coefficient=0.001),
        schedule=ScheduleConfig(kind=kind, warmup_epochs=warmup_epochs, decay=decay,
                                step_epochs=tuple(step_epochs), collapse_epochs=collapse_epochs,
                                collapse_weight_decay=collapse_weight_decay,
                                ensemble=ensemble or EnsembleConfig()),
    )
