"""Rank agreement outside the gradient step: broadcast, eager collectives, metric averaging.

Serves Codreanu et al. Section III and Lee et al. Section IV-A (one model
copy per worker, all copies equal): rank 0's initial or resumed weights are
broadcast, BN moving statistics kept equal, and each epoch's metrics are
exact averages over ranks (sums of counts, not averages of averages). The
callbacks every data-parallel `fit` needs are :func:`callbacks`. Everything
is a no-op in a single process.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from lbsgd.parallel.runtime import horovod, world_size


def broadcast_variables(variables, root_rank: int = 0) -> None:
    """Sets every variable to root_rank's value (one broadcast per dtype)."""
    if world_size() == 1 or not variables:
        return
    hvd = horovod()
    by_dtype = {}
    for v in variables:
        by_dtype.setdefault(np.dtype(v.dtype), []).append(v)
    for k, (dtype, vs) in enumerate(sorted(by_dtype.items(), key=lambda kv: kv[0].str)):
        flat = np.concatenate([np.ravel(keras.ops.convert_to_numpy(v.value)) for v in vs]
                              ).astype(dtype, copy=False)
        flat = hvd.broadcast(tf.constant(flat), root_rank,
                             name=f"lbsgd.broadcast.{k}").numpy()
        offset = 0
        for v in vs:
            n = int(np.prod(v.shape))
            v.assign(flat[offset:offset + n].reshape(v.shape))
            offset += n


def allreduce_numpy(values, op: str = "sum", name: str = "lbsgd.allreduce"):
    """Eager allreduce of a list of numpy arrays (float64 on the wire)."""
    values = [np.asarray(x, dtype=np.float64) for x in values]
    if world_size() == 1 or not values:
        return values
    if op not in ("sum", "average"):
        raise ValueError(f"Argument `op` must be 'sum' or 'average'. Received: op={op!r}")
    hvd = horovod()
    hop = hvd.Sum if op == "sum" else hvd.Average
    reduced = hvd.grouped_allreduce([tf.constant(x) for x in values], op=hop, name=name)
    return [r.numpy() for r in reduced]


def broadcast_object(obj, root_rank: int = 0, name: str = "lbsgd.object"):
    """Any picklable object from root_rank, on every rank."""
    if world_size() == 1:
        return obj
    return horovod().broadcast_object(obj, root_rank=root_rank, name=name)


def average_variables(variables, name: str = "lbsgd.average") -> None:
    """Replaces each float variable by its mean over ranks (e.g. BN moving statistics)."""
    variables = [v for v in variables if np.dtype(v.dtype).kind == "f"]
    if world_size() == 1 or not variables:
        return
    means = allreduce_numpy([keras.ops.convert_to_numpy(v.value) for v in variables],
                            op="average", name=name)
    for v, m in zip(variables, means):
        v.assign(m.astype(np.dtype(v.dtype)))


def barrier() -> None:
    """Waits until every rank gets here."""
    if world_size() > 1:
        allreduce_numpy([np.zeros(1)], name="lbsgd.barrier")


class BroadcastGlobalVariables(keras.callbacks.Callback):
    """Copies rank 0's model and optimizer variables to every rank when training begins.

    Ranks may start from different random initialisations (or a resume on
    rank 0 only); after this callback every rank holds rank 0's state.
    """

    def __init__(self, root_rank: int = 0):
        super().__init__()
        self.root_rank = root_rank

    def on_train_begin(self, logs=None):
        model = self.model
        if world_size() > 1 and getattr(model, "jit_compile", False):
            raise ValueError("Horovod ops cannot be XLA-compiled: compile the model with "
                             "`jit_compile=False`. Received: jit_compile=True")
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        broadcast_variables(list(model.variables) + list(model.optimizer.variables),
                            self.root_rank)


class SyncModelState(keras.callbacks.Callback):
    """Averages non-trainable model variables (BN moving statistics) over ranks.

    Each rank updates its BN moving averages from its own shard; averaging them
    before every validation and at every epoch end keeps all ranks' models
    identical, so validation and checkpoints see one model. Outside `fit`
    (a standalone `evaluate`) it does nothing.
    """

    def __init__(self):
        super().__init__()
        self.in_fit = False
        self.synced = False      # this epoch's statistics are averaged already

    def on_train_begin(self, logs=None):
        self.in_fit = True

    def on_train_end(self, logs=None):
        self.in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self.synced = False

    def _sync(self):
        if not self.synced:
            average_variables(self.model.non_trainable_variables, name="lbsgd.sync_state")
            self.synced = True

    def on_test_begin(self, logs=None):
        if self.in_fit:
            self._sync()

    def on_epoch_end(self, epoch, logs=None):
        self._sync()


class MetricAverage(keras.callbacks.Callback):
    """Makes epoch logs global: every metric is computed over all ranks' samples.

    Sums each metric's state variables (totals and counts) over ranks before
    the result is read, so uneven shards are weighted by their sample counts.
    Training metrics are made global before validation resets them; validation
    metrics at the end of validation; both are written into the epoch logs
    before History, CSV or TensorBoard read them. Exact for additive metrics
    (means, accuracies, confusion counts), which are Keras' usual ones. A
    standalone `evaluate` outside an epoch is left alone.
    """

    def __init__(self):
        super().__init__()
        self.in_epoch = False
        self.train_results = None    # this epoch's global training metrics, once taken
        self.val_results = None      # this epoch's global validation metrics

    def on_epoch_begin(self, epoch, logs=None):
        self.in_epoch = True
        self.train_results = self.val_results = None

    def _global_results(self, name):
        model = self.model
        variables = [v for m in model.metrics for v in m.variables]
        local = [keras.ops.convert_to_numpy(v.value) for v in variables]
        summed = allreduce_numpy(local, op="sum", name=name)
        for v, s in zip(variables, summed):
            v.assign(s.astype(np.dtype(v.dtype)))
        results = {k: float(keras.ops.convert_to_numpy(x))
                   for k, x in model.get_metrics_result().items()}
        for v, x in zip(variables, local):
            v.assign(x)
        return results

    def on_test_begin(self, logs=None):
        if self.in_epoch and self.train_results is None:
            self.train_results = self._global_results("lbsgd.metrics.train")

    def on_test_end(self, logs=None):
        if self.in_epoch:
            self.val_results = self._global_results("lbsgd.metrics.val")

    def on_epoch_end(self, epoch, logs=None):
        self.in_epoch = False
        if logs is None:
            return
        train = self.train_results
        if train is None:
            train = self._global_results("lbsgd.metrics.train")
        logs.update(train)
        if self.val_results is not None:
            logs.update({f"val_{k}": v for k, v in self.val_results.items()})


def callbacks(root_rank: int = 0):
    """The callbacks every data-parallel `fit` needs, in the order they must run.

    Put them before any callback that reads epoch logs (CSV, TensorBoard,
    early stopping); Keras adds History and the progress bar after them.
    """
    return [BroadcastGlobalVariables(root_rank), SyncModelState(), MetricAverage()]
