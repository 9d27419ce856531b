"""Collapsed-ensemble evaluation: each snapshot's and the prediction-averaged ensemble's accuracy.

Serves Codreanu et al. Section VI (Table XI, Figure 4): the snapshots taken
at the end of each collapse of one training run are combined by averaging
their softmax outputs; the loss, top-1 and top-5 accuracy of every snapshot
and of the ensemble are reported side by side.

As a callback (:class:`EnsembleEvaluation`, at the end of `fit`) or from the
command line, in one process or under horovodrun (each rank evaluates its
share of the validation set; counts are summed over ranks)::

    python -m lbsgd.ensemble --run_dir runs/digits_recipe [--snapshots 12,16,20]
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lbsgd.run import rundir  # noqa: E402

ENSEMBLE_NAME = rundir.ENSEMBLE


def _predict(model, dataset):
    probs, labels = [], []
    for x, y in dataset:
        probs.append(np.asarray(model.predict_on_batch(x), dtype=np.float64))
        labels.append(np.asarray(y))
    if not probs:
        n = model.outputs[0].shape[-1]
        return np.zeros((0, n)), np.zeros((0,), np.int64)
    return np.concatenate(probs), np.concatenate(labels).astype(np.int64)


def _sums(probs, labels, top_k: int = 5) -> np.ndarray:
    """[n, loss sum, top-1 hits, top-k hits] of probabilities against labels."""
    if len(labels) == 0:
        return np.zeros(4)
    p_true = probs[np.arange(len(labels)), labels]
    loss = -np.log(np.clip(p_true, 1e-7, 1.0)).sum()
    rank = (probs > p_true[:, None]).sum(axis=1)  # classes scored above the label
    return np.array([len(labels), loss, (rank == 0).sum(), (rank < top_k).sum()], np.float64)


def _row(name: str, sums: np.ndarray, **extra) -> dict:
    n = max(sums[0], 1.0)
    return {"name": name, "examples": int(sums[0]), "loss": sums[1] / n,
            "top1": sums[2] / n, "top5": sums[3] / n, **extra}


def evaluate_model(model, dataset, top_k: int = 5) -> dict:
    """Loss, top-1 and top-k of `model`'s current weights over every rank's share of `dataset`."""
    from lbsgd import parallel
    sums = parallel.allreduce_numpy([_sums(*_predict(model, dataset), top_k)], op="sum",
                                       name="lbsgd.evaluate_model")[0]
    return _row("model", sums)


def evaluate_snapshots(model, snapshot_paths, dataset, members=None, top_k: int = 5) -> dict:
    """Evaluates each snapshot and the ensemble averaging their softmax outputs.

    Args:
      model: a model of the snapshots' architecture (its weights are replaced;
        save them first if you need them).
      snapshot_paths: snapshot files (lbsgd.run.checkpoint.save_weights format).
      dataset: this rank's validation batches (x, y); in a Horovod job each
        rank passes its own share and the counts are summed over ranks.
      members: indices into snapshot_paths forming the ensemble (default all).
    Returns:
      {"snapshots": [row per snapshot], "ensemble": row}, each row holding
      name, epoch, examples, loss, top1, top5.
    """
    from lbsgd.run import checkpoint as ckpt
    from lbsgd import parallel

    paths = list(snapshot_paths)
    if not paths:
        raise ValueError("Argument `snapshot_paths` must name at least one snapshot. "
                         "Received: snapshot_paths=[]")
    members = list(range(len(paths))) if members is None else list(members)
    bad = [m for m in members if not 0 <= m < len(paths)]
    if bad or not members:
        raise ValueError(f"Argument `members` must index the {len(paths)} snapshots. "
                         f"Received: members={members}")
    all_sums, metas, total, labels = [], [], None, None
    for i, path in enumerate(paths):
        metas.append(ckpt.load_weights(path, model))
        probs, labels = _predict(model, dataset)
        all_sums.append(_sums(probs, labels, top_k))
        if i in members:
            total = probs if total is None else total + probs
    all_sums.append(_sums(total / len(members), labels, top_k))
    reduced = parallel.allreduce_numpy(all_sums, op="sum", name="lbsgd.ensemble")
    rows = [_row(os.path.basename(p), s, epoch=m.get("epoch"), phase=m.get("phase"),
                 cycle=m.get("cycle"), learning_rate=m.get("learning_rate"))
            for p, s, m in zip(paths, reduced[:-1], metas)]
    ensemble = _row("ensemble", reduced[-1],
                    members=[os.path.basename(paths[m]) for m in members])
    return {"snapshots": rows, "ensemble": ensemble}


def format_table(result: dict) -> str:
    """The result as a Table XI-style text table."""
    lines = [f"{'snapshot':<18} {'epoch':>5} {'loss':>8} {'top-1 %':>8} {'top-5 %':>8}"]
    for r in result["snapshots"] + [result["ensemble"]]:
        epoch = "" if r.get("epoch") is None else str(r["epoch"])
        lines.append(f"{r['name']:<18} {epoch:>5} {r['loss']:>8.4f} {100 * r['top1']:>8.2f} "
                     f"{100 * r['top5']:>8.2f}")
    return "\n".join(lines)


class EnsembleEvaluation(keras.callbacks.Callback):
    """At the end of `fit`, evaluates the snapshots a Snapshots callback took, and their ensemble.

    Rank 0 writes the result to `path` (JSON) and prints a Table XI-style
    table; every rank gets it as `self.result`. The model's final weights
    are put back afterwards.

    Args:
      snapshots: the lbsgd.recipe.phases.Snapshots callback of the same fit.
      dataset: this rank's validation batches.
      path: JSON file for the result (None: do not write).
      members: snapshot indices of the ensemble (default: all), or
      last: the ensemble averages the last this many snapshots (Codreanu et
        al. VI: 5); 0 = all. Every snapshot is evaluated either way.
      min_snapshots: evaluate only when at least this many snapshots exist.
    """

    def __init__(self, snapshots, dataset, path: str | None = None, members=None,
                 min_snapshots: int = 1, verbose: bool = True, last: int = 0):
        super().__init__()
        if members is not None and last:
            raise ValueError(f"Give `members` or `last`, not both. Received: members={members}, "
                             f"last={last}")
        self.snapshots = snapshots
        self.dataset = dataset
        self.path = path
        self.members = members
        self.last = int(last)
        self.min_snapshots = int(min_snapshots)
        self.verbose = verbose
        self.result = None

    def on_train_end(self, logs=None):
        self.evaluate(self.model)

    def evaluate(self, model) -> dict | None:
        """Evaluates the snapshots and their ensemble on `model` (its weights are put back)."""
        from lbsgd.run import checkpoint as ckpt
        from lbsgd.parallel import runtime

        if len(self.snapshots.snapshots) < self.min_snapshots:
            return None
        saved = [keras.ops.convert_to_numpy(v.value) for v in model.variables]
        n = len(self.snapshots.snapshots)
        members = (list(range(max(0, n - self.last), n)) if self.last else self.members)
        try:
            self.result = evaluate_snapshots(model, self.snapshots.paths, self.dataset,
                                             members)
        finally:
            for v, value in zip(model.variables, saved):
                v.assign(value)
        if runtime.current().is_chief:
            if self.path:
                ckpt.atomic_write_json(self.path, self.result)
            if self.verbose:
                print("Collapsed ensemble (softmax average of "
                      f"{len(self.result['ensemble']['members'])} snapshots):\n"
                      + format_table(self.result), flush=True)
        return self.result
