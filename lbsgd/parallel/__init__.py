"""Data parallelism on Horovod for Keras 3: start-up, the gradient exchange, rank agreement (Codreanu et al. III; Lee et al. IV-A/B).

* `runtime`: Horovod start-up, rank and size, per-rank threads
* `exchange`: `DistributedOptimizer` and the gradient exchange (grouped
  allreduce, per tensor, reduce-scatter + allgather; fp16 on the wire)
* `sync`: broadcast, eager collectives, exact metric averaging, `callbacks()`

Every public name of `exchange` and `sync` is importable from
`lbsgd.parallel` itself (as from `lbsgd.distributed` before).
"""

from lbsgd._exports import lazy

_WHERE = {
    "DistributedOptimizer": "exchange", "GRADIENT_COMPRESSIONS": "exchange",
    "GRADIENT_EXCHANGES": "exchange", "average_gradients": "exchange",
    "collective_calls": "exchange", "exchange_gradients": "exchange",
    "add_l2_weight_decay": "lbsgd.optim.decay", "correct_momentum": "lbsgd.optim.decay",
    "default_decay_filter": "lbsgd.optim.decay", "BroadcastGlobalVariables": "sync",
    "MetricAverage": "sync", "SyncModelState": "sync", "allreduce_numpy": "sync",
    "average_variables": "sync", "barrier": "sync", "broadcast_object": "sync",
    "broadcast_variables": "sync", "callbacks": "sync",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy(__name__, _WHERE)
