"""Typed, validated run configuration: one dataclass per concern, paper values as defaults.

Serves both papers' experiment tables (Codreanu et al. Tables I-IX; Lee et al.
Tables I-III): a config names every knob of a run, is validated before any
process trains, and is written, fully resolved, into the run directory.

A config file is a Python module under `configs/` defining `get_config()`
that returns a :class:`TrainConfig`. Any leaf can be overridden on the command
line by its dotted path (`--optimizer.base_lr=0.2`, `--epochs=4`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import typing

from lbsgd.errors import ConfigError  # noqa: F401  (also lbsgd.config.ConfigError, as before)

DATASETS = ("digits", "fashion_mnist", "synthetic", "folder", "cifar10", "imagenet2012",
            "phantom")
RESTORATION_DATASETS = ("phantom",)
IMAGENET_TRAIN_EXAMPLES = 1_281_167
MODELS = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet50", "edsr")
LR_SCALINGS = ("linear", "root", "none")
LR_CONTROLS = ("none", "saturation", "fixed")
OPTIMIZERS = ("sgd", "adam", "lars", "lamb")
# Variables kept out of weight decay (and out of LARS's trust ratio): "rank1" = biases, BN
# gamma/beta (lbsgd.distributed.default_decay_filter's complement); "none".
EXCLUSIONS = ("rank1", "none")
DECAYS = ("poly", "steps", "constant")
SCHEDULE_KINDS = ("standard", "collapsed_ensemble")
EXCHANGES = ("grouped", "per_tensor", "reducescatter")
COMPRESSIONS = ("none", "fp16")
AUGMENTATIONS = ("none", "crop", "scale_aspect")


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"   # where Debian's package puts it
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _require(ok: bool, field: str, value, rule: str) -> None:
    if not ok:
        raise ConfigError(f"Field `{field}` {rule}. Received: {field}={value!r}")


def _optional(hint):
    """X for a `X | None` hint (None = derived from other fields), else None."""
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None))
    return None


def _check_types(obj, section: str) -> None:
    """ConfigError for a field whose value has the wrong type (ints stay ints: epochs=2.5 is
    refused, not truncated); ints given for floats become floats, lists for tuples tuples."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint, value, name = hints[f.name], getattr(obj, f.name), f"{section}{f.name}"
        if dataclasses.is_dataclass(hint):
            continue
        if _optional(hint) is not None:
            if value is None:
                continue
            hint = _optional(hint)
        if hint is bool:
            ok = isinstance(value, bool)
        elif hint is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif hint is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                setattr(obj, f.name, float(value))
        elif hint is str:
            ok = isinstance(value, str)
        elif (typing.get_origin(hint) or hint) is tuple:
            ok = isinstance(value, (tuple, list)) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            if ok:
                setattr(obj, f.name, tuple(value))
        else:
            ok = True
        if not ok:
            kind = {bool: "a bool", int: "an int", float: "a number", str: "a string"}.get(
                hint, "a list of numbers")
            raise ConfigError(f"Field `{name}` must be {kind}. Received: {name}={value!r}")


def _one_of(field: str, value, choices) -> None:
    _require(value in choices, field, value, f"must be one of {tuple(choices)}")


def check_argument_choice(name: str, value, choices) -> None:
    """ValueError naming the function argument and its value unless `value` is in `choices`."""
    if value not in choices:
        raise ValueError(f"Argument `{name}` must be one of {tuple(choices)}. "
                         f"Received: {name}={value!r}")


@dataclasses.dataclass
class DataConfig:
    """Where the examples come from and how they are augmented (Codreanu et al. IV, V-B).

    Attributes:
      name: "digits" (ships with scikit-learn, the offline default),
        "fashion_mnist" (the original idx files of Debian's
        dataset-fashion-mnist: 60,000 train / 10,000 test images, 28x28),
        "synthetic" (random images), "folder" (`data_dir/train/<class>/*`
        and `data_dir/val/<class>/*` image files), "cifar10" or
        "imagenet2012" (tensorflow-datasets, prepared under `data_dir`), or
        "phantom" (randomised Shepp-Logan phantoms, noisy -> clean; Lee et al.).
      data_dir: local directory for "folder", "cifar10" and "imagenet2012";
        for "fashion_mnist" the idx files' directory (default
        /usr/share/datasets/fashion-mnist, where Debian installs them).
      image_size: side of the square training image fed to the model (224
        for ImageNet).
      augment: "none"; "crop" (random crop: pad-and-crop for in-RAM images,
        crop of the resized image for files); or "scale_aspect" (Inception
        random-resized crop, which the final collapse switches off, leaving
        the random crop only).
      flip: random left-right flip while augmentation is on.
      min_area: smallest crop area fraction of "scale_aspect" (Inception: 0.08).
      num_train: examples for generated datasets ("synthetic", "phantom").
      noise_std: Gaussian noise on the phantom restoration inputs.
      validation_fraction: held-out share for datasets without a split (digits).
      cache: keep examples in RAM (the paper copies ImageNet to RAM).
      skip_unreadable: "folder" data: skip image files that are empty or not
        JPEG/PNG/GIF/BMP (counted in the log) instead of stopping with an
        error naming the first one.
      train_subset: train on this many examples only (0: all; a multiple of
        the class count): the first train_subset / num_classes of each class
        in file order, a fixed, stratified subset; evaluation still uses the
        whole validation set.
    """

    name: str = "digits"
    data_dir: str = ""
    image_size: int = 32
    augment: str = "none"
    flip: bool = False
    min_area: float = 0.08
    num_train: int = 1024
    noise_std: float = 0.1
    validation_fraction: float = 0.2
    cache: bool = True
    train_subset: int = 0
    skip_unreadable: bool = False

    def __post_init__(self):
        _check_types(self, "data.")
        _one_of("data.name", self.name, DATASETS)
        _one_of("data.augment", self.augment, AUGMENTATIONS)
        _require(self.image_size >= 8, "data.image_size", self.image_size, "must be >= 8")
        _require(0.0 < self.min_area <= 1.0, "data.min_area", self.min_area, "must be in (0, 1]")
        _require(self.num_train >= 1, "data.num_train", self.num_train, "must be >= 1")
        _require(self.noise_std >= 0, "data.noise_std", self.noise_std, "must be >= 0")
        _require(self.train_subset >= 0, "data.train_subset", self.train_subset,
                 "must be >= 0 (0: the whole training set)")
        _require(0.0 < self.validation_fraction < 1.0, "data.validation_fraction",
                 self.validation_fraction, "must be in (0, 1)")
        if self.name in RESTORATION_DATASETS:
            _require(self.augment == "none", "data.augment", self.augment,
                     f"must be 'none' for data.name={self.name!r}")
        if self.name in ("folder", "cifar10", "imagenet2012"):
            _require(bool(self.data_dir), "data.data_dir", self.data_dir,
                     f"must name a local directory for data.name={self.name!r}")


DIGITS_EXAMPLES = 1797
CIFAR10_TRAIN_EXAMPLES = 50_000
FASHION_MNIST_TRAIN_EXAMPLES = 60_000


def train_examples(cfg: DataConfig) -> int | None:
    """Training-set size a data config implies without loading it (None: known once loaded)."""
    if cfg.train_subset:
        return cfg.train_subset
    if cfg.name == "digits":
        return DIGITS_EXAMPLES - int(round(DIGITS_EXAMPLES * cfg.validation_fraction))
    return {"imagenet2012": IMAGENET_TRAIN_EXAMPLES, "cifar10": CIFAR10_TRAIN_EXAMPLES,
            "fashion_mnist": FASHION_MNIST_TRAIN_EXAMPLES, "synthetic": cfg.num_train,
            "phantom": cfg.num_train}.get(cfg.name)


def fashion_mnist_files(cfg: DataConfig) -> dict:
    """{split: (images path, labels path)} of Fashion-MNIST under data_dir (or Debian's)."""
    directory = cfg.data_dir or FASHION_MNIST_DIR
    return {split: tuple(os.path.join(directory, f) for f in files)
            for split, files in FASHION_MNIST_FILES.items()}


def check_data_files(cfg: DataConfig) -> None:
    """ConfigError (one line: the path and how to get it) when a dataset's local files are missing.

    Looks for files and directories only (no TensorFlow), so the launcher
    runs it before any rank starts.
    """
    if cfg.name == "fashion_mnist":
        for path in (p for pair in fashion_mnist_files(cfg).values() for p in pair):
            if not os.path.isfile(path):
                hint = (f"install Debian's {FASHION_MNIST_PACKAGE} package (apt-get install "
                        f"{FASHION_MNIST_PACKAGE}, or bash launch/install.sh)" if not cfg.data_dir
                        else "put the four Fashion-MNIST idx files there")
                raise ConfigError(f"Field `data.data_dir` must hold Fashion-MNIST: {path!r} is "
                                  f"missing; {hint}. Received: data.data_dir="
                                  f"{cfg.data_dir or FASHION_MNIST_DIR!r}")
    elif cfg.name in ("folder", "cifar10", "imagenet2012") and not os.path.isdir(cfg.data_dir):
        raise ConfigError(f"Field `data.data_dir` must name an existing directory for "
                          f"data.name={cfg.name!r}. Received: data.data_dir={cfg.data_dir!r}")
    elif cfg.name == "folder":
        check_image_folder(cfg.data_dir)


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def check_image_folder(data_dir: str) -> None:
    """ConfigError unless `data_dir` holds train/<class>/ and val/<class>/ (or validation/)
    with an image file in every training class and in the validation split. Names and
    directories only, so the launcher refuses a bad folder before any rank starts (the ranks
    check each image's first bytes when they load it)."""
    train_dir = os.path.join(data_dir, "train")
    val_dir = next((os.path.join(data_dir, d) for d in ("val", "validation")
                    if os.path.isdir(os.path.join(data_dir, d))), None)
    if not os.path.isdir(train_dir) or val_dir is None:
        raise ConfigError("Field `data.data_dir` must hold train/<class>/ and val/<class>/ "
                          f"image folders. Received: data.data_dir={data_dir!r}")

    def images(class_dir):
        return any(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(class_dir))

    classes = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
    if not classes:
        raise ConfigError(f"Field `data.data_dir` has no class directories in {train_dir!r} "
                          "(train/<class>/<image>). Received: data.data_dir="
                          f"{data_dir!r}")
    for name in classes:
        if not images(os.path.join(train_dir, name)):
            raise ConfigError(f"Field `data.data_dir` has a class directory without images: "
                              f"{os.path.join(train_dir, name)!r} (remove it, or add its "
                              f"images). Received: data.data_dir={data_dir!r}")
    if not any(os.path.isdir(os.path.join(val_dir, c)) and images(os.path.join(val_dir, c))
               for c in classes):
        raise ConfigError(f"Field `data.data_dir` has no images under {val_dir!r} in the "
                          f"training classes {classes}. Received: data.data_dir={data_dir!r}")


@dataclasses.dataclass
class ModelConfig:
    """The network and its batch-normalisation tweaks (Codreanu et al. IV-C).

    Attributes:
      name: "resnet8/14/20/32" (CIFAR-style, He et al.), "resnet50", or
        "edsr" (EDSR-style residual restoration network, Lee et al. VI-A).
      bn_moving_average_fraction: Caffe's moving_average_fraction (Keras BN
        momentum); the paper sets 0.95.
      zero_gamma_last_bn: gamma = 0 for the last BN of each residual block.
      dtype_policy: Keras mixed-precision policy ("float32", "mixed_bfloat16").
      edsr_blocks, edsr_filters: residual blocks and width of "edsr" (the
        paper's Phantom network: 16 blocks).
      stem_stride: stride of a CIFAR ResNet's first convolution (1: He et
        al.'s; 2 halves every feature map, ~4x fewer FLOPs, for 28x28 inputs).
      precise_bn_batches: precise BN (Wu & Johnson 2021): before every
        evaluation and snapshot, re-estimate the BN population statistics
        from this many training batches with the current weights (0 = off,
        the moving averages are used); at most one epoch of this rank's
        shard is drawn.
    """

    name: str = "resnet20"
    bn_moving_average_fraction: float = 0.95
    zero_gamma_last_bn: bool = True
    dtype_policy: str = "float32"
    edsr_blocks: int = 16
    edsr_filters: int = 64
    stem_stride: int = 1
    precise_bn_batches: int = 0

    def __post_init__(self):
        _check_types(self, "model.")
        _require(self.precise_bn_batches >= 0, "model.precise_bn_batches",
                 self.precise_bn_batches, "must be >= 0")
        _one_of("model.name", self.name, MODELS)
        _one_of("model.stem_stride", self.stem_stride, (1, 2))
        _require(0.0 <= self.bn_moving_average_fraction < 1.0,
                 "model.bn_moving_average_fraction", self.bn_moving_average_fraction,
                 "must be in [0, 1)")
        _one_of("model.dtype_policy", self.dtype_policy, ("float32", "mixed_bfloat16"))
        _require(self.edsr_blocks >= 1, "model.edsr_blocks", self.edsr_blocks, "must be >= 1")
        _require(self.edsr_filters >= 1, "model.edsr_filters", self.edsr_filters, "must be >= 1")


@dataclasses.dataclass
class OptimizerConfig:
    """Optimizer, linear scaling rule and weight decay (Codreanu et al. IV-B, IV-D).

    Attributes:
      name: "sgd" (momentum SGD, the paper's), "adam" (Lee et al. VI-A),
        "lars" (You et al. 2017 layer-wise adaptive rate scaling,
        lbsgd.lars.LARS: momentum SGD whose per-layer LR is trust_coefficient
        x ||w|| / (||g|| + weight_decay x ||w||), weight decay inside that
        ratio) or "lamb" (keras.optimizers.Lamb: Adam moments and a
        ||w|| / ||update|| ratio on every variable; lbsgd's L2 is added to
        its gradient).
      base_lr: learning rate at the reference batch size.
      reference_batch: batch size base_lr belongs to; peak LR = base_lr x
        global batch / reference_batch (linear scaling rule, Goyal et al.).
      max_lr: ceiling on the scaled LR (the paper holds 6.4 for >= 16K); 0 = none.
      momentum: SGD and LARS momentum.
      weight_decay: Caffe-style L2 coefficient (paper: 1e-4 standard, 5e-5
        before the collapse); "lars" applies it inside its trust ratio.
      exchange: gradient exchange "grouped", "per_tensor" or "reducescatter".
      compression: wire format of the exchanged gradients: "none" (their own
        dtype) or "fp16" (float32 gradients sent as float16, half the bytes,
        rounded to ~3 significant digits).
      momentum_correction: scale the SGD velocity by lr_new / lr_old when the
        LR changes (Goyal et al., adopted by Codreanu et al. II); for "lars"
        too (its velocity holds lr x update); "adam" and "lamb" have none.
      trust_coefficient: LARS's eta in its per-layer LR (You et al.: 0.001;
        "lars" only).
      excluded_variables: variables left out of weight decay and of LARS's
        trust ratio: "rank1" (biases, BN gamma/beta) or "none" (every
        variable). Keras' Lamb applies its trust ratio to every variable
        either way.
    """

    name: str = "sgd"
    base_lr: float = 0.1
    reference_batch: int = 256
    max_lr: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 5e-5
    exchange: str = "grouped"
    compression: str = "none"
    momentum_correction: bool = True
    trust_coefficient: float = 0.001
    excluded_variables: str = "rank1"

    def __post_init__(self):
        _check_types(self, "optimizer.")
        _one_of("optimizer.name", self.name, OPTIMIZERS)
        _require(self.base_lr > 0 and math.isfinite(self.base_lr), "optimizer.base_lr",
                 self.base_lr, "must be a finite number > 0")
        _require(self.reference_batch >= 1, "optimizer.reference_batch",
                 self.reference_batch, "must be >= 1")
        _require(self.max_lr >= 0, "optimizer.max_lr", self.max_lr, "must be >= 0")
        _require(0.0 <= self.momentum < 1.0, "optimizer.momentum", self.momentum,
                 "must be in [0, 1)")
        _require(self.weight_decay >= 0, "optimizer.weight_decay", self.weight_decay,
                 "must be >= 0")
        _one_of("optimizer.exchange", self.exchange, EXCHANGES)
        _one_of("optimizer.compression", self.compression, COMPRESSIONS)
        _require(self.trust_coefficient > 0 and math.isfinite(self.trust_coefficient),
                 "optimizer.trust_coefficient", self.trust_coefficient,
                 "must be a finite number > 0")
        _one_of("optimizer.excluded_variables", self.excluded_variables, EXCLUSIONS)


@dataclasses.dataclass(frozen=True)
class EnsembleTiming:
    """When each phase of the collapsed-ensemble schedule begins and ends, in epochs.

    The one place the cycle timing is computed: the LR schedule
    (lbsgd.schedules.CollapsedEnsemble) and the epoch plan (lbsgd.recipe:
    weight decay, augmentation, snapshots) both read it. Every collapse ends
    on a whole epoch, where its snapshot is taken.
    """

    linear_end_epoch: float
    linear_horizon_epochs: float
    power2_end_epoch: float
    power2_end_fraction: float
    rewarmup_epochs: float
    rise_factor: float
    decay_epochs: float
    decay_divisor: float
    num_cycles: int
    collapse_epochs: int = 0     # 0: the whole power-2 decay

    @property
    def cycle_epochs(self) -> float:
        return self.rewarmup_epochs + self.decay_epochs

    @property
    def end_epoch(self) -> float:
        return self.power2_end_epoch + self.num_cycles * self.cycle_epochs

    def collapse_ends(self) -> list[int]:
        """1-based epochs after which a collapse ends (one snapshot each)."""
        return [int(round(self.power2_end_epoch + k * self.cycle_epochs))
                for k in range(self.num_cycles + 1)]

    def phase(self, epoch: int) -> tuple[str, int, bool]:
        """(phase, cycle, ends a collapse) of 0-based `epoch`: "main", "collapse" or "rewarmup"."""
        ends = self.collapse_ends()
        if epoch < math.floor(self.linear_end_epoch + 1e-9):
            return "main", -1, False
        k = next((i for i, end in enumerate(ends) if epoch < end), len(ends))
        if k == len(ends):
            return "collapse", self.num_cycles, False      # LR held after the last cycle
        if k > 0 and epoch < ends[k - 1] + self.rewarmup_epochs - 1e-9:
            return "rewarmup", k, False
        if self.collapse_epochs and epoch < ends[k] - self.collapse_epochs:
            return "decay", k, False
        return "collapse", k, epoch + 1 == ends[k]


# The paper's 120-epoch run (Figure 4): proportions for other run lengths.
PAPER_ENSEMBLE_EPOCHS = 120
PAPER_CYCLE_FRACTION = 15 / 120          # one re-warmup + decay cycle
PAPER_REWARMUP_FRACTION = 3 / 15         # of a cycle
PAPER_POWER2_END_FRACTION = 45 / 120     # the first collapse ends
PAPER_LINEAR_END_FRACTION = 30 / 45      # of the first collapse's end
PAPER_LINEAR_HORIZON_FACTOR = 90 / 30    # the linear decay's slope reaches 0 at 3x its end
PAPER_NUM_CYCLES = 5
PAPER_COLLAPSE_FRACTION = 3 / 12         # of each power-2 decay: its last 3 epochs collapse
PAPER_ENSEMBLE_SNAPSHOTS = 5             # "when ensembling 5 models"


@dataclasses.dataclass
class EnsembleConfig:
    """The collapsed-ensemble cycles (Codreanu et al. VI, Figure 4), in epochs.

    The paper's 120-epoch run: linear decay to epoch 30, power-2 decay to
    ~22% of the peak at epoch 45, then 5 cycles of a 3-epoch x3 re-warmup and
    a 12-epoch power-2 decay dividing the top by 4, ending at epochs 60, 75,
    90, 105, 120. The last `collapse_epochs` of each power-2 decay are a
    collapse (weight decay doubled, scale/aspect augmentation off), and each
    collapse ends with a snapshot; the ensemble averages the last
    `num_snapshots` of them.

    The epoch fields left at None follow the run's `epochs` in those
    proportions (:meth:`timing`): a cycle is 1/8 of the run (whole epochs,
    at least 2), its re-warmup 1/5 of the cycle, up to 5 cycles after the
    first collapse ends near 3/8 of the run, the last cycle ending with the
    run. Explicit values override; `timing` refuses a schedule that ends
    mid-cycle, runs past its last cycle, ends a collapse mid-epoch or yields
    fewer than 2 snapshots.

    Attributes:
      linear_end_epoch: end of the linear decay after warmup (paper: 30; None:
        2/3 of power2_end_epoch).
      linear_horizon_epochs: epoch at which that linear decay would reach 0
        (paper: 90; None: 3x linear_end_epoch); it stops at `linear_end_epoch`.
      power2_end_epoch: end of the first power-2 decay, the first collapse
        (paper: 45; None: from `epochs`).
      power2_end_fraction: LR at `power2_end_epoch` as a fraction of the peak
        (paper: ~22%).
      rewarmup_epochs: length of each cycle's re-warmup (paper: 3; None: 1/5 of
        a cycle).
      rise_factor: LR multiplier of each re-warmup (paper: x3).
      decay_epochs: length of each cycle's power-2 decay, a collapse ending
        with a snapshot (paper: 12; None: from `epochs`).
      decay_divisor: each cycle's decay divides its top LR by this (paper: 4).
      num_cycles: re-warmup + decay cycles after the first collapse (paper: 5;
        None: as many as fit, up to 5).
      collapse_epochs: whole epochs at the end of each power-2 decay run as a
        collapse. Section VI: "In this collapse phase we typically perform
        between 3-10 epochs"; None: a quarter of `decay_epochs` (3 of the
        paper's 12, the low end of that range, so 9 of each 12-epoch decay keep
        the augmentation), rounded, at least 1.
      num_snapshots: the ensemble averages the last this many snapshots
        (paper: 5, "when ensembling 5 models"; the first collapse's snapshot
        at epoch 45 is left out); 0 = all.
    """

    linear_end_epoch: float | None = None
    linear_horizon_epochs: float | None = None
    power2_end_epoch: float | None = None
    power2_end_fraction: float = 0.22
    rewarmup_epochs: float | None = None
    rise_factor: float = 3.0
    decay_epochs: float | None = None
    decay_divisor: float = 4.0
    num_cycles: int | None = None
    collapse_epochs: float | None = None
    num_snapshots: int = PAPER_ENSEMBLE_SNAPSHOTS

    def __post_init__(self):
        _check_types(self, "schedule.ensemble.")
        _require(self.collapse_epochs is None or (self.collapse_epochs >= 1 and abs(
            self.collapse_epochs - round(self.collapse_epochs)) < 1e-9),
                 "schedule.ensemble.collapse_epochs", self.collapse_epochs,
                 "must be a whole number of epochs >= 1 (augmentation switches per epoch)")
        _require(self.num_snapshots >= 0, "schedule.ensemble.num_snapshots", self.num_snapshots,
                 "must be >= 0")
        for f in ("linear_end_epoch", "linear_horizon_epochs", "power2_end_epoch",
                  "rewarmup_epochs", "rise_factor", "decay_epochs", "decay_divisor"):
            v = getattr(self, f)
            _require(v is None or v > 0, f"schedule.ensemble.{f}", v, "must be > 0")
        _require(self.num_cycles is None or self.num_cycles >= 0, "schedule.ensemble.num_cycles",
                 self.num_cycles, "must be >= 0")

    @classmethod
    def paper(cls) -> "EnsembleConfig":
        """The paper's 120-epoch timing, every field explicit."""
        return cls(linear_end_epoch=30.0, linear_horizon_epochs=90.0, power2_end_epoch=45.0,
                   rewarmup_epochs=3.0, decay_epochs=12.0, num_cycles=5)

    def timing(self, epochs: int) -> EnsembleTiming:
        """The timing of a run of `epochs` epochs (derived fields filled in; ConfigError if unusable)."""
        f = "schedule.ensemble."
        rewarmup, decay = self.rewarmup_epochs, self.decay_epochs
        share = PAPER_REWARMUP_FRACTION / (1 - PAPER_REWARMUP_FRACTION)   # 3 : 12
        if rewarmup is None and decay is None:
            cycle = max(2, round(epochs * PAPER_CYCLE_FRACTION))
            rewarmup = cycle * PAPER_REWARMUP_FRACTION
            decay = cycle - rewarmup
        elif rewarmup is None:
            rewarmup = decay * share
        elif decay is None:
            decay = rewarmup / share
        cycle = rewarmup + decay
        num_cycles = self.num_cycles
        power2_end = self.power2_end_epoch
        if num_cycles is None:
            first = power2_end if power2_end is not None else round(
                epochs * PAPER_POWER2_END_FRACTION)
            num_cycles = max(0, min(PAPER_NUM_CYCLES, int((epochs - first + 1e-9) // cycle)))
        if power2_end is None:
            power2_end = epochs - num_cycles * cycle
        linear_end = self.linear_end_epoch or power2_end * PAPER_LINEAR_END_FRACTION
        horizon = self.linear_horizon_epochs or linear_end * PAPER_LINEAR_HORIZON_FACTOR
        collapse = self.collapse_epochs
        if collapse is None:
            collapse = max(1, int(round(decay * PAPER_COLLAPSE_FRACTION)))
        t = EnsembleTiming(float(linear_end), float(horizon), float(power2_end),
                           self.power2_end_fraction, float(rewarmup), self.rise_factor,
                           float(decay), self.decay_divisor, int(num_cycles), int(round(collapse)))
        _check_timing(t, epochs, f)
        return t


def _check_timing(t: EnsembleTiming, epochs: int, f: str) -> None:
    whole = lambda x: abs(x - round(x)) < 1e-6  # noqa: E731
    _require(t.linear_end_epoch < t.linear_horizon_epochs, f + "linear_end_epoch",
             t.linear_end_epoch, f"must be < {f}linear_horizon_epochs={t.linear_horizon_epochs:g}")
    _require(t.linear_end_epoch < t.power2_end_epoch, f + "power2_end_epoch", t.power2_end_epoch,
             f"must be > {f}linear_end_epoch={t.linear_end_epoch:g}")
    _require(0 < t.power2_end_fraction < 1 - t.linear_end_epoch / t.linear_horizon_epochs,
             f + "power2_end_fraction", t.power2_end_fraction,
             "must be in (0, LR fraction left at linear_end_epoch)")
    _require(whole(t.power2_end_epoch), f + "power2_end_epoch", t.power2_end_epoch,
             "must be a whole epoch (a collapse ends there, with a snapshot)")
    _require(whole(t.cycle_epochs), f + "decay_epochs", t.decay_epochs,
             f"must make rewarmup_epochs + decay_epochs a whole number of epochs (now "
             f"{t.cycle_epochs:g}): each cycle's collapse ends with a snapshot")
    _require(t.collapse_epochs <= min(t.decay_epochs, t.power2_end_epoch - t.linear_end_epoch)
             + 1e-9, f + "collapse_epochs", t.collapse_epochs,
             f"must fit in each power-2 decay (decay_epochs={t.decay_epochs:g}, the first "
             f"{t.power2_end_epoch - t.linear_end_epoch:g} epochs)")
    _require(t.num_cycles + 1 >= 2, "epochs", epochs,
             f"gives {t.num_cycles + 1} snapshot(s); a collapsed ensemble needs >= 2 "
             f"(lengthen the run or set {f}num_cycles)")
    _require(abs(t.end_epoch - epochs) < 1e-6, "epochs", epochs,
             f"must equal the last cycle's end, epoch {t.end_epoch:g} "
             f"({'the run would stop mid-cycle' if epochs < t.end_epoch else 'epochs after it would have no schedule'}; "
             f"leave the {f}* epoch fields unset to derive them from epochs)")


@dataclasses.dataclass
class ScheduleConfig:
    """Learning-rate, weight-decay and augmentation schedule (Codreanu et al. IV-D, V-B, VI).

    Attributes:
      kind: "standard" (warmup, decay, optional final collapse) or
        "collapsed_ensemble" (warmup, then the cycles of `ensemble`).
      warmup_epochs: gradual warmup from ~0 to the peak LR (paper: 5; 7-10 for
        very large batches).
      decay: "poly" (polynomial to 0 over the run), "steps" (x0.1 at
        step_epochs) or "constant".
      power: polynomial power (1 = linear, the paper's default).
      step_epochs: epochs of the x0.1 steps (the 3-step baseline: 30, 60, 80).
      collapse_epochs: length of the final collapse (power-2 LR decay from
        where the main schedule left off, weight decay `collapse_weight_decay`,
        scale/aspect augmentation off); 0 = no collapse. A value in (0, 1) is
        a fraction of the run (paper: 5-7%, typically 4-7 epochs).
      collapse_weight_decay: weight decay in collapse phases (0 = twice the
        main value, the paper's 5e-5 -> 1e-4).
      weight_decay_epochs: epochs at which the main-phase weight decay steps
        up (the 64K run's multi-step increase, Figure 3) ...
      weight_decay_values: ... to these values (same length).
      ensemble: cycle shape for kind="collapsed_ensemble".
    """

    kind: str = "standard"
    warmup_epochs: float = 5.0
    decay: str = "poly"
    power: float = 1.0
    step_epochs: tuple = (30, 60, 80)
    collapse_epochs: float = 0.0
    collapse_weight_decay: float = 0.0
    weight_decay_epochs: tuple = ()
    weight_decay_values: tuple = ()
    ensemble: EnsembleConfig = dataclasses.field(default_factory=EnsembleConfig)

    def __post_init__(self):
        _check_types(self, "schedule.")
        self.step_epochs = tuple(self.step_epochs)
        self.weight_decay_epochs = tuple(self.weight_decay_epochs)
        self.weight_decay_values = tuple(float(v) for v in self.weight_decay_values)
        _one_of("schedule.kind", self.kind, SCHEDULE_KINDS)
        _require(self.warmup_epochs >= 0, "schedule.warmup_epochs", self.warmup_epochs,
                 "must be >= 0")
        _one_of("schedule.decay", self.decay, DECAYS)
        _require(self.power > 0, "schedule.power", self.power, "must be > 0")
        _require(all(e > 0 for e in self.step_epochs) and
                 list(self.step_epochs) == sorted(self.step_epochs),
                 "schedule.step_epochs", self.step_epochs,
                 "must be increasing positive epochs")
        _require(self.collapse_epochs >= 0, "schedule.collapse_epochs", self.collapse_epochs,
                 "must be >= 0")
        _require(self.collapse_weight_decay >= 0, "schedule.collapse_weight_decay",
                 self.collapse_weight_decay, "must be >= 0")
        _require(all(e > 0 for e in self.weight_decay_epochs) and
                 list(self.weight_decay_epochs) == sorted(set(self.weight_decay_epochs)),
                 "schedule.weight_decay_epochs", self.weight_decay_epochs,
                 "must be increasing positive epochs")
        _require(len(self.weight_decay_values) == len(self.weight_decay_epochs) and
                 all(v >= 0 for v in self.weight_decay_values), "schedule.weight_decay_values",
                 self.weight_decay_values,
                 "must hold one value >= 0 per entry of schedule.weight_decay_epochs")
        if isinstance(self.ensemble, dict):
            self.ensemble = EnsembleConfig(**self.ensemble)
        _require(isinstance(self.ensemble, EnsembleConfig), "schedule.ensemble", self.ensemble,
                 "must be an EnsembleConfig")

    def collapse_epochs_for(self, epochs: int) -> int:
        """Whole epochs of the final collapse in a run of `epochs` epochs."""
        if self.collapse_epochs <= 0:
            return 0
        if self.collapse_epochs < 1:
            return max(1, int(round(self.collapse_epochs * epochs)))
        return int(round(self.collapse_epochs))


@dataclasses.dataclass
class AdaptiveConfig:
    """Adaptive batch size and LR at run time (Lee et al. III-D, III-E, Algorithm 1).

    With `enabled`, the run starts at the global `batch_size` (B_s) and the
    LR mu0 = base_lr x B_s / reference_batch; the schedule section is not
    used (the controller owns the LR).

    Attributes:
      enabled: grow the batch by Algorithm 1.
      max_batch: B_m (multiple of the rank count).
      growth_factor: batch multiplier at each growth (paper: 2).
      lr_scaling: LR multiplier at each growth: "linear" (same factor, the
        paper), "root" (its square root) or "none" (fixed LR).
      theta_threshold: theta is saturated once it changes by less than this
        (relative) epoch over epoch; then K = that epoch (paper: 10%).
      k_epochs: fixed K instead (0: detect from theta).
      log_theta: log theta even when the batch does not grow.
      theta_samples: training examples F (the cost in theta) is measured on.
      lr_control: "none", "saturation" (decay when the training cost
        saturates) or "fixed" (decay after `lr_decay_epochs`).
      beta: decay factor; the first decay sets the LR to mu0 x beta.
      lr_decay_epochs: epochs after which "fixed" decays (paper's CIFAR: 80, 120).
      saturation_patience: epochs without a relative cost drop of more than
        `saturation_threshold` that count as saturation.
      saturation_threshold: smallest relative drop of the training cost
        (epoch over epoch) that counts as progress for "saturation".
      max_decays: most decays (0: no limit).
    """

    enabled: bool = False
    max_batch: int = 0
    growth_factor: float = 2.0
    lr_scaling: str = "linear"
    theta_threshold: float = 0.1
    k_epochs: int = 0
    log_theta: bool = False
    theta_samples: int = 512
    lr_control: str = "none"
    beta: float = 0.1
    lr_decay_epochs: tuple = ()
    saturation_patience: int = 5
    saturation_threshold: float = 0.01
    max_decays: int = 0

    def __post_init__(self):
        _check_types(self, "adaptive.")
        self.lr_decay_epochs = tuple(self.lr_decay_epochs)
        _require(self.max_batch >= 0, "adaptive.max_batch", self.max_batch, "must be >= 0")
        _require(self.growth_factor > 1, "adaptive.growth_factor", self.growth_factor,
                 "must be > 1")
        _one_of("adaptive.lr_scaling", self.lr_scaling, LR_SCALINGS)
        _require(self.theta_threshold >= 0, "adaptive.theta_threshold", self.theta_threshold,
                 "must be >= 0")
        _require(self.k_epochs >= 0, "adaptive.k_epochs", self.k_epochs, "must be >= 0")
        _require(self.theta_samples >= 1, "adaptive.theta_samples", self.theta_samples,
                 "must be >= 1")
        _one_of("adaptive.lr_control", self.lr_control, LR_CONTROLS)
        _require(0 < self.beta < 1, "adaptive.beta", self.beta, "must be in (0, 1)")
        _require(all(e > 0 for e in self.lr_decay_epochs), "adaptive.lr_decay_epochs",
                 self.lr_decay_epochs, "must be positive epochs")
        _require(self.saturation_patience >= 1, "adaptive.saturation_patience",
                 self.saturation_patience, "must be >= 1")
        _require(self.max_decays >= 0, "adaptive.max_decays", self.max_decays, "must be >= 0")


@dataclasses.dataclass
class StopConfig:
    """Convergence stop (Lee et al. VI-A: PSNR not up 0.1 dB in 50 epochs).

    Attributes:
      patience: epochs without an improvement of `min_delta` in `monitor`
        before the run stops (0: never stop early).
      min_delta: smallest improvement that counts.
      monitor: the log key ("" = the task's validation metric:
        val_accuracy or val_psnr).
    """

    patience: int = 0
    min_delta: float = 0.0
    monitor: str = ""

    def __post_init__(self):
        _check_types(self, "stop.")
        _require(self.patience >= 0, "stop.patience", self.patience, "must be >= 0")
        _require(self.min_delta >= 0, "stop.min_delta", self.min_delta, "must be >= 0")


@dataclasses.dataclass
class TrainConfig:
    """One training run.

    Attributes:
      name: run name (default run directory runs/<name>).
      epochs: training epochs.
      batch_size: global minibatch (split evenly over ranks).
      seed: seeds initialisation and the per-epoch data order.
      target_accuracies: values of the validation metric (accuracy; PSNR
        in dB for restoration) whose time-to-reach the summary reports
        (Codreanu et al. Tables III, XII).
      data, model, optimizer, schedule, adaptive, stop: see their classes.
    """

    name: str = "run"
    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    target_accuracies: tuple = ()
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    adaptive: AdaptiveConfig = dataclasses.field(default_factory=AdaptiveConfig)
    stop: StopConfig = dataclasses.field(default_factory=StopConfig)

    @property
    def task(self) -> str:
        """"restoration" (image -> image, PSNR) or "classification"."""
        return "restoration" if self.data.name in RESTORATION_DATASETS else "classification"

    @property
    def monitor(self) -> str:
        """The validation metric targets and the convergence stop refer to."""
        return "val_psnr" if self.task == "restoration" else "val_accuracy"

    def __post_init__(self):
        _check_types(self, "")
        self.target_accuracies = tuple(float(t) for t in self.target_accuracies)
        _require(bool(self.name) and "/" not in self.name, "name", self.name,
                 "must be a non-empty name without '/'")
        _require(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _require(self.seed >= 0, "seed", self.seed, "must be >= 0")
        for field, cls in (("data", DataConfig), ("model", ModelConfig),
                           ("optimizer", OptimizerConfig), ("schedule", ScheduleConfig),
                           ("adaptive", AdaptiveConfig), ("stop", StopConfig)):
            _require(isinstance(getattr(self, field), cls), field,
                     getattr(self, field), f"must be a {cls.__name__}")
        if self.task == "classification":
            _require(all(0 < t <= 1 for t in self.target_accuracies), "target_accuracies",
                     self.target_accuracies, "must be accuracies in (0, 1]")
            _require(self.model.name != "edsr", "model.name", self.model.name,
                     f"must be a classifier for data.name={self.data.name!r}")
        else:
            _require(self.model.name == "edsr", "model.name", self.model.name,
                     f"must be 'edsr' for the restoration data.name={self.data.name!r}")
        num_train = train_examples(self.data)
        if num_train is not None:
            _require(self.batch_size <= num_train, "batch_size", self.batch_size,
                     f"must be <= the {num_train} training examples of data.name="
                     f"{self.data.name!r}")
        if self.adaptive.enabled:
            _require(self.adaptive.max_batch >= self.batch_size, "adaptive.max_batch",
                     self.adaptive.max_batch, f"must be >= batch_size={self.batch_size}")
            if num_train is not None:
                _require(self.adaptive.max_batch <= num_train, "adaptive.max_batch",
                         self.adaptive.max_batch, f"must be <= the {num_train} training "
                         f"examples of data.name={self.data.name!r}")
        if self.schedule.kind == "standard" and not self.adaptive.enabled:
            _require(self.schedule.warmup_epochs < self.epochs, "schedule.warmup_epochs",
                     self.schedule.warmup_epochs, f"must be < epochs={self.epochs}")
        elif self.schedule.kind == "collapsed_ensemble":
            linear_end = self.schedule.ensemble.timing(self.epochs).linear_end_epoch
            _require(self.schedule.warmup_epochs <= linear_end,
                     "schedule.warmup_epochs", self.schedule.warmup_epochs,
                     f"must be <= schedule.ensemble.linear_end_epoch={linear_end:g}")
        if self.schedule.kind == "standard":
            c = self.schedule.collapse_epochs_for(self.epochs)
            _require(c < self.epochs, "schedule.collapse_epochs", self.schedule.collapse_epochs,
                     f"must leave main-phase epochs in a {self.epochs}-epoch run")
            _require(all(e < self.epochs for e in self.schedule.weight_decay_epochs),
                     "schedule.weight_decay_epochs", self.schedule.weight_decay_epochs,
                     f"must be < epochs={self.epochs}")

    def validate_for(self, num_ranks: int) -> None:
        """Checks what depends on the job size."""
        _require(self.batch_size % num_ranks == 0, "batch_size", self.batch_size,
                 f"must divide evenly over {num_ranks} ranks")
        if self.adaptive.enabled:
            _require(self.adaptive.max_batch % num_ranks == 0, "adaptive.max_batch",
                     self.adaptive.max_batch, f"must divide evenly over {num_ranks} ranks")

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _build(cls, d, "")


# Fields renamed since runs were written: old dotted name -> new field name.
RENAMED_FIELDS = {"adaptive.decay_epochs": "lr_decay_epochs"}


def _build(cls, d: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in d.items():
        key = RENAMED_FIELDS.get(f"{prefix}{key}", key)     # config.json of an earlier version
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"Field `{path}` is not a config field. Received: {path}={value!r}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if isinstance(value, hint):
                kwargs[key] = value
                continue
            _require(isinstance(value, dict), path, value, "must be a mapping")
            value = _build(hint, value, f"{path}.")
        kwargs[key] = value
    return cls(**kwargs)


# --------------------------------------------------------------------------
# Leaves, overrides and config files.
# --------------------------------------------------------------------------

# Fields a resumed run may change without changing what it computes.
RESUME_NEUTRAL_FIELDS = ("name", "data.data_dir", "data.cache", "target_accuracies")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def config_changes(before: TrainConfig, after: TrainConfig) -> dict:
    """{dotted field: (value before, value after)} of every leaf that differs."""
    a, b = _flatten(before.to_dict()), _flatten(after.to_dict())
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resume_changes(changes: dict, allowed=()) -> None:
    """ConfigError naming every changed field that alters the run's trajectory and is not allowed."""
    paths = dict(leaves())
    unknown = [f for f in allowed if f not in paths]
    if unknown:
        raise ConfigError(f"Field `allow_change` must name config fields. Received: "
                          f"allow_change={','.join(allowed)!r} ({', '.join(unknown)} unknown)")
    refused = {k: v for k, v in changes.items()
               if k not in RESUME_NEUTRAL_FIELDS and k not in allowed}
    if refused:
        listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise ConfigError(
            f"Field `resume` continues the run that was started, and these fields differ from "
            f"its config.json: {listed}. Pass --allow_change={','.join(refused)} to change "
            f"them anyway (recorded in resumes.json). Received: resume=True")


def leaves(cls=TrainConfig, prefix: str = ""):
    """(dotted path, type) of every leaf field, e.g. ("optimizer.base_lr", float)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from leaves(hint, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hint


def _parse_leaf(path: str, hint, text: str):
    if _optional(hint) is not None:
        if text.strip().lower() in ("", "none", "derived"):
            return None
        hint = _optional(hint)
    origin = typing.get_origin(hint) or hint
    try:
        if hint is bool:
            low = text.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return low in ("1", "true", "yes")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if origin is tuple:
            items = [s for s in text.replace(" ", "").split(",") if s]
            return tuple(float(s) if any(c in s for c in ".e") else int(s) for s in items)
        return str(text)
    except ValueError:
        raise ConfigError(f"Field `{path}` must be a {getattr(hint, '__name__', hint)}. "
                          f"Received: {path}={text!r}") from None


def apply_overrides(config: TrainConfig, overrides: dict[str, str]) -> TrainConfig:
    """A new config with dotted-path string overrides applied and re-validated."""
    d = config.to_dict()
    types = dict(leaves())
    for path, text in overrides.items():
        if path not in types:
            raise ConfigError(f"Field `{path}` is not a config field. Received: {path}={text!r}")
        node = d
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = _parse_leaf(path, types[path], text)
    return TrainConfig.from_dict(d)


def load_config(path: str) -> TrainConfig:
    """Reads a config: a `configs/*.py` module with get_config(), or a config.json."""
    if not os.path.isfile(path):
        raise ConfigError(f"Field `config` must name an existing file. Received: config={path!r}")
    if path.endswith(".json"):
        try:
            with open(path) as f:
                return TrainConfig.from_dict(json.load(f))
        except (ValueError, TypeError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"Field `config` names an unreadable JSON config ({err}). "
                              f"Received: config={path!r}") from None
    spec = importlib.util.spec_from_file_location(
        "lbsgd_config_" + os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"Field `config` must name a module defining get_config(). "
                              f"Received: config={path!r}")
        config = module.get_config()
    except ConfigError:
        raise
    except (TypeError, ValueError, SyntaxError, NameError, AttributeError, ImportError) as err:
        raise ConfigError(f"Field `config` names a file that does not build a config "
                          f"({type(err).__name__}: {err}). Received: config={path!r}") from None
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"Field `config` get_config() must return a TrainConfig. "
                          f"Received: config={path!r}")
    return config


# --------------------------------------------------------------------------
# Field descriptions for --help, read from each section's "Attributes:" docstring.
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FieldHelp:
    """One config field as `--help` lists it."""

    path: str          # dotted name, e.g. "optimizer.base_lr"
    type_name: str     # "int", "float", "bool", "str" or "list"
    default: object    # the dataclass default
    description: str   # from the section's "Attributes:" docstring, one paragraph


def attribute_docs(cls) -> dict[str, str]:
    """{field name: description} from a config dataclass's Google-style "Attributes:" section.

    An entry is `name: text` with continuation lines indented deeper;
    `a, b: text` describes both fields.
    """
    lines = (cls.__doc__ or "").expandtabs().splitlines()
    docs, names, indent = {}, None, None
    for i, line in enumerate(lines):
        if line.strip() == "Attributes:":
            body = lines[i + 1:]
            break
    else:
        return {}
    for line in body:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:
            break
        if depth == indent and ":" in line:
            head, text = line.strip().split(":", 1)
            names = [n.strip() for n in head.split(",")]
            for n in names:
                docs[n] = text.strip()
        elif names:
            for n in names:
                docs[n] = f"{docs[n]} {line.strip()}".strip()
    return docs


def _type_name(hint) -> str:
    if (typing.get_origin(hint) or hint) is tuple:
        return "list"
    return getattr(hint, "__name__", str(hint))


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def config_sections(cls=TrainConfig, prefix: str = ""):
    """[(section prefix, section class, [FieldHelp of its leaf fields])], depth first.

    Raises ConfigError naming a field that has no description (every field
    must be documented in its class's "Attributes:" section).
    """
    hints, docs = typing.get_type_hints(cls), attribute_docs(cls)
    leaves_here, nested = [], []
    for f in dataclasses.fields(cls):
        hint, path = hints[f.name], f"{prefix}{f.name}"
        if f.name not in docs:
            raise ConfigError(f"Field `{path}` has no description in {cls.__name__}'s "
                              f"\"Attributes:\" docstring. Received: {path}")
        if dataclasses.is_dataclass(hint):
            nested.append((hint, f"{path}."))
        else:
            leaves_here.append(FieldHelp(path, _type_name(hint), _default(f), docs[f.name]))
    sections = [(prefix.rstrip("."), cls, leaves_here)]
    for hint, sub in nested:
        sections += config_sections(hint, sub)
    return sections


def format_value(value) -> str:
    """A field value as it is written on the command line (`true`, `30,60,80`, `0.1`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v) for v in value) or "(empty)"
    if isinstance(value, str):
        return value if value else '""'
    return repr(value)


def fields_help(config: TrainConfig | None = None, width: int = 100) -> str:
    """Every config field grouped by section: `--path=<type>`, its default and description.

    With `config` (e.g. the file given with --config), fields whose value
    there differs from the default also show that value.
    """
    import textwrap

    values = _flatten(config.to_dict()) if config is not None else {}
    out = ["Config fields (any of them is a flag: --<field>=<value>; lists are "
           "comma-separated, bools true/false):"]
    for section, cls, fields in config_sections():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        out += ["", f"{section or 'run'}: {summary}"]
        for f in fields:
            head = f"  --{f.path}=<{f.type_name}>"
            note = f"default: {format_value(f.default)}"
            if f.path in values and values[f.path] != f.default:
                note += f"; in the config: {format_value(values[f.path])}"
            out.append(f"{head:<44} {note}" if len(head) < 44 else f"{head}  {note}")
            out += textwrap.wrap(f.description, width, initial_indent=" " * 6,
                                 subsequent_indent=" " * 6)
    return "\n".join(out)
