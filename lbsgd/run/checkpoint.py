"""Atomic run files and exact-resume checkpoints (model, optimizer, trainer state).

Serves the reporting of Codreanu et al. Section V (time-to-train, accuracy per
run) by making long runs restartable: a checkpoint is one `.npz` holding every
model and optimizer variable plus the trainer's JSON state, written to a
temporary file and renamed into place, so a killed job never leaves a
half-written checkpoint, history or summary behind.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np

from lbsgd.run import rundir

CHECKPOINT_NAME = rundir.CHECKPOINT
# The atomic writers live with the run directory; re-exported for the callbacks.
atomic_write_bytes = rundir.atomic_write_bytes
atomic_write_text = rundir.atomic_write_text
atomic_write_json = rundir.atomic_write_json
remove_stale_temporaries = rundir.remove_stale_temporaries
atomic_write_arrays = rundir.atomic_write_arrays


def _variables(model: keras.Model):
    opt = model.optimizer
    if opt is not None and not opt.built:
        opt.build(model.trainable_variables)
    return list(model.variables), list(opt.variables) if opt is not None else []


def _write(path: str, groups: dict, json_key: str, obj) -> None:
    """One .npz of variable groups ({prefix: variables}) and a JSON entry, atomically."""
    arrays = {f"{prefix}/{i}": keras.ops.convert_to_numpy(v.value)
              for prefix, variables in groups.items() for i, v in enumerate(variables)}
    arrays[json_key] = np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)
    atomic_write_arrays(path, arrays)


def _assign(z, path: str, prefix: str, variables) -> None:
    """Assigns the `prefix/i` arrays of an open .npz to `variables`, checking count and shapes."""
    count = sum(1 for k in z.files if k.startswith(prefix + "/"))
    if count != len(variables):
        raise ValueError(f"Checkpoint {path!r} holds {count} {prefix} variables, the "
                         f"model has {len(variables)}: was it made by another config?")
    for i, v in enumerate(variables):
        value = z[f"{prefix}/{i}"]
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(f"Checkpoint {path!r}: {prefix} variable {v.path!r} has "
                             f"shape {tuple(value.shape)}, the model {tuple(v.shape)}.")
        v.assign(value)


def _read_json(path: str, key: str):
    with np.load(path) as z:
        return json.loads(bytes(z[key]).decode("utf-8"))


def save(path: str, model: keras.Model, state: dict, keep_previous: str | None = None) -> None:
    """Saves model and optimizer variables and a JSON-able `state`, atomically.

    With `keep_previous`, the checkpoint being replaced is first kept at that path
    (a hard link, or a copy where links are refused), so the epoch before stays
    readable if this one turns out damaged. `path` itself never goes missing: a
    reader (or a resume after a kill at any instant) finds the old epoch or the new.
    """
    model_vars, opt_vars = _variables(model)
    if keep_previous and os.path.isfile(path):
        _keep_copy(path, keep_previous)
    _write(path, {"model": model_vars, "optimizer": opt_vars}, "state", state)


def _keep_copy(path: str, keep: str) -> None:
    """Makes `keep` hold what `path` holds now, atomically, leaving `path` in place."""
    import shutil

    def link_or_copy(tmp):
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copy2(path, tmp)

    rundir.atomic_write_file(keep, link_or_copy)


def load(path: str, model: keras.Model) -> dict:
    """Restores variables saved by :func:`save` into `model`; returns the state."""
    model_vars, opt_vars = _variables(model)
    with np.load(path) as z:
        _assign(z, path, "model", model_vars)
        _assign(z, path, "optimizer", opt_vars)
        return json.loads(bytes(z["state"]).decode("utf-8"))


def read_state(path: str) -> "rundir.RunState":
    """The run state of a checkpoint, without touching any model (ConfigError if unreadable)."""
    return rundir.read_run_state(path)


def save_weights(path: str, model: keras.Model, meta: dict) -> None:
    """Saves the model's variables (no optimizer) and JSON `meta`, atomically (snapshots)."""
    _write(path, {"model": model.variables}, "meta", meta)


def load_weights(path: str, model: keras.Model) -> dict:
    """Restores variables saved by :func:`save_weights`; returns the metadata."""
    load_model_variables(path, model)
    return read_meta(path)


def read_meta(path: str) -> dict:
    """The metadata of a snapshot, without touching any model."""
    return _read_json(path, "meta")


def load_model_variables(path: str, model: keras.Model) -> None:
    """Restores only the model variables of a checkpoint or snapshot (no optimizer)."""
    with np.load(path) as z:
        _assign(z, path, "model", list(model.variables))
