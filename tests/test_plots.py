"""lbsgd.plots / python -m lbsgd.plots: schedule timelines from configs, run curves from files."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from lbsgd import config
from lbsgd.report import plots
from lbsgd.run.callbacks import history_csv


def load(name):
    return config.load_config(os.path.join(ROOT, "configs", f"{name}.py"))


def test_figure4_schedule_values_from_the_config():
    epochs, lr, wd, plan = plots.schedule_values(load("imagenet_table11_ensemble_b4096_e120"))
    at = lambda e: lr[int(round(e * 20))]  # noqa: E731
    peak = 1.6
    assert at(45) == pytest.approx(0.22 * peak, rel=1e-3)
    for end in (60, 75, 90, 105, 120):
        assert at(end) == pytest.approx(at(end - 12) / 4, rel=1e-3)
    # each decay's last 3 epochs collapse (57-60 here): weight decay doubled there only
    assert wd[int(58 * 20)] == pytest.approx(1e-4) and wd[int(50 * 20)] == pytest.approx(5e-5)
    assert wd[int(46 * 20)] == pytest.approx(5e-5)
    assert [p.epoch + 1 for p in plan if p.snapshot] == [45, 60, 75, 90, 105, 120]


def test_figure3_weight_decay_steps_and_collapse():
    epochs, lr, wd, _ = plots.schedule_values(load("imagenet_table9_b65536_e107"))
    steps = sorted(set(np.round(wd, 12)))
    assert steps == pytest.approx([5e-5, 6.25e-5, 7.5e-5, 8.75e-5, 1e-4])
    assert lr.max() == pytest.approx(6.4, rel=1e-3) and lr[-1] == pytest.approx(0.0, abs=1e-6)


def test_run_curves_and_plot_cli(tmp_path):
    cfg = load("digits_recipe")
    rows = [{"epoch": e, "loss": 2.0 / e, "val_loss": 2.2 / e, "val_accuracy": 1 - 1 / (e + 1),
             "learning_rate": 0.1 / e, "batch_size": 64 if e < 4 else 128, "theta": 0.1 * e,
             "phase": "main" if e < 3 else "collapse"} for e in range(1, 7)]
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text(history_csv(rows))
    (run / "config.json").write_text(cfg.to_json())
    fig = plots.run_curves(str(run))
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "val_accuracy", "learning rate",
                                                   "batch size", "theta"]
    marked = {round(line.get_xdata()[0], 1) for line in fig.axes[0].lines
              if line.get_linestyle() == ":"}
    assert marked == {2.0, 3.0}      # at the boundaries: phase change after 2, batch growth after 3
    out = subprocess.run([sys.executable, "-m", "lbsgd.plots", str(run)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("curves.png", "schedule.png"):
        assert os.path.getsize(run / name) > 5000
    bad = subprocess.run([sys.executable, "-m", "lbsgd.plots", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "run_dir=" in bad.stderr


def _fake_run(tmp_path, rows, name="digits_recipe"):
    run = tmp_path / "lbsgd_tmp_x1y2"       # a temporary name that must not become the title
    run.mkdir()
    (run / "history.csv").write_text(history_csv(rows))
    (run / "config.json").write_text(load(name).to_json())
    (run / "summary.json").write_text('{"num_ranks": 2}')
    return run


def test_rates_and_batches_are_steps_and_titles_name_the_run(tmp_path):
    rows = [{"epoch": e, "loss": 1.0 / e, "val_accuracy": 0.5, "learning_rate": 0.1 / e,
             "batch_size": 64 if e < 3 else 128, "phase": "main"} for e in range(1, 5)]
    fig = plots.run_curves(str(_fake_run(tmp_path, rows)))
    title = fig.axes[0].get_title()
    assert title.startswith("digits_recipe: batch 64, 2 ranks") and "lbsgd_tmp" not in title
    for ax, values in ((fig.axes[2], [0.1 / e for e in range(1, 5)]),
                       (fig.axes[3], [64, 64, 128, 128])):
        steps = ax.patches[0].get_data()                    # one value per epoch, as stairs
        assert list(steps.edges) == [0, 1, 2, 3, 4]
        assert list(steps.values) == pytest.approx(values)
    (tmp_path / "b").mkdir()
    steady = [dict(r, batch_size=64, steps=22) for r in rows]
    fig = plots.run_curves(str(_fake_run(tmp_path / "b", steady)))
    schedule = fig.axes[2].lines[0]                          # a scheduled run: its LR per step
    assert schedule.get_drawstyle() == "steps-post"
    assert schedule.get_xdata()[0] == 0 and schedule.get_xdata()[-1] == 4


def test_ensemble_bar_labels_stay_below_the_title(tmp_path):
    run = _fake_run(tmp_path, [{"epoch": 1, "loss": 1.0, "val_accuracy": 0.9}])
    snaps = [{"name": f"epoch_{e:04d}.npz", "epoch": e, "examples": 359, "loss": 0.3,
              "top1": t, "top5": 1.0} for e, t in ((4, 0.5125), (7, 0.844), (10, 0.922))]
    (run / "ensemble.json").write_text(json.dumps(
        {"snapshots": snaps, "ensemble": {"name": "ensemble", "examples": 359, "loss": 0.6,
                                          "top1": 0.8969, "top5": 0.99, "members": []}}))
    fig = plots.ensemble_plot(str(run))
    ax = fig.axes[0]
    assert ax.get_title().startswith("digits_recipe: snapshots")
    fig.canvas.draw()
    title_box = ax.title.get_window_extent()
    for label in ax.texts:
        assert label.get_window_extent().y1 < title_box.y0, label.get_text()
        assert label.get_window_extent().y1 < ax.get_window_extent().y1
