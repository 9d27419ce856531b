"""The whole run's config (`TrainConfig`), its dotted overrides and config files.

A config file is a Python module under `configs/` defining `get_config()`
that returns a :class:`TrainConfig`. Any leaf can be overridden on the command
line by its dotted path (`--optimizer.base_lr=0.2`, `--epochs=4`). Serves both
papers' experiment tables (Codreanu et al. Tables I-IX; Lee et al. Tables I-III).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import typing

from lbsgd.config.checks import RESTORATION_DATASETS, check_types, optional_type, require
from lbsgd.config.data import DataConfig, train_examples
from lbsgd.config.sections import (AdaptiveConfig, ModelConfig, OptimizerConfig,
                                   ScheduleConfig, StopConfig)
from lbsgd.errors import ConfigError


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
        check_types(self, "")
        self.target_accuracies = tuple(float(t) for t in self.target_accuracies)
        require(bool(self.name) and "/" not in self.name, "name", self.name,
                 "must be a non-empty name without '/'")
        require(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        require(self.seed >= 0, "seed", self.seed, "must be >= 0")
        for field, cls in (("data", DataConfig), ("model", ModelConfig),
                           ("optimizer", OptimizerConfig), ("schedule", ScheduleConfig),
                           ("adaptive", AdaptiveConfig), ("stop", StopConfig)):
            require(isinstance(getattr(self, field), cls), field,
                     getattr(self, field), f"must be a {cls.__name__}")
        if self.task == "classification":
            require(all(0 < t <= 1 for t in self.target_accuracies), "target_accuracies",
                     self.target_accuracies, "must be accuracies in (0, 1]")
            require(self.model.name != "edsr", "model.name", self.model.name,
                     f"must be a classifier for data.name={self.data.name!r}")
        else:
            require(self.model.name == "edsr", "model.name", self.model.name,
                     f"must be 'edsr' for the restoration data.name={self.data.name!r}")
        num_train = train_examples(self.data)
        if num_train is not None:
            require(self.batch_size <= num_train, "batch_size", self.batch_size,
                     f"must be <= the {num_train} training examples of data.name="
                     f"{self.data.name!r}")
        if self.adaptive.enabled:
            require(self.adaptive.max_batch >= self.batch_size, "adaptive.max_batch",
                     self.adaptive.max_batch, f"must be >= batch_size={self.batch_size}")
            if num_train is not None:
                require(self.adaptive.max_batch <= num_train, "adaptive.max_batch",
                         self.adaptive.max_batch, f"must be <= the {num_train} training "
                         f"examples of data.name={self.data.name!r}")
            if self.adaptive.start_batch == "probe":
                candidates = self.adaptive.probe_candidates(self.batch_size)
                require(candidates[-1] <= self.adaptive.max_batch, "adaptive.probe_batches",
                        candidates, f"must be <= adaptive.max_batch={self.adaptive.max_batch}")
        else:
            require(self.adaptive.start_batch == "batch_size", "adaptive.start_batch",
                     self.adaptive.start_batch, "must be 'batch_size' without adaptive.enabled")
            require(self.adaptive.max_ranks == 0, "adaptive.max_ranks", self.adaptive.max_ranks,
                    "must be 0 without adaptive.enabled (the ranks grow with the batch)")
        if self.schedule.kind == "standard" and not self.adaptive.enabled:
            require(self.schedule.warmup_epochs < self.epochs, "schedule.warmup_epochs",
                     self.schedule.warmup_epochs, f"must be < epochs={self.epochs}")
        elif self.schedule.kind == "collapsed_ensemble":
            linear_end = self.schedule.ensemble.timing(self.epochs).linear_end_epoch
            require(self.schedule.warmup_epochs <= linear_end,
                     "schedule.warmup_epochs", self.schedule.warmup_epochs,
                     f"must be <= schedule.ensemble.linear_end_epoch={linear_end:g}")
        if self.schedule.kind == "standard":
            c = self.schedule.collapse_epochs_for(self.epochs)
            require(c < self.epochs, "schedule.collapse_epochs", self.schedule.collapse_epochs,
                     f"must leave main-phase epochs in a {self.epochs}-epoch run")
            require(all(e < self.epochs for e in self.schedule.weight_decay_epochs),
                     "schedule.weight_decay_epochs", self.schedule.weight_decay_epochs,
                     f"must be < epochs={self.epochs}")

    def validate_for(self, num_ranks: int) -> None:
        """Checks what depends on the job size."""
        require(self.batch_size % num_ranks == 0, "batch_size", self.batch_size,
                 f"must divide evenly over {num_ranks} ranks")
        if self.adaptive.enabled:
            require(self.adaptive.max_batch % num_ranks == 0, "adaptive.max_batch",
                     self.adaptive.max_batch, f"must divide evenly over {num_ranks} ranks")
            if self.adaptive.start_batch == "probe":
                candidates = self.adaptive.probe_candidates(self.batch_size)
                require(all(b % num_ranks == 0 for b in candidates), "adaptive.probe_batches",
                         candidates, f"must each divide evenly over {num_ranks} ranks")
            require(self.adaptive.max_ranks == 0 or self.adaptive.max_ranks >= num_ranks,
                    "adaptive.max_ranks", self.adaptive.max_ranks,
                    f"must be 0 or >= the job's {num_ranks} ranks")

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
            require(isinstance(value, dict), path, value, "must be a mapping")
            value = _build(hint, value, f"{path}.")
        kwargs[key] = value
    return cls(**kwargs)


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
    if optional_type(hint) is not None:
        if text.strip().lower() in ("", "none", "derived"):
            return None
        hint = optional_type(hint)
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
