"""A finished run in Keras' own format: the trained network and the collapsed ensemble as `.keras`.

Serves Codreanu et al. Section VI (the collapsed ensemble, Table XI) and the
use of any run's result outside lbsgd. `checkpoint.npz` is lbsgd's
exact-resume format; these files are for everything else:

- `model.keras`: the network as trained, with the BN statistics it was
  evaluated with (PreciseBN's where `model.precise_bn_batches` is on).
- `ensemble.keras`: one Keras model whose output averages the softmax
  outputs of the snapshots `ensemble.json` scores as its ensemble.

Both are saved uncompiled: the optimizer is left out (its state is the
checkpoint's business, and lbsgd's DistributedOptimizer needs Horovod), so
`keras.saving.load_model(path)` works in a process that imports neither
lbsgd nor Horovod; `compile()` it with any Keras optimizer to fine-tune.
The input is what lbsgd's validation pipeline feeds: images scaled to
[0, 1] at the data config's size.
"""

from __future__ import annotations

import keras

from lbsgd.model import batchnorm
from lbsgd.run import rundir

MODEL_NAME = rundir.MODEL
ENSEMBLE_MODEL_NAME = rundir.ENSEMBLE_MODEL


def _save(model: keras.Model, path: str) -> None:
    """`model.save(path)` so a reader sees the old file or the new one, never a part."""
    rundir.atomic_write_file(path, lambda tmp: model.save(tmp, overwrite=True), suffix=".keras")


def inference_copy(model: keras.Model, name: str | None = None) -> keras.Model:
    """An uncompiled copy of `model` (same layers, its current weights), for saving; fused
    BN layers become Keras' own (lbsgd.model.batchnorm), so the file loads without lbsgd."""
    copy = keras.Model.from_config(batchnorm.as_keras_layers(model.get_config()))
    copy.set_weights(model.get_weights())
    if name:
        copy.name = name
    return copy


def save_model(model: keras.Model, path: str) -> str:
    """Writes `model`'s network with its current weights to `path` (.keras, uncompiled)."""
    _save(inference_copy(model), path)
    return path


def ensemble_model(model: keras.Model, snapshot_paths) -> keras.Model:
    """One Keras model averaging the softmax outputs of the snapshots (Codreanu et al. VI).

    Each member is a copy of `model`'s network holding one snapshot's weights
    (lbsgd.run.checkpoint.save_weights files); the average is taken in float64, in
    the members' order, as lbsgd.recipe.ensemble.evaluate_snapshots takes it, so the
    model's top-1 is the one ensemble.json reports.
    """
    from lbsgd.run import checkpoint as ckpt

    paths = list(snapshot_paths)
    if len(paths) < 2:
        raise ValueError(f"Argument `snapshot_paths` must name at least 2 snapshots. "
                         f"Received: snapshot_paths={paths}")
    saved = [keras.ops.convert_to_numpy(v.value) for v in model.variables]
    members = []
    try:
        for path in paths:
            meta = ckpt.load_weights(path, model)
            epoch = meta.get("epoch")
            members.append(inference_copy(
                model, name=f"snapshot_epoch_{epoch}" if epoch is not None else
                f"snapshot_{len(members)}"))
    finally:
        for v, value in zip(model.variables, saved):
            v.assign(value)
    inputs = keras.Input(shape=model.inputs[0].shape[1:], name="image")
    outputs = [m(inputs) for m in members]   # float32 softmax; Average casts them to float64
    average = keras.layers.Average(dtype="float64", name="softmax_average")(outputs)
    return keras.Model(inputs, average, name="collapsed_ensemble")


def save_ensemble(model: keras.Model, snapshot_paths, path: str) -> str:
    """Writes :func:`ensemble_model` of the snapshots to `path` (.keras, uncompiled)."""
    _save(ensemble_model(model, snapshot_paths), path)
    return path
