"""Precise BN: BN population statistics re-estimated with the current weights, for evaluation.

Serves Codreanu et al. Section IV-C (the BN tweaks) and the evaluation of
their large-batch runs, with the "precise BN" of Wu & Johnson 2021,
"Rethinking 'Batch' in BatchNorm" (as pycls' and Detectron2's PreciseBN): with
few optimizer updates the BN moving averages (momentum 0.95) lag the weights,
so validation normalises with stale statistics. Before evaluating, the model
runs forward in training mode on a few training batches (each BN normalising
with its batch statistics, as in training) and every BN's moving mean and
variance become the true population mean and (biased) variance of its input
over all those samples and positions, summed over all ranks.

Use in a script (`train_ds`: this rank's training batches)::

    model.fit(train_ds, validation_data=val_ds,
              callbacks=[*lbsgd.parallel.callbacks(), PreciseBN(train_ds, 16)])
"""

from __future__ import annotations

import itertools
import numbers
import weakref

import keras
import numpy as np
import tensorflow as tf

from lbsgd import data
from lbsgd import parallel

_MOMENTS = weakref.WeakKeyDictionary()   # model -> (its BN layers, their batch moments' function)


def bn_layers(model) -> list:
    """The model's trainable BatchNormalization layers, nested models included.

    A frozen BN (trainable=False) normalises with its moving statistics in
    training as well, so it keeps them.
    """
    found, seen = [], set()

    def visit(layer):
        for sub in getattr(layer, "layers", ()):
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            if isinstance(sub, keras.layers.BatchNormalization):
                if sub.trainable:
                    found.append(sub)
            else:
                visit(sub)
    visit(model)
    return found


def _batch_moments(model, layers):
    """tf.function(x) -> [(mean, variance)] of each BN's input over the batch x (training mode).

    Traced with every BN's momentum at 0, so the moving statistics Keras
    updates in training mode are exactly the batch's moments.
    """
    cached = _MOMENTS.get(model)
    if cached is not None and cached[0] == [id(layer) for layer in layers]:
        return cached[1]
    model_ref = weakref.ref(model)   # the cache must not keep the model alive

    @tf.function(reduce_retracing=True)
    def moments(x):
        model_ref()(x, training=True)
        return [(tf.identity(layer.moving_mean.value), tf.identity(layer.moving_variance.value))
                for layer in layers]
    _MOMENTS[model] = ([id(layer) for layer in layers], moments)
    return moments


def _check_num_batches(num_batches) -> None:
    if (isinstance(num_batches, bool) or not isinstance(num_batches, numbers.Integral)
            or num_batches < 1):
        raise ValueError("Argument `num_batches` must be an int >= 1. "
                         f"Received: num_batches={num_batches!r}")


def recompute_bn_statistics(model, batches, num_batches: int) -> int:
    """Sets each BN's moving mean and variance to its input's population statistics.

    Runs `model` forward in training mode on the first `num_batches` of
    `batches` (an iterable or tf.data.Dataset of x or (x, y, ...); fewer if it
    ends first), accumulates for each trainable BN layer the per-channel
    sum(x), sum(x^2) and count in float64 (from each batch's float32 moments,
    so mixed_bfloat16 models are measured in float32), sums those over all
    ranks, and sets moving_mean = S1 / N and moving_variance = S2 / N - mean^2
    (clipped at 0). The weights and every other variable are left as they were.
    Every batch needs the same input shape (counts are taken per sample), and
    every rank must call it (one allreduce). Returns the batches this rank used.
    """
    _check_num_batches(num_batches)
    layers = bn_layers(model)
    renorm = [layer.name for layer in layers if layer.renorm]
    if renorm:
        raise ValueError("Argument `model` must not hold BN layers with renorm=True (their "
                         f"statistics are renormalised, not batch moments). Received: {renorm}")
    if not layers:
        return 0
    # Forward passes in training mode change BN statistics (and e.g. dropout seeds):
    # every non-trainable variable gets its value back, then the BN statistics are set.
    saved = [(v, keras.ops.convert_to_numpy(v.value)) for v in model.non_trainable_variables]
    momenta = [layer.momentum for layer in layers]
    sums = [np.zeros(layer.moving_mean.shape, np.float64) for layer in layers for _ in (1, 2)]
    samples, used, shape = 0, 0, None
    try:
        for layer in layers:
            layer.momentum = 0.0        # moving = 0 * moving + 1 * batch moments
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape))      # no 0 * inf
            layer.moving_variance.assign(np.zeros(layer.moving_variance.shape))
        moments = _batch_moments(model, layers)
        for batch in itertools.islice(iter(batches), num_batches):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if shape is not None and tuple(x.shape[1:]) != shape:
                raise ValueError("Argument `batches` must hold inputs of one shape. Received "
                                 f"shapes {shape} and {tuple(x.shape[1:])} (batch {used})")
            shape, n = tuple(x.shape[1:]), int(x.shape[0])
            for i, (mean, variance) in enumerate(moments(x)):
                mean = mean.numpy().astype(np.float64)
                sums[2 * i] += n * mean
                sums[2 * i + 1] += n * (variance.numpy().astype(np.float64) + mean * mean)
            samples, used = samples + n, used + 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for v, value in saved:
            v.assign(value)
    *sums, total = parallel.allreduce_numpy(sums + [np.array([samples])], op="sum",
                                               name="lbsgd.model.precise_bn")
    if total[0] == 0:
        raise ValueError(f"Argument `batches` gave no batch on any rank. Received: "
                         f"batches={batches!r}")
    for i, layer in enumerate(layers):
        mean = sums[2 * i] / total[0]
        variance = np.maximum(sums[2 * i + 1] / total[0] - mean * mean, 0.0)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    return used


def training_batches(source, global_batch: int, seed: int, rank: int, size: int, epoch,
                     augment_switch=None):
    """This rank's training batches of `epoch` for recompute_bn_statistics.

    The local batches (global_batch / size examples) and augmentation (the
    `augment_switch` state of that epoch) the training stream gives that
    epoch, from a pipeline of their own (lbsgd.data.epoch_train_dataset;
    `epoch` may be a tf.Variable), so drawing them leaves training alone. One
    epoch of this rank's shard: steps_per_epoch batches, which caps how many
    can be drawn.
    """
    return data.epoch_train_dataset(source, global_batch, seed, rank, size, epoch,
                                    augment_switch)


class PreciseBN(keras.callbacks.Callback):
    """Recomputes the BN statistics (recompute_bn_statistics) before evaluation, once per epoch.

    Inside `fit` it recomputes before the epoch's validation, or at the epoch
    end when the epoch has none, so validation, snapshots and checkpoints see
    the recomputed statistics; a standalone `evaluate` is left alone. Put it
    after lbsgd.parallel.SyncModelState. Publishes `precise_bn_batches`
    (the batches this rank used) in the epoch logs.

    Args:
      batches: training batches of x or (x, y): an iterable (a tf.data.Dataset
        is iterated anew each time; an iterator goes on), or a callable(epoch)
        -> iterable giving batches for that 0-based epoch.
      num_batches: batches per recomputation (on every rank).
    """

    def __init__(self, batches, num_batches: int):
        super().__init__()
        _check_num_batches(num_batches)
        self.batches, self.num_batches = batches, int(num_batches)
        self.in_fit = False
        self.epoch = None
        self.used = None        # batches used this epoch; None: not recomputed yet

    def on_train_begin(self, logs=None):
        self.in_fit = True

    def on_train_end(self, logs=None):
        self.in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.used = epoch, None

    def _recompute(self):
        if self.used is None and self.epoch is not None:
            batches = self.batches(self.epoch) if callable(self.batches) else self.batches
            self.used = recompute_bn_statistics(self.model, batches, self.num_batches)

    def on_test_begin(self, logs=None):
        if self.in_fit:
            self._recompute()

    def on_epoch_end(self, epoch, logs=None):
        self._recompute()
        if logs is not None:
            logs["precise_bn_batches"] = self.used
