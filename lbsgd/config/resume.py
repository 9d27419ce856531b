"""The resume policy: which config changes a resumed run may make (exact resume, both papers).

A resumed run must compute what the interrupted one would have; only the
fields in :data:`RESUME_NEUTRAL_FIELDS` (and those a caller allows) may change.
"""

from __future__ import annotations

from lbsgd.config.schema import TrainConfig, leaves
from lbsgd.errors import ConfigError


# Fields a resumed run may change without changing what it computes.
RESUME_NEUTRAL_FIELDS = ("name", "data.data_dir", "data.cache", "target_accuracies")


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def config_changes(before: TrainConfig, after: TrainConfig) -> dict:
    """{dotted field: (value before, value after)} of every leaf that differs."""
    a, b = flatten(before.to_dict()), flatten(after.to_dict())
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
