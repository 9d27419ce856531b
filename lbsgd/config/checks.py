"""The config's vocabulary and checks: every field's allowed choices and the one-line errors.

Serves both papers' experiment tables (Codreanu et al. Tables I-IX; Lee et al.
Tables I-III) by refusing a bad value before any process trains, naming the
field and the value.
"""

from __future__ import annotations

import dataclasses
import typing

from lbsgd.errors import ConfigError


DATASETS = ("digits", "fashion_mnist", "synthetic", "folder", "cifar10", "imagenet2012",
            "phantom")


RESTORATION_DATASETS = ("phantom",)


IMAGENET_TRAIN_EXAMPLES = 1_281_167


MODELS = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet50", "edsr")


LR_SCALINGS = ("linear", "root", "none")


LR_CONTROLS = ("none", "saturation", "fixed")
# Where the adaptive run's starting batch B_s comes from (Lee et al. III-D's probe, or the config).
START_BATCHES = ("batch_size", "probe")


OPTIMIZERS = ("sgd", "adam", "lars", "lamb")


# Variables kept out of weight decay (and out of LARS's trust ratio): "rank1" = biases, BN
# gamma/beta (lbsgd.parallel.default_decay_filter's complement); "none".
EXCLUSIONS = ("rank1", "none")


DECAYS = ("poly", "steps", "constant")


SCHEDULE_KINDS = ("standard", "collapsed_ensemble")


# "overlap" and "overlap_reducescatter" exchange buckets as backprop produces them (Lee et al. IV-B).
EXCHANGES = ("grouped", "per_tensor", "reducescatter", "overlap", "overlap_reducescatter")


# Bucket size of the overlapped exchanges, in MiB (PyTorch DDP's first bucket is 1 MiB,
# Horovod's fusion buffer 64 MiB): ResNet-50's 98 MiB of gradients make ~25 buckets.
DEFAULT_BUCKET_MB = 4.0


COMPRESSIONS = ("none", "fp16")


AUGMENTATIONS = ("none", "crop", "scale_aspect")


def require(ok: bool, field: str, value, rule: str) -> None:
    if not ok:
        raise ConfigError(f"Field `{field}` {rule}. Received: {field}={value!r}")


def optional_type(hint):
    """X for a `X | None` hint (None = derived from other fields), else None."""
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None))
    return None


def check_types(obj, section: str) -> None:
    """ConfigError for a field whose value has the wrong type (ints stay ints: epochs=2.5 is
    refused, not truncated); ints given for floats become floats, lists for tuples tuples."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint, value, name = hints[f.name], getattr(obj, f.name), f"{section}{f.name}"
        if dataclasses.is_dataclass(hint):
            continue
        if optional_type(hint) is not None:
            if value is None:
                continue
            hint = optional_type(hint)
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


def one_of(field: str, value, choices) -> None:
    require(value in choices, field, value, f"must be one of {tuple(choices)}")


def check_argument_choice(name: str, value, choices) -> None:
    """ValueError naming the function argument and its value unless `value` is in `choices`."""
    if value not in choices:
        raise ValueError(f"Argument `{name}` must be one of {tuple(choices)}. "
                         f"Received: {name}={value!r}")
