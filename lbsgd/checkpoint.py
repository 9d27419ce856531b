"""Atomic run files and exact-resume checkpoints (model, optimizer, trainer state).

Serves the reporting of Codreanu et al. Section V (time-to-train, accuracy per
run) by making long runs restartable: a checkpoint is one `.npz` holding every
model and optimizer variable plus the trainer's JSON state, written to a
temporary file and renamed into place, so a killed job never leaves a
half-written checkpoint, history or summary behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile

import keras
import numpy as np

from lbsgd import rundir

CHECKPOINT_NAME = rundir.CHECKPOINT


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` so readers see the old file or the new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())     # mkstemp makes 0600; run files follow the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


RUN_FILES = rundir.RUN_FILES


def remove_stale_temporaries(directory: str, bases=RUN_FILES) -> None:
    """Deletes temporary files a killed writer left in `directory` (never complete files).

    Only temporaries of the files named in `bases`; `bases=None`: every hidden
    file (a directory only lbsgd writes, such as snapshots/).
    """
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if name.startswith(".") and (bases is None or any(
                name.startswith(f".{base}.") for base in bases)):
            os.unlink(os.path.join(directory, name))


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def strict_json(obj):
    """`obj` with every non-finite float replaced by None (so json.dumps gives strict JSON)."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def atomic_write_json(path: str, obj) -> None:
    """Writes strict JSON (non-finite numbers become null), atomically."""
    atomic_write_text(path, json.dumps(strict_json(obj), indent=2, sort_keys=True,
                                       allow_nan=False) + "\n")


def _variables(model: keras.Model):
    opt = model.optimizer
    if opt is not None and not opt.built:
        opt.build(model.trainable_variables)
    return list(model.variables), list(opt.variables) if opt is not None else []


def atomic_write_arrays(path: str, arrays: dict) -> None:
    """Writes named numpy arrays as one .npz, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


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

    With `keep_previous`, the checkpoint being replaced is first renamed to that
    path, so the epoch before stays readable if this one turns out damaged."""
    model_vars, opt_vars = _variables(model)
    if keep_previous and os.path.isfile(path):
        os.replace(path, keep_previous)
    _write(path, {"model": model_vars, "optimizer": opt_vars}, "state", state)


def load(path: str, model: keras.Model) -> dict:
    """Restores variables saved by :func:`save` into `model`; returns the state."""
    model_vars, opt_vars = _variables(model)
    with np.load(path) as z:
        _assign(z, path, "model", model_vars)
        _assign(z, path, "optimizer", opt_vars)
        return json.loads(bytes(z["state"]).decode("utf-8"))


def read_state(path: str) -> dict:
    """The trainer state of a checkpoint, without touching any model (ConfigError if unreadable)."""
    return rundir.read_checkpoint_state(path)


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
