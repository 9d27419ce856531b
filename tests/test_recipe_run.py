"""The recipe end to end under `horovodrun -np 2`: phases, snapshots, ensemble, and a run
SIGKILLed mid-collapse that resumes LR, weight decay, augmentation and snapshots exactly."""

import csv
import json
import os
import shutil

import numpy as np
import pytest

from conftest import horovodrun, kill_after_checkpoint, run_python
from lbsgd import checkpoint as ckpt

# configs/digits_recipe.py shrunk: ResNet-8 on 16x16 digits; the first power-2 decay over
# epochs 3-4 collapses in epoch 4 (snapshot 4), cycles of 1 rewarmup + 2 decay epochs, the
# last collapsing, ending at 7 and 10.
RECIPE = ("-m", "lbsgd.train", "--config", "configs/digits_recipe.py", "--epochs=10",
          "--model.name=resnet8", "--data.image_size=16",
          "--schedule.ensemble.linear_end_epoch=2", "--schedule.ensemble.linear_horizon_epochs=6",
          "--schedule.ensemble.power2_end_epoch=4", "--schedule.ensemble.rewarmup_epochs=1",
          "--schedule.ensemble.decay_epochs=2", "--schedule.ensemble.num_cycles=2")
PHASES = ["warmup", "main", "decay", "collapse", "rewarmup", "decay", "collapse",
          "rewarmup", "decay", "collapse"]


def rows(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def snapshot_index(run_dir):
    with open(os.path.join(run_dir, "snapshots", "index.json")) as f:
        return json.load(f)["snapshots"]


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("recipe"))
    proc = horovodrun(2, *RECIPE, f"--run_dir={run_dir}")
    return run_dir, proc.stdout


def test_phases_logged_every_epoch(recipe_run):
    run_dir, _ = recipe_run
    h = rows(run_dir)
    assert [r["phase"] for r in h] == PHASES
    assert [int(r["cycle"]) for r in h] == [-1, -1, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [float(r["weight_decay"]) for r in h] == pytest.approx(
        [1e-4 if p == "collapse" else 5e-5 for p in PHASES], rel=1e-6)  # float32 variable
    assert [int(float(r["augment"])) for r in h] == [int(p != "collapse") for p in PHASES]
    lrs = [float(r["learning_rate"]) for r in h]   # LR after each epoch
    assert lrs[4] == pytest.approx(3 * lrs[3], rel=1e-4)     # x3 re-warmup
    assert lrs[6] == pytest.approx(lrs[4] / 4, rel=1e-4)     # collapse divides the top by 4


def test_three_snapshots_and_ensemble_reported(recipe_run):
    run_dir, stdout = recipe_run
    index = snapshot_index(run_dir)
    assert [s["epoch"] for s in index] == [4, 7, 10]
    assert sorted(os.listdir(os.path.join(run_dir, "snapshots"))) == [
        "epoch_0004.npz", "epoch_0007.npz", "epoch_0010.npz", "index.json"]
    h = rows(run_dir)
    result = json.load(open(os.path.join(run_dir, "ensemble.json")))
    for snap, row in zip(result["snapshots"], index):
        # the evaluator reproduces the val accuracy logged when the snapshot was taken
        assert snap["top1"] == pytest.approx(row["val_accuracy"], abs=1e-6)
        assert snap["top1"] == pytest.approx(float(h[row["epoch"] - 1]["val_accuracy"]),
                                             abs=1e-6)
        assert snap["examples"] == 359
    assert 0.0 < result["ensemble"]["top1"] <= 1.0
    assert len(result["ensemble"]["members"]) == 3
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["snapshots"] == [4, 7, 10]
    assert summary["ensemble"]["top1"] == pytest.approx(result["ensemble"]["top1"])
    assert "Collapsed ensemble" in stdout


def test_ensemble_cli_selects_snapshots(recipe_run, tmp_path):
    run_dir, _ = recipe_run
    out = str(tmp_path / "two.json")
    proc = horovodrun(2, "-m", "lbsgd.ensemble", f"--run_dir={run_dir}", "--snapshots=7,10",
                      f"--output={out}")
    result = json.load(open(out))
    assert [r["epoch"] for r in result["snapshots"]] == [7, 10]
    full = json.load(open(os.path.join(run_dir, "ensemble.json")))
    assert result["snapshots"][0]["top1"] == pytest.approx(full["snapshots"][1]["top1"])
    assert "ensemble" in proc.stdout
    bad = horovodrun(1, "-m", "lbsgd.ensemble", f"--run_dir={run_dir}", "--snapshots=5",
                     check=False)
    assert bad.returncode == 2 and "snapshots='5'" in bad.stderr


def test_ensemble_cli_writes_only_when_asked(recipe_run, tmp_path):
    run_dir = str(tmp_path / "copy")
    shutil.copytree(recipe_run[0], run_dir)
    own = os.path.join(run_dir, "ensemble.json")
    before, mtime = open(own).read(), os.stat(own).st_mtime_ns

    def ensemble_cli(*args):
        proc = run_python("-m", "lbsgd.ensemble", f"--run_dir={run_dir}", "--snapshots=7,10",
                          *args, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    out = ensemble_cli()
    assert "epoch_0010.npz" in out and "not saved" in out
    assert open(own).read() == before and os.stat(own).st_mtime_ns == mtime
    out = ensemble_cli("--overwrite")
    assert f"wrote {own}" in out
    assert [r["epoch"] for r in json.load(open(own))["snapshots"]] == [7, 10]


def test_killed_mid_collapse_resumes_exactly(recipe_run, tmp_path):
    run_dir, _ = recipe_run
    killed = str(tmp_path / "killed")
    done = kill_after_checkpoint((*RECIPE, f"--run_dir={killed}"), killed, 6)
    assert 6 <= done < 10, f"killed after {done} epochs"     # inside cycle 1's collapse or later
    horovodrun(2, "-m", "lbsgd.train", f"--run_dir={killed}", "--resume")
    a, b = rows(run_dir), rows(killed)
    assert [r["epoch"] for r in b] == [str(e) for e in range(1, 11)]
    for ra, rb in zip(a, b):
        assert (rb["phase"], rb["cycle"], rb["augment"]) == (ra["phase"], ra["cycle"],
                                                             ra["augment"])
        for column in ("learning_rate", "weight_decay", "loss", "val_accuracy"):
            assert float(rb[column]) == pytest.approx(float(ra[column]), rel=1e-4, abs=1e-6)
    ia, ib = snapshot_index(run_dir), snapshot_index(killed)
    assert [s["epoch"] for s in ib] == [4, 7, 10]
    for sa, sb in zip(ia, ib):
        assert sb["learning_rate"] == pytest.approx(sa["learning_rate"], rel=1e-5)
        assert sb["val_accuracy"] == pytest.approx(sa["val_accuracy"], abs=1e-6)
    with np.load(os.path.join(run_dir, ckpt.CHECKPOINT_NAME)) as za, \
            np.load(os.path.join(killed, ckpt.CHECKPOINT_NAME)) as zb:
        for key in za.files:
            if key != "state":
                np.testing.assert_allclose(zb[key], za[key], rtol=1e-5, atol=1e-6, err_msg=key)
