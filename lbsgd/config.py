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

DATASETS = ("digits", "synthetic")
MODELS = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet50")
OPTIMIZERS = ("sgd", "adam")
DECAYS = ("poly", "steps", "constant")
EXCHANGES = ("grouped", "per_tensor", "reducescatter")
AUGMENTATIONS = ("none", "crop", "crop_flip")


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and the value."""


def _require(ok: bool, field: str, value, rule: str) -> None:
    if not ok:
        raise ConfigError(f"Field `{field}` {rule}. Received: {field}={value!r}")


def _one_of(field: str, value, choices) -> None:
    _require(value in choices, field, value, f"must be one of {tuple(choices)}")


@dataclasses.dataclass
class DataConfig:
    """Where the examples come from and how they are fed.

    Attributes:
      name: dataset; "digits" ships with scikit-learn (offline default).
      data_dir: local directory for datasets that do not ship with a package.
      image_size: side of the square training image fed to the model.
      augment: "none", "crop" (pad-and-crop) or "crop_flip".
      num_train: examples for generated datasets ("synthetic").
      validation_fraction: held-out share for datasets without a split (digits).
      cache: keep decoded examples in RAM (the paper copies ImageNet to RAM).
    """

    name: str = "digits"
    data_dir: str = ""
    image_size: int = 32
    augment: str = "none"
    num_train: int = 1024
    validation_fraction: float = 0.2
    cache: bool = True

    def __post_init__(self):
        _one_of("data.name", self.name, DATASETS)
        _one_of("data.augment", self.augment, AUGMENTATIONS)
        _require(self.image_size >= 8, "data.image_size", self.image_size, "must be >= 8")
        _require(self.num_train >= 1, "data.num_train", self.num_train, "must be >= 1")
        _require(0.0 < self.validation_fraction < 1.0, "data.validation_fraction",
                 self.validation_fraction, "must be in (0, 1)")


@dataclasses.dataclass
class ModelConfig:
    """The network and its batch-normalisation tweaks (Codreanu et al. IV-C).

    Attributes:
      name: "resnet8/14/20/32" (CIFAR-style, He et al.) or "resnet50".
      bn_moving_average_fraction: Caffe's moving_average_fraction (Keras BN
        momentum); the paper sets 0.95.
      zero_gamma_last_bn: gamma = 0 for the last BN of each residual block.
      dtype_policy: Keras mixed-precision policy ("float32", "mixed_bfloat16").
    """

    name: str = "resnet20"
    bn_moving_average_fraction: float = 0.95
    zero_gamma_last_bn: bool = True
    dtype_policy: str = "float32"

    def __post_init__(self):
        _one_of("model.name", self.name, MODELS)
        _require(0.0 <= self.bn_moving_average_fraction < 1.0,
                 "model.bn_moving_average_fraction", self.bn_moving_average_fraction,
                 "must be in [0, 1)")
        _one_of("model.dtype_policy", self.dtype_policy, ("float32", "mixed_bfloat16"))


@dataclasses.dataclass
class OptimizerConfig:
    """Optimizer, linear scaling rule and weight decay (Codreanu et al. IV-B, IV-D).

    Attributes:
      name: "sgd" (momentum SGD, the paper's) or "adam" (Lee et al. VI-A).
      base_lr: learning rate at the reference batch size.
      reference_batch: batch size base_lr belongs to; peak LR = base_lr x
        global batch / reference_batch (linear scaling rule, Goyal et al.).
      max_lr: ceiling on the scaled LR (the paper holds 6.4 for >= 16K); 0 = none.
      momentum: SGD momentum.
      weight_decay: Caffe-style L2 coefficient (paper: 1e-4 standard, 5e-5
        before the collapse).
      exchange: gradient exchange "grouped", "per_tensor" or "reducescatter".
    """

    name: str = "sgd"
    base_lr: float = 0.1
    reference_batch: int = 256
    max_lr: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 5e-5
    exchange: str = "grouped"

    def __post_init__(self):
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


@dataclasses.dataclass
class ScheduleConfig:
    """Learning-rate schedule over the run (Codreanu et al. IV-D, Table I).

    Attributes:
      warmup_epochs: gradual warmup from ~0 to the peak LR (paper: 5; 7-10 for
        very large batches).
      decay: "poly" (polynomial to 0 over the run), "steps" (x0.1 at
        step_epochs) or "constant".
      power: polynomial power (1 = linear, the paper's default).
      step_epochs: epochs of the x0.1 steps (the 3-step baseline: 30, 60, 80).
    """

    warmup_epochs: float = 5.0
    decay: str = "poly"
    power: float = 1.0
    step_epochs: tuple = (30, 60, 80)

    def __post_init__(self):
        self.step_epochs = tuple(self.step_epochs)
        _require(self.warmup_epochs >= 0, "schedule.warmup_epochs", self.warmup_epochs,
                 "must be >= 0")
        _one_of("schedule.decay", self.decay, DECAYS)
        _require(self.power > 0, "schedule.power", self.power, "must be > 0")
        _require(all(e > 0 for e in self.step_epochs) and
                 list(self.step_epochs) == sorted(self.step_epochs),
                 "schedule.step_epochs", self.step_epochs,
                 "must be increasing positive epochs")


@dataclasses.dataclass
class TrainConfig:
    """One training run.

    Attributes:
      name: run name (default run directory runs/<name>).
      epochs: training epochs.
      batch_size: global minibatch (split evenly over ranks).
      seed: seeds initialisation and the per-epoch data order.
      target_accuracies: validation accuracies whose time-to-accuracy the
        summary reports (Codreanu et al. Tables III, XII).
      data, model, optimizer, schedule: see their classes.
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

    def __post_init__(self):
        self.target_accuracies = tuple(float(t) for t in self.target_accuracies)
        _require(bool(self.name) and "/" not in self.name, "name", self.name,
                 "must be a non-empty name without '/'")
        _require(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _require(all(0 < t <= 1 for t in self.target_accuracies), "target_accuracies",
                 self.target_accuracies, "must be accuracies in (0, 1]")
        for field, cls in (("data", DataConfig), ("model", ModelConfig),
                           ("optimizer", OptimizerConfig), ("schedule", ScheduleConfig)):
            _require(isinstance(getattr(self, field), cls), field,
                     getattr(self, field), f"must be a {cls.__name__}")

    def validate_for(self, num_ranks: int) -> None:
        """Checks what depends on the job size."""
        _require(self.batch_size % num_ranks == 0, "batch_size", self.batch_size,
                 f"must divide evenly over {num_ranks} ranks")

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _build(cls, d, "")


def _build(cls, d: dict, prefix: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"Field `{path}` is not a config field. Received: {path}={value!r}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            _require(isinstance(value, dict), path, value, "must be a mapping")
            value = _build(hint, value, f"{path}.")
        kwargs[key] = value
    return cls(**kwargs)


# --------------------------------------------------------------------------
# Leaves, overrides and config files.
# --------------------------------------------------------------------------

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
        with open(path) as f:
            return TrainConfig.from_dict(json.load(f))
    spec = importlib.util.spec_from_file_location(
        "lbsgd_config_" + os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"Field `config` must name a module defining get_config(). "
                          f"Received: config={path!r}")
    config = module.get_config()
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"Field `config` get_config() must return a TrainConfig. "
                          f"Received: config={path!r}")
    return config
