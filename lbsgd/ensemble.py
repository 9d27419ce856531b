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
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lbsgd import rundir  # noqa: E402
from lbsgd.rundir import RunDir  # noqa: E402

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
    from lbsgd import distributed
    sums = distributed.allreduce_numpy([_sums(*_predict(model, dataset), top_k)], op="sum",
                                       name="lbsgd.evaluate_model")[0]
    return _row("model", sums)


def evaluate_snapshots(model, snapshot_paths, dataset, members=None, top_k: int = 5) -> dict:
    """Evaluates each snapshot and the ensemble averaging their softmax outputs.

    Args:
      model: a model of the snapshots' architecture (its weights are replaced;
        save them first if you need them).
      snapshot_paths: snapshot files (lbsgd.checkpoint.save_weights format).
      dataset: this rank's validation batches (x, y); in a Horovod job each
        rank passes its own share and the counts are summed over ranks.
      members: indices into snapshot_paths forming the ensemble (default all).
    Returns:
      {"snapshots": [row per snapshot], "ensemble": row}, each row holding
      name, epoch, examples, loss, top1, top5.
    """
    from lbsgd import checkpoint as ckpt
    from lbsgd import distributed

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
    reduced = distributed.allreduce_numpy(all_sums, op="sum", name="lbsgd.ensemble")
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
      snapshots: the lbsgd.recipe.Snapshots callback of the same fit.
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
        from lbsgd import checkpoint as ckpt
        from lbsgd import runtime

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


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------

def _select(index: list[dict], spec: str | None, directory: str) -> list[str]:
    files = [s["file"] for s in index]
    if not spec:
        return [os.path.join(directory, f) for f in files]
    chosen = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item.isdigit():
            match = [s["file"] for s in index if s["epoch"] == int(item)]
            if not match:
                raise ValueError(f"Field `snapshots` names epoch {item}, which has no snapshot "
                                 f"(epochs: {[s['epoch'] for s in index]}). Received: "
                                 f"snapshots={spec!r}")
            chosen.append(os.path.join(directory, match[0]))
        else:
            path = item if os.path.isfile(item) else os.path.join(directory, item)
            if not os.path.isfile(path):
                raise ValueError(f"Field `snapshots` names a file that does not exist: "
                                 f"{item!r}. Received: snapshots={spec!r}")
            chosen.append(path)
    return chosen


def _parser():
    from lbsgd import cli

    parser = cli.command_parser(
        "python -m lbsgd.ensemble",
        "Evaluate a run's collapse snapshots and their softmax-averaged ensemble\n"
        "(Codreanu et al. Table XI) and print the table. A file is written only when\n"
        f"asked: --output FILE, or --overwrite for the run's own {ENSEMBLE_NAME}.",
        examples="""
launch/run.sh -np 2 python -m lbsgd.ensemble --run_dir runs/digits_recipe
launch/run.sh -np 2 python -m lbsgd.ensemble --run_dir runs/digits_recipe --snapshots 12,16,20 \\
    --output runs/digits_recipe/last3.json""")
    parser.add_argument("--run_dir", required=True, help="run directory of lbsgd.train")
    parser.add_argument("--snapshots", default=None,
                        help="comma-separated snapshot epochs or files (default: all)")
    parser.add_argument("--output", default=None,
                        help="write the result (JSON) to this file (default: print only)")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace RUN_DIR/{ENSEMBLE_NAME}, the result the training run "
                             "wrote, with this one")
    return parser


def main(argv=None) -> int:
    import json

    args = _parser().parse_args(argv)

    from lbsgd import config as config_lib
    from lbsgd import recipe

    def error(msg):
        print(f"lbsgd.ensemble: error: {msg}", file=sys.stderr)
        return 2

    config_path = RunDir(args.run_dir).config
    index_path = os.path.join(args.run_dir, recipe.SNAPSHOT_DIR, recipe.SNAPSHOT_INDEX)
    if not os.path.isfile(config_path) or not os.path.isfile(index_path):
        return error("Field `run_dir` must hold config.json and snapshots/index.json. "
                     f"Received: run_dir={args.run_dir!r}")
    try:
        cfg = config_lib.load_config(config_path)
        with open(index_path) as f:
            index = json.load(f)["snapshots"]
        paths = _select(index, args.snapshots, os.path.dirname(index_path))
    except (ValueError, config_lib.ConfigError) as err:
        return error(err)

    from lbsgd import data, models, runtime
    rt = runtime.init()
    source = data.load_source(cfg.data, cfg.seed)
    model = models.build_model(cfg.model, source.input_shape, source.num_classes)
    val = data.val_dataset(source, max(1, cfg.batch_size // rt.size), rt.rank, rt.size)
    result = evaluate_snapshots(model, paths, val)
    if rt.is_chief:
        from lbsgd import checkpoint as ckpt
        print(format_table(result))
        output = args.output or (os.path.join(args.run_dir, ENSEMBLE_NAME) if args.overwrite
                                 else None)
        if output:
            ckpt.atomic_write_json(output, result)
            print(f"lbsgd.ensemble: wrote {output}")
        else:
            print(f"lbsgd.ensemble: not saved (--output FILE saves it; --overwrite replaces "
                  f"{os.path.join(args.run_dir, ENSEMBLE_NAME)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
