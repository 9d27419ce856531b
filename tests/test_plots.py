"""lbsgd.plots / python -m lbsgd.plot: schedule timelines from configs, run curves from files."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from lbsgd import config, plots
from lbsgd.callbacks import history_csv


def load(name):
    return config.load_config(os.path.join(ROOT, "configs", f"{name}.py"))


def test_figure4_schedule_values_from_the_config():
    epochs, lr, wd, plan = plots.schedule_values(load("imagenet_table11_ensemble_b4096_e120"))
    at = lambda e: lr[int(round(e * 20))]  # noqa: E731
    peak = 1.6
    assert at(45) == pytest.approx(0.22 * peak, rel=1e-3)
    for end in (60, 75, 90, 105, 120):
        assert at(end) == pytest.approx(at(end - 12) / 4, rel=1e-3)
    assert wd[int(50 * 20)] == pytest.approx(1e-4) and wd[int(46 * 20)] == pytest.approx(5e-5)
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
    assert marked == {2.5, 3.5}                 # phase change after 2, batch growth after 3
    out = subprocess.run([sys.executable, "-m", "lbsgd.plot", str(run)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("curves.png", "schedule.png"):
        assert os.path.getsize(run / name) > 5000
    bad = subprocess.run([sys.executable, "-m", "lbsgd.plot", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "run_dir=" in bad.stderr
