"""Plots of schedules, runs and collapsed ensembles (Codreanu et al. Figures 3-4, Table XI;
Lee et al. Figures 2-3, 5-6).

* :func:`schedule_timeline`: LR, weight decay, augmentation and phases of
  any config over its epochs, before training (only the schedule objects are
  evaluated), with snapshot epochs marked.
* :func:`run_curves`: a run directory's `history.csv` (loss, validation
  metric, LR, batch size, theta) with phase changes and batch growths marked;
  the LR and the batch size are drawn as steps (they change at step or epoch
  boundaries), the LR of a scheduled run as its schedule, step by step.
* :func:`compare_runs`: the same curves of several runs on shared axes.
* :func:`ensemble_table` / :func:`ensemble_plot`: per-snapshot and ensemble
  accuracy from a run's `ensemble.json` (Table XI style).

`python -m lbsgd.plots RUN_DIR [--out DIR]` writes a run's figures as PNG files
(curves.png, schedule.png and, for a collapsed ensemble, ensemble.png).
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from lbsgd.run.rundir import RunDir


def _plt():
    import matplotlib
    if not os.environ.get("MPLBACKEND") and matplotlib.get_backend().lower() not in (
            "module://matplotlib_inline.backend_inline", "inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def schedule_values(cfg, points_per_epoch: int = 20, steps_per_epoch: int | None = None):
    """(epochs, lr, weight decay per point, plan) of a config's schedule.

    Epochs are fractional (points_per_epoch per epoch); weight decay follows
    the per-epoch plan (lbsgd.recipe.phases.build_plan).
    """
    from lbsgd import data
    from lbsgd.recipe import phases as recipe
    from lbsgd.recipe import schedules

    spe = steps_per_epoch or data.steps_per_epoch(data.num_train_examples(cfg.data),
                                                  cfg.batch_size)
    plan = recipe.build_plan(cfg)
    epochs = np.arange(cfg.epochs * points_per_epoch + 1) / points_per_epoch
    if cfg.adaptive.enabled:  # the controller sets the LR at run time: show mu0
        lr0 = schedules.linear_scaling(cfg.optimizer.base_lr, cfg.batch_size,
                                       cfg.optimizer.reference_batch, cfg.optimizer.max_lr)
        lr = np.full(epochs.shape, lr0)
    else:
        sched = schedules.build_schedule(cfg.optimizer, cfg.schedule, cfg.batch_size, spe,
                                         cfg.epochs)
        import keras
        lr = keras.ops.convert_to_numpy(sched(np.round(epochs * spe).astype("int64")))
    idx = np.minimum(np.floor(epochs).astype(int), cfg.epochs - 1)
    wd = np.array([plan[i].weight_decay for i in idx])
    return epochs, np.asarray(lr, np.float64), wd, plan


def schedule_timeline(cfg, ax=None, points_per_epoch: int = 20,
                      steps_per_epoch: int | None = None, title: str | None = None):
    """Draws a config's LR (left axis), weight decay (right axis), collapse phases
    (shaded: augmentation off) and snapshot epochs (dotted). Returns the figure."""
    plt = _plt()
    epochs, lr, wd, plan = schedule_values(cfg, points_per_epoch, steps_per_epoch)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(epochs, lr, color="tab:blue", label="learning rate", drawstyle="steps-post")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate", color="tab:blue")
    for p in plan:
        if not p.augment:
            ax.axvspan(p.epoch, p.epoch + 1, color="tab:orange", alpha=0.12, lw=0)
        if p.snapshot:
            ax.axvline(p.epoch + 1, color="k", ls=":", lw=0.8)
    ax2 = ax.twinx()
    ax2.step(epochs, wd, where="post", color="tab:red", lw=1.2, label="weight decay")
    ax2.set_ylabel("weight decay", color="tab:red")
    ax2.set_ylim(0, max(wd.max() * 1.3, 1e-12))
    snaps = [p.epoch + 1 for p in plan if p.snapshot]
    ax.set_title(title or f"{cfg.name}: batch {cfg.batch_size}, {cfg.epochs} epochs"
                 + (f"; snapshots at {snaps}" if snaps else ""), fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def read_history(run_dir: str) -> list[dict]:
    """history.csv rows, numbers as floats (empty cells dropped)."""
    with open(RunDir(run_dir).history) as f:
        rows = []
        for r in csv.DictReader(f):
            row = {}
            for k, v in r.items():
                if v == "":
                    continue
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
            rows.append(row)
    return rows


def run_title(run_dir, details: bool = True) -> str:
    """"<config name>: batch B, P ranks" from a run's config.json and summary.json (else the
    directory's name); with details=False the config name only."""
    run_dir = str(run_dir)
    try:
        with open(RunDir(run_dir).config) as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return os.path.basename(os.path.normpath(run_dir))
    if not details:
        return cfg.get("name", "run")
    title = f"{cfg.get('name', 'run')}: batch {cfg.get('batch_size')}"
    if cfg.get("adaptive", {}).get("enabled"):
        title += f"-{cfg['adaptive'].get('max_batch')} adaptive"
    try:
        with open(RunDir(run_dir).summary) as f:
            ranks = json.load(f)["num_ranks"]
        title += f", {ranks} rank{'s' if ranks != 1 else ''}"
    except (OSError, ValueError, KeyError):
        pass
    return title


def _edges(epochs) -> list[float]:
    """Epoch boundaries around per-epoch values logged at epochs 1..N: [0, 1, ..., N]."""
    return [epochs[0] - 1] + list(epochs)


def _schedule_curve(run_dir: str, rows: list[dict]):
    """(epochs, LR) of a scheduled (non-adaptive) run's schedule, step by step, up to its last
    logged epoch; None when the run has no readable config or the controller set the LR."""
    from lbsgd import config as config_lib
    try:
        cfg = config_lib.load_config(RunDir(run_dir).config)
    except config_lib.ConfigError:   # no (readable) config: the logged values only
        return None
    steps = {r.get("steps") for r in rows}
    if cfg.adaptive.enabled or len(steps) != 1 or None in steps:
        return None
    spe = int(steps.pop())
    epochs, lr, _, _ = schedule_values(cfg, points_per_epoch=min(spe, 50), steps_per_epoch=spe)
    keep = epochs <= rows[-1]["epoch"]
    return epochs[keep], lr[keep]


# Logged values that hold for a whole epoch (or change at steps inside it): drawn as steps.
STEP_KEYS = ("learning_rate", "batch_size")


def _draw_key(ax, key, epochs, values, lr_curve, color=None, label=None):
    label = label or key
    if key == "learning_rate" and lr_curve is not None:
        ax.plot(*lr_curve, drawstyle="steps-post", color=color, label=label)
        ax.plot(epochs, values, ls="", marker=".", color=ax.lines[-1].get_color())
    elif key in STEP_KEYS:
        ax.stairs(values, _edges(epochs), baseline=None, label=label, lw=1.5,
                  color=color or f"C{len(ax.lines) + len(ax.patches)}")
    else:
        ax.plot(epochs, values, marker=".", color=color, label=label)


def run_curves(run_dir, fig=None, title: str | None = None):
    """A run's curves: training/validation loss, validation metric, LR, batch size and
    theta (the panels the history has), with phase changes and batch growths marked
    (dotted, at the epoch boundary where they happen)."""
    plt = _plt()
    run_dir = str(run_dir)
    rows = read_history(run_dir)
    if not rows:
        raise ValueError(f"Argument `run_dir` has an empty history.csv. Received: {run_dir!r}")
    epochs = [r["epoch"] for r in rows]
    metric = "val_psnr" if "val_psnr" in rows[0] else "val_accuracy"
    panels = [("loss", ["loss", "val_loss"]), (metric, [metric]),
              ("learning rate", ["learning_rate"]), ("batch size", ["batch_size"]),
              ("theta", ["theta"])]
    panels = [(t, [k for k in keys if any(k in r for r in rows)]) for t, keys in panels]
    if len({r.get("batch_size") for r in rows}) == 1:
        panels = [p for p in panels if p[0] != "batch size"]  # constant: nothing to show
    panels = [(t, keys) for t, keys in panels if keys]
    if fig is None:
        fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.9 * len(panels)), sharex=True)
    else:
        axes = fig.subplots(len(panels), 1, sharex=True)
    axes = np.atleast_1d(axes)
    changes = [rows[i]["epoch"] - 1 for i in range(1, len(rows))
               if rows[i].get("phase") != rows[i - 1].get("phase")
               or rows[i].get("batch_size") != rows[i - 1].get("batch_size")]
    lr_curve = _schedule_curve(run_dir, rows)
    for ax, (panel, keys) in zip(axes, panels):
        for k in keys:
            _draw_key(ax, k, epochs, [r.get(k, np.nan) for r in rows], lr_curve)
        for c in changes:
            ax.axvline(c, color="gray", ls=":", lw=0.8)
        ax.set_ylabel(panel, fontsize=8)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    axes[-1].set_xlabel("epoch")
    note = " (dotted: phase change or batch growth)" if changes else ""
    axes[0].set_title(f"{title or run_title(run_dir)}{note}", fontsize=9)
    fig.tight_layout()
    return fig


def compare_runs(run_dirs, labels=None, keys=("loss", "val_accuracy", "learning_rate",
                                              "batch_size"), title: str | None = None):
    """Several runs' curves on shared axes, one panel per key the runs logged (the LR and
    batch size as steps, a scheduled run's LR as its schedule). Returns the figure."""
    plt = _plt()
    run_dirs = [str(r) for r in run_dirs]
    labels = list(labels) if labels is not None else [run_title(r) for r in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"Argument `labels` must name each of the {len(run_dirs)} runs. "
                         f"Received: labels={labels}")
    histories = [read_history(r) for r in run_dirs]
    if "val_psnr" in histories[0][0] and "val_accuracy" in keys:
        keys = tuple("val_psnr" if k == "val_accuracy" else k for k in keys)
    keys = [k for k in keys if any(k in row for h in histories for row in h)]
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 1.9 * len(keys)), sharex=True)
    axes = np.atleast_1d(axes)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (run, rows, label) in enumerate(zip(run_dirs, histories, labels)):
        epochs = [r["epoch"] for r in rows]
        lr_curve = _schedule_curve(run, rows)
        for ax, k in zip(axes, keys):
            _draw_key(ax, k, epochs, [r.get(k, np.nan) for r in rows], lr_curve,
                      color=colors[i % len(colors)], label=label)
            ax.set_ylabel(k.replace("_", " "), fontsize=8)
    axes[0].legend(fontsize=7)
    axes[-1].set_xlabel("epoch")
    axes[0].set_title(title or "comparison of " + ", ".join(labels), fontsize=9)
    fig.tight_layout()
    return fig


def ensemble_table(run_dir: str) -> str:
    """Table XI-style text of a run's ensemble.json."""
    from lbsgd.recipe import ensemble
    with open(os.path.join(run_dir, ensemble.ENSEMBLE_NAME)) as f:
        return ensemble.format_table(json.load(f))


def ensemble_plot(run_dir: str, ax=None, title: str | None = None):
    """Top-1 of each snapshot (by epoch) and of their softmax-averaged ensemble."""
    from lbsgd.recipe import ensemble
    plt = _plt()
    with open(os.path.join(run_dir, ensemble.ENSEMBLE_NAME)) as f:
        result = json.load(f)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    names = [f"epoch {r['epoch']}" for r in result["snapshots"]] + ["ensemble"]
    top1 = [100 * r["top1"] for r in result["snapshots"]] + [100 * result["ensemble"]["top1"]]
    colors = ["tab:blue"] * len(result["snapshots"]) + ["tab:green"]
    ax.bar(names, top1, color=colors)
    lo, hi = min(top1), max(top1)
    bottom = max(0.0, lo - 2 * (hi - lo) - 0.5)
    ax.set_ylim(bottom, hi + 0.15 * (hi - bottom))   # room for the labels below the title
    for i, v in enumerate(top1):
        ax.annotate(f"{v:.2f}", (i, v), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("top-1 %")
    ax.set_title(f"{title or run_title(run_dir, details=False)}: snapshots and their "
                 "softmax average", fontsize=9)
    ax.figure.tight_layout()
    return ax.figure
