"""Keras 3 data-parallel training on Horovod's core ops: gradient averaging, broadcast, metric averaging.

Serves Codreanu et al. Section III (synchronous data-parallel SGD, one model
copy per worker, gradients averaged every step) and Lee et al. Section IV-A/B
(data parallelism, gradient exchange by allreduce or reduce-scatter +
allgather, overlapped with backprop in buckets). Horovod's own Keras layer is Keras-2 only; this module is lbsgd's
thin Keras-3 integration on `horovod.tensorflow` (`grouped_allreduce`,
`allreduce`, `reducescatter`, `allgather`, `broadcast`). Everything degrades to
a no-op in a single process.

Use in a script::

    rt = lbsgd.parallel.runtime.init()
    opt = lbsgd.parallel.DistributedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9))
    model.compile(optimizer=opt, loss=..., metrics=[...], jit_compile=False)
    model.fit(ds.shard(rt.size, rt.rank), callbacks=lbsgd.parallel.callbacks(),
              verbose=1 if rt.is_chief else 0)
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from lbsgd.config import COMPRESSIONS, DEFAULT_BUCKET_MB, EXCHANGES, check_argument_choice
from lbsgd.optim.decay import (add_l2_weight_decay, correct_momentum, default_decay_filter,
                               fused_momentum_update, learning_rate_ratio)
from lbsgd.optim.lars import LARS
from lbsgd.parallel.runtime import horovod, world_size


GRADIENT_EXCHANGES = EXCHANGES


# Wire format of the exchanged gradients: "none" sends them in their own dtype,
# "fp16" halves the bytes of float32 gradients (cast before, back after).
GRADIENT_COMPRESSIONS = COMPRESSIONS


# The exchanges that send buckets as backprop produces them, and the collective per bucket.
OVERLAPPED = {"overlap": "allreduce", "overlap_reducescatter": "reducescatter"}


def buckets(sizes, bucket_bytes: int, dtypes=None) -> list[list[int]]:
    """Gradient indices grouped for the overlapped exchange, in the order backprop makes them.

    Backprop produces the last layer's gradient first, so the buckets are
    filled from the last variable to the first: each holds consecutive
    variables of one dtype, at most `bucket_bytes` of them (a variable larger
    than that alone). Index lists are in increasing order within a bucket.

    Args:
      sizes: bytes of each gradient, in variable (forward) order.
      bucket_bytes: the most bytes a bucket holds (>= 1).
      dtypes: each gradient's dtype (a bucket never mixes two); None: one.
    """
    if bucket_bytes < 1:
        raise ValueError(f"Argument `bucket_bytes` must be >= 1. Received: "
                         f"bucket_bytes={bucket_bytes}")
    dtypes = list(dtypes) if dtypes is not None else [None] * len(sizes)
    out, current, filled = [], [], 0
    for i in reversed(range(len(sizes))):
        if current and (filled + sizes[i] > bucket_bytes or dtypes[i] != dtypes[current[0]]):
            out.append(sorted(current))
            current, filled = [], 0
        current.append(i)
        filled += sizes[i]
    if current:
        out.append(sorted(current))
    return out


def collective_calls(num_tensors: int, exchange: str, num_dtypes: int = 1,
                     num_buckets: int = 1) -> int:
    """Horovod collective calls one gradient exchange issues."""
    return {"grouped": 1, "per_tensor": num_tensors, "reducescatter": 2 * num_dtypes,
            "overlap": num_buckets, "overlap_reducescatter": 2 * num_buckets}[exchange]


def _wire_dtype(dtype, compression: str):
    """The dtype a gradient of `dtype` is exchanged in."""
    return tf.float16 if compression == "fp16" and dtype == tf.float32 else dtype


def average_gradients(grads, exchange: str = "grouped", compression: str = "none",
                      bucket_mb: float = DEFAULT_BUCKET_MB):
    """Averages a list of gradients over all ranks (None entries pass through).

    Args:
      grads: list of gradient tensors (or None), one per trainable variable.
      exchange: "grouped" (one grouped allreduce after backprop), "per_tensor"
        (one allreduce per gradient, fused by Horovod's background thread),
        "reducescatter" (Lee et al. IV-B: reduce-scatter then allgather of a
        flat buffer), or the overlapped ones, "overlap" (a grouped allreduce
        per bucket) and "overlap_reducescatter" (IV-B per bucket): buckets of
        `bucket_mb` filled from the last layer back (`buckets`), each its own
        collective that depends on its own gradients only, so inside a
        compiled step it starts as soon as backprop has produced them and
        runs while the earlier layers still back-propagate.
      compression: "none", or "fp16" to send float32 gradients as float16
        (half the bytes; Horovod sums them in float16, so gradients are
        rounded to ~3 significant digits and must stay below 65504 / ranks).
      bucket_mb: the overlapped exchanges' bucket size in MiB (> 0).
    """
    check_argument_choice("exchange", exchange, GRADIENT_EXCHANGES)
    check_argument_choice("compression", compression, GRADIENT_COMPRESSIONS)
    if not bucket_mb > 0:
        raise ValueError(f"Argument `bucket_mb` must be > 0. Received: bucket_mb={bucket_mb}")
    if world_size() == 1:
        return list(grads)
    hvd = horovod()
    present = [i for i, g in enumerate(grads) if g is not None]
    tensors = [tf.convert_to_tensor(grads[i]) for i in present]
    dtypes = [t.dtype for t in tensors]
    tensors = [tf.cast(t, _wire_dtype(t.dtype, compression)) for t in tensors]
    if exchange == "grouped":
        reduced = hvd.grouped_allreduce(tensors, op=hvd.Average)
    elif exchange == "per_tensor":
        reduced = [hvd.allreduce(t, op=hvd.Average) for t in tensors]
    elif exchange == "reducescatter":
        reduced = _reducescatter_allgather(tensors, hvd)
    else:
        reduced = _overlapped(tensors, hvd, OVERLAPPED[exchange], bucket_mb)
    out = list(grads)
    for i, r, dtype in zip(present, reduced, dtypes):
        out[i] = r if r.dtype == dtype else tf.cast(r, dtype)
    return out


def _tensor_bytes(t) -> int:
    return int(np.prod(t.shape)) * t.dtype.size


def _overlapped(tensors, hvd, collective: str, bucket_mb: float):
    """Each bucket (last layer first) averaged by its own collective (Lee et al. IV-B)."""
    out = [None] * len(tensors)
    for idx in buckets([_tensor_bytes(t) for t in tensors], int(bucket_mb * 2 ** 20),
                       [t.dtype for t in tensors]):
        part = [tensors[i] for i in idx]
        if collective == "allreduce":
            reduced = hvd.grouped_allreduce(part, op=hvd.Average)
        else:
            reduced = _reducescatter_allgather(part, hvd)
        for i, r in zip(idx, reduced):
            out[i] = r
    return out


def _reducescatter_allgather(tensors, hvd):
    """Average by reduce-scatter of a flat buffer, then allgather (Lee et al. IV-B)."""
    size = world_size()
    by_dtype = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    out = [None] * len(tensors)
    for dtype, idx in by_dtype.items():
        flat = tf.concat([tf.reshape(tensors[i], [-1]) for i in idx], axis=0)
        n = tf.shape(flat)[0]
        pad = (-n) % size
        flat = tf.pad(flat, [[0, pad]])
        rows = tf.reshape(flat, [size, -1])
        part = hvd.reducescatter(rows, op=hvd.Average)
        whole = tf.reshape(hvd.allgather(part), [-1])[:n]
        offset = 0
        for i in idx:
            k = int(np.prod(tensors[i].shape))
            out[i] = tf.reshape(whole[offset:offset + k], tf.shape(tensors[i]))
            offset += k
    return out


def exchange_gradients(optimizer, grads, exchange: str, compression: str,
                       bucket_mb: float = DEFAULT_BUCKET_MB):
    """Gradient exchange (Codreanu et al. III, Lee et al. IV-B): the average over ranks.

    Counts the Horovod calls in `optimizer.collective_calls` and records in
    `optimizer.nonfinite_step` the first step whose averaged gradient is not
    finite (the same on every rank: lbsgd.run.faults.DivergenceGuard reads it).
    """
    if world_size() > 1:
        present = [g for g in grads if g is not None]
        wire = [_wire_dtype(g.dtype, compression) for g in present]
        num_buckets = len(buckets([int(np.prod(g.shape)) * w.size for g, w in zip(present, wire)],
                                  int(bucket_mb * 2 ** 20), wire))
        optimizer.collective_calls.assign_add(collective_calls(
            len(present), exchange, len(set(wire)), num_buckets))
    grads = average_gradients(grads, exchange, compression, bucket_mb)
    checks = [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
    if checks:
        flag = optimizer.nonfinite_step
        first = tf.logical_and(tf.logical_not(tf.reduce_all(tf.stack(checks))), flag < 0)
        flag.assign(tf.where(first, tf.cast(optimizer.iterations, tf.int64),
                             tf.convert_to_tensor(flag)))
    return grads


class _DistributedMixin:
    """A Keras optimizer whose update runs the three concerns above, in order.

    exchange_gradients -> add_l2_weight_decay -> correct_momentum (SGD with
    momentum, when on) -> the wrapped optimizer's own update. Its variables
    (`l2_weight_decay`, `collective_calls`, `nonfinite_step`,
    `previous_learning_rate`) are optimizer variables, so checkpoints keep them.

    Keras' SGD with momentum (not Nesterov, no gradient accumulation) gets the
    fused update (lbsgd.optim.decay.fused_momentum_update): one kernel per
    variable, Keras' own formula, the momentum correction folded into the
    momentum instead of a pass that scales every velocity first
    (benchmarks.update times both).
    """

    _lbsgd_exchange = "grouped"
    _lbsgd_compression = "none"
    _lbsgd_bucket_mb = DEFAULT_BUCKET_MB
    _lbsgd_momentum_correction = False
    _lbsgd_fused_update = False
    _lbsgd_velocity_scale = None     # lr_t / lr_{t-1} while a fused apply() is traced

    def _lbsgd_setup(self, exchange: str, weight_decay: float, decay_filter,
                     momentum_correction: bool = False, compression: str = "none",
                     bucket_mb: float = DEFAULT_BUCKET_MB, fused_update: bool = True):
        check_argument_choice("exchange", exchange, GRADIENT_EXCHANGES)
        check_argument_choice("compression", compression, GRADIENT_COMPRESSIONS)
        if weight_decay < 0:
            raise ValueError("Argument `weight_decay` must be >= 0. "
                             f"Received: weight_decay={weight_decay}")
        if not bucket_mb > 0:
            raise ValueError(f"Argument `bucket_mb` must be > 0. Received: bucket_mb={bucket_mb}")
        self._lbsgd_exchange, self._lbsgd_compression = exchange, compression
        self._lbsgd_bucket_mb = float(bucket_mb)
        self._lbsgd_decay_filter = decay_filter or default_decay_filter
        with keras.name_scope("lbsgd"):
            if _owns_l2(self):      # LARS: its own coefficient variable is lbsgd's
                if weight_decay:
                    self.l2_weight_decay.assign(float(weight_decay))
            else:
                self.l2_weight_decay = keras.Variable(
                    float(weight_decay), dtype="float32", trainable=False,
                    name="l2_weight_decay")
            # Horovod collective calls issued by this optimizer (counted in the graph).
            self.collective_calls = keras.Variable(0, dtype="int64", trainable=False,
                                                   name="collective_calls")
            # First optimizer step (0-based) whose averaged gradient was not finite; -1: none.
            self.nonfinite_step = keras.Variable(-1, dtype="int64", trainable=False,
                                                 name="nonfinite_step")
        self._lbsgd_momentum_correction = bool(momentum_correction) and bool(
            getattr(self, "momentum", 0.0))
        if self._lbsgd_momentum_correction:
            with keras.name_scope("lbsgd"):
                self.previous_learning_rate = keras.Variable(
                    0.0, dtype="float32", trainable=False, name="previous_learning_rate")
        self._lbsgd_fused_update = bool(fused_update) and _fusable(self)

    def apply(self, grads, trainable_variables=None):
        variables = (list(trainable_variables) if trainable_variables is not None
                     else list(self._trainable_variables))
        grads = exchange_gradients(self, list(grads), self._lbsgd_exchange,
                                   self._lbsgd_compression, self._lbsgd_bucket_mb)
        if not _owns_l2(self):
            grads = add_l2_weight_decay(grads, variables, self.l2_weight_decay,
                                        self._lbsgd_decay_filter)
        if not self._lbsgd_momentum_correction:
            return super().apply(grads, trainable_variables)
        if not self._lbsgd_fused_update:
            correct_momentum(self, variables)
            return super().apply(grads, trainable_variables)
        ratio = learning_rate_ratio(self, variables)
        # The variables this step leaves alone (no gradient, or not passed) get the
        # correction's pass, as the unfused path gives every velocity.
        updated = {self._var_key(v) for v, g in zip(variables, grads) if g is not None}
        for v in self._trainable_variables:
            if self._var_key(v) not in updated:
                velocity = self.momentums[self._get_variable_index(v)]
                velocity.assign(velocity * tf.cast(ratio, velocity.dtype))
        self._lbsgd_velocity_scale = ratio
        try:
            return super().apply(grads, trainable_variables)
        finally:
            self._lbsgd_velocity_scale = None

    def update_step(self, gradient, variable, learning_rate):
        if not self._lbsgd_fused_update:
            return super().update_step(gradient, variable, learning_rate)
        if self._lbsgd_momentum_correction and self._lbsgd_velocity_scale is None:
            raise RuntimeError("The fused SGD update runs inside the optimizer's apply() only "
                               "(it carries the momentum correction); call apply(), or wrap "
                               "with fused_update=False.")
        fused_momentum_update(variable, self.momentums[self._get_variable_index(variable)],
                              gradient, learning_rate, self.momentum,
                              self._lbsgd_velocity_scale)

    # -- model.save / load_model ----------------------------------------------
    def get_config(self):
        """The wrapped optimizer's config and lbsgd's settings (`import lbsgd` before loading)."""
        base, inner = _base_class(type(self)), super().get_config()
        if _owns_l2(self):       # the coefficient travels once, as `weight_decay`
            inner["l2_weight_decay"] = 0.0
        return {"optimizer": keras.optimizers.serialize(base.from_config(inner)),
                "exchange": self._lbsgd_exchange, "compression": self._lbsgd_compression,
                "bucket_mb": self._lbsgd_bucket_mb,
                "weight_decay": float(keras.ops.convert_to_numpy(self.l2_weight_decay)),
                "momentum_correction": self._lbsgd_momentum_correction,
                "fused_update": self._lbsgd_fused_update}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        if "optimizer" not in config:       # a plain optimizer config: build this class from it
            return super().from_config(config, custom_objects=custom_objects)
        config = dict(config)
        # by module and class name: keras.optimizers.deserialize knows no Lamb
        inner = keras.saving.deserialize_keras_object(config.pop("optimizer"),
                                                      custom_objects=custom_objects)
        return DistributedOptimizer(inner, **config)

    @property
    def gradient_exchange(self) -> str:
        return self._lbsgd_exchange

    @property
    def gradient_compression(self) -> str:
        return self._lbsgd_compression

    @property
    def bucket_mb(self) -> float:
        return self._lbsgd_bucket_mb

    @property
    def fused_update(self) -> bool:
        """Whether each variable is updated by one fused kernel (the class docstring)."""
        return self._lbsgd_fused_update


def _fusable(optimizer) -> bool:
    """Keras' own SGD with momentum, not Nesterov, no gradient accumulation, on TensorFlow."""
    return (_base_class(type(optimizer)) is keras.optimizers.SGD
            and keras.backend.backend() == "tensorflow"
            and float(optimizer.momentum) > 0 and not optimizer.nesterov
            and not optimizer.gradient_accumulation_steps)


def _owns_l2(optimizer) -> bool:
    """Whether the optimizer applies lbsgd's L2 itself (LARS, inside its trust ratio)."""
    return bool(getattr(optimizer, "owns_l2_weight_decay", False))


def _base_class(cls):
    """The Keras optimizer class under lbsgd's wrapper (the class itself if unwrapped)."""
    return next(c for c in cls.__mro__ if not issubclass(c, _DistributedMixin))


_CLASSES = {}


def _distributed_class(base):
    """`Distributed<Base>`: one subclass per optimizer class, registered for model.save/load."""
    if base not in _CLASSES:
        cls = type(f"Distributed{base.__name__}", (_DistributedMixin, base),
                   {"__module__": __name__})
        _CLASSES[base] = keras.saving.register_keras_serializable(package="lbsgd")(cls)
    return _CLASSES[base]


def _check_wrappable(optimizer, weight_decay: float, decay_filter) -> None:
    """DistributedOptimizer's arguments: a Keras optimizer, unbuilt, one weight decay."""
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError("Argument `optimizer` must be a keras.optimizers.Optimizer. "
                        f"Received: optimizer={optimizer!r}")
    if getattr(optimizer, "built", False):
        raise ValueError("Argument `optimizer` must not be built yet (wrap it before "
                         f"compile/fit). Received: optimizer={optimizer.name!r}")
    native = getattr(optimizer, "weight_decay", None)
    if weight_decay and native:
        raise ValueError(
            "Argument `weight_decay` would add a second weight decay: the optimizer already "
            f"has Keras' decoupled weight_decay={native}. Use one of them. Received: "
            f"weight_decay={weight_decay}")
    if _owns_l2(optimizer):
        own = float(keras.ops.convert_to_numpy(optimizer.l2_weight_decay))
        if weight_decay and own:
            raise ValueError(
                "Argument `weight_decay` would set the weight decay twice: the optimizer "
                f"already has l2_weight_decay={own} (inside its trust ratio). Use one of them. "
                f"Received: weight_decay={weight_decay}")
        if decay_filter is not None:
            raise ValueError(
                "Argument `decay_filter` does not apply: the optimizer decays inside its trust "
                "ratio and chooses the variables by its `exclude_from_adaptation`. Received: "
                f"decay_filter={decay_filter!r}")


def DistributedOptimizer(optimizer: keras.optimizers.Optimizer,
                         exchange: str = "grouped",
                         weight_decay: float = 0.0,
                         decay_filter=None,
                         momentum_correction: bool = True,
                         compression: str = "none",
                         bucket_mb: float = DEFAULT_BUCKET_MB,
                         fused_update: bool = True) -> keras.optimizers.Optimizer:
    """Wraps a Keras 3 optimizer so its updates use gradients averaged over all ranks.

    Works for any Keras 3 optimizer: returns an instance of a subclass of the
    optimizer's own class, rebuilt from its config, so learning-rate schedules,
    momentum and every other argument are kept.

    Args:
      optimizer: the (unbuilt) Keras optimizer to wrap.
      exchange: gradient exchange, one of "grouped", "per_tensor", "reducescatter",
        "overlap", "overlap_reducescatter" (see `average_gradients`).
      weight_decay: Caffe-style L2 coefficient added to the averaged gradient
        (for lbsgd.optim.lars.LARS: its `l2_weight_decay`, applied inside the trust
        ratio; nothing is added to the gradient).
      decay_filter: callable(variable) -> bool selecting decayed variables
        (default: tensors of rank > 1, i.e. kernels).
      momentum_correction: scale the velocity by lr_t / lr_{t-1} (for
        optimizers with a `momentum` > 0, i.e. SGD; ignored otherwise). On by
        default, as in OptimizerConfig.
      compression: wire format of the exchanged gradients, "none" or "fp16"
        (float32 gradients sent as float16: half the bytes).
      bucket_mb: bucket size of the overlapped exchanges, in MiB.
      fused_update: for Keras' SGD with momentum (not Nesterov), update each
        variable with one fused kernel, the momentum correction folded in
        (the same maths up to float rounding); False: Keras' own ops.
        Ignored for other optimizers.
    """
    _check_wrappable(optimizer, weight_decay, decay_filter)
    base = _base_class(type(optimizer))
    wrapped = _distributed_class(base).from_config(optimizer.get_config())
    wrapped._lbsgd_setup(exchange, weight_decay, decay_filter, momentum_correction,
                         compression, bucket_mb, fused_update)
    return wrapped




for _optimizer in (keras.optimizers.SGD, keras.optimizers.Adam, keras.optimizers.AdamW,
                   keras.optimizers.RMSprop, keras.optimizers.Nadam, keras.optimizers.Lion,
                   keras.optimizers.Lamb, LARS):
    _distributed_class(_optimizer)   # so `load_model` finds them once lbsgd is imported
