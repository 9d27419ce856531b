"""Scaling efficiency across rank counts of one config (lbsgd.efficiency)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from lbsgd import efficiency


def write_run(path, name, ranks, ips, lr=0.1):
    os.makedirs(path)
    json.dump({"name": name, "optimizer": {"base_lr": lr}},
              open(os.path.join(path, "config.json"), "w"))
    json.dump({"num_ranks": ranks, "images_per_second": ips, "total_seconds": 1000 / ips,
               "time_to_accuracy": {}}, open(os.path.join(path, "summary.json"), "w"))


def test_efficiency_within_a_config_group(tmp_path):
    write_run(tmp_path / "a1", "a", 1, 100.0)
    write_run(tmp_path / "a2", "a_np2", 2, 180.0)
    write_run(tmp_path / "a4", "a_np4", 4, 320.0)
    write_run(tmp_path / "b2", "b", 2, 50.0, lr=0.2)     # another config: its own base
    rows = efficiency.scaling_table([efficiency.load_run(str(tmp_path / d))
                                 for d in ("a4", "b2", "a1", "a2")])
    by = {os.path.basename(r["run_dir"]): r for r in rows}
    assert by["a2"]["speedup"] == pytest.approx(1.8) and by["a2"]["efficiency"] == pytest.approx(0.9)
    assert by["a4"]["efficiency"] == pytest.approx(0.8)
    assert by["b2"]["efficiency"] == pytest.approx(1.0)
    out = subprocess.run([sys.executable, "-m", "lbsgd.efficiency", str(tmp_path / "a1"),
                          str(tmp_path / "a4")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "80.0%" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "lbsgd.efficiency", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "run_dir=" in bad.stderr
