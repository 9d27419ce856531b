"""The train CLI under `horovodrun -np 2`: the default job, SIGKILL + exact resume."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import horovodrun, kill_after_checkpoint
from lbsgd.run import checkpoint as ckpt

TRAIN = ("-m", "lbsgd.train", "--config", "configs/digits_resnet.py")
SHORT = ("--epochs=4", "--schedule.warmup_epochs=1")


def history_epochs(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def checkpoint_arrays(run_dir):
    with np.load(os.path.join(run_dir, ckpt.CHECKPOINT_NAME)) as z:
        return {k: z[k] for k in z.files if k != "state"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("uninterrupted"))
    horovodrun(2, *TRAIN, *SHORT, f"--run_dir={run_dir}")
    return run_dir


@pytest.mark.smoke
def test_run_directory_files(uninterrupted):
    config = json.load(open(os.path.join(uninterrupted, "config.json")))
    assert config["epochs"] == 4 and config["schedule"]["warmup_epochs"] == 1.0
    with open(os.path.join(uninterrupted, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    for column in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                   "weight_decay", "augment", "batch_size", "phase", "cycle", "epoch_seconds",
                   "images_per_second"):
        assert all(r[column] != "" for r in rows), column
    assert {int(r["batch_size"]) for r in rows} == {64}
    assert [r["phase"] for r in rows] == ["warmup", "main", "main", "main"]
    assert float(rows[-1]["learning_rate"]) == pytest.approx(0.0, abs=1e-7)  # poly to 0
    summary = json.load(open(os.path.join(uninterrupted, "summary.json")))
    assert summary["num_ranks"] == 2 and summary["epochs"] == 4
    assert summary["final"]["val_accuracy"] == pytest.approx(float(rows[-1]["val_accuracy"]))
    assert set(summary["time_to_accuracy"]) == {"0.9", "0.95", "0.97"}
    assert summary["images_per_second"] > 0
    assert os.path.isfile(os.path.join(uninterrupted, "model.keras"))
    assert not os.path.exists(os.path.join(uninterrupted, "ensemble.keras"))  # one snapshot
    assert sorted(os.listdir(os.path.join(uninterrupted, "tensorboard"))) == ["train",
                                                                              "validation"]


def test_refuses_to_overwrite_a_run(uninterrupted):
    proc = horovodrun(2, *TRAIN, *SHORT, f"--run_dir={uninterrupted}", check=False)
    assert proc.returncode != 0
    assert "--resume" in proc.stdout + proc.stderr


@pytest.mark.smoke
def test_sigkill_then_resume_matches_uninterrupted(uninterrupted, tmp_path):
    run_dir = str(tmp_path / "killed")
    done = kill_after_checkpoint((*TRAIN, *SHORT, f"--run_dir={run_dir}",
                                  "--tensorboard=false"), run_dir, 2)
    assert 2 <= done < 4, f"killed after {done} epochs"
    assert not os.path.exists(os.path.join(run_dir, "summary.json"))

    horovodrun(2, *TRAIN, f"--run_dir={run_dir}", "--resume", "--tensorboard=false")
    assert history_epochs(run_dir) == [1, 2, 3, 4]
    assert not os.path.exists(os.path.join(run_dir, "tensorboard"))
    a, b = checkpoint_arrays(uninterrupted), checkpoint_arrays(run_dir)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)
    ha = list(csv.DictReader(open(os.path.join(uninterrupted, "history.csv"))))
    hb = list(csv.DictReader(open(os.path.join(run_dir, "history.csv"))))
    for ra, rb in zip(ha, hb):
        for column in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            assert float(rb[column]) == pytest.approx(float(ra[column]), rel=1e-4, abs=1e-6)
