"""Batch growth under `horovodrun -np 2`: the batch really grows (fewer steps and fewer
allreduce calls per epoch), survives SIGKILL + resume, and the probe runs on Phantom."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import horovodrun, kill_after_checkpoint
from lbsgd.run import checkpoint as ckpt

# configs/phantom_adaptive.py shrunk: 256 16x16 phantoms, a 2-block EDSR, K fixed at 2.
GROW = ("-m", "lbsgd.train", "--config", "configs/phantom_adaptive.py", "--epochs=6",
        "--batch_size=16", "--adaptive.max_batch=64", "--adaptive.k_epochs=2",
        "--data.num_train=256", "--data.image_size=16", "--model.edsr_blocks=2",
        "--model.edsr_filters=16", "--stop.patience=0")


def rows(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("grow"))
    horovodrun(2, *GROW, f"--run_dir={run_dir}")
    return run_dir


def test_batch_grows_steps_and_allreduce_calls_fall(grown):
    h = rows(grown)
    assert [int(r["batch_size"]) for r in h] == [16, 16, 32, 32, 64, 64]
    assert [int(r["steps"]) for r in h] == [16, 16, 8, 8, 4, 4]
    # Horovod calls the distributed optimizer issued in each epoch (one grouped
    # allreduce per optimizer step), counted inside the compiled train step.
    assert [int(r["collective_calls"]) for r in h] == [16, 16, 8, 8, 4, 4]
    lrs = [float(r["learning_rate"]) for r in h]
    assert lrs == pytest.approx([1e-4, 1e-4, 2e-4, 2e-4, 4e-4, 4e-4])   # 1e-4 per 16, co-scaled
    assert all(np.isfinite(float(r["theta"])) for r in h)
    summary = json.load(open(os.path.join(grown, "summary.json")))
    assert summary["optimizer_steps"] == 56 and summary["adaptive"]["final_batch"] == 64
    assert [e["batch"] for e in summary["adaptive"]["events"]] == [32, 64]
    assert summary["num_ranks"] == 2


def test_killed_mid_growth_resumes_with_same_batch_and_k(grown, tmp_path):
    run_dir = str(tmp_path / "killed")
    done = kill_after_checkpoint((*GROW, f"--run_dir={run_dir}"), run_dir, 3)
    assert 3 <= done < 6, f"killed after {done} epochs"
    state = ckpt.read_state(os.path.join(run_dir, ckpt.CHECKPOINT_NAME))
    assert state.adaptive_batch["growth"]["k"] == 2
    horovodrun(2, "-m", "lbsgd.train", f"--run_dir={run_dir}", "--resume")
    a, b = rows(grown), rows(run_dir)
    assert [r["epoch"] for r in b] == [str(e) for e in range(1, 7)]
    for ra, rb in zip(a, b):
        for column in ("batch_size", "steps", "K", "collective_calls"):
            assert rb[column] == ra[column], column
        for column in ("learning_rate", "theta", "loss", "val_psnr"):
            assert float(rb[column]) == pytest.approx(float(ra[column]), rel=1e-4), column


def test_probe_prints_norms_and_a_start_batch(tmp_path):
    out = str(tmp_path / "probe.json")
    proc = horovodrun(2, "-m", "lbsgd.probe", "--config", "configs/phantom_adaptive.py",
                      "--batches=8,32,128", "--draws=3", f"--output={out}")
    result = json.load(open(out))
    assert sorted(int(b) for b in result["norms"]) == [8, 32, 128]
    assert all(len(v) == 3 and min(v) > 0 for v in result["norms"].values())
    assert result["start_batch"] in (8, 32, 128) and result["ranks"] == 2
    assert "maximum stable batch B_s = " in proc.stdout and "mean |g|" in proc.stdout
    bad = horovodrun(1, "-m", "lbsgd.probe", "--config", "configs/phantom_adaptive.py",
                     "--batches=8,x", check=False)
    assert bad.returncode == 2 and "batches='8,x'" in bad.stderr


def test_the_probe_inside_the_run_chooses_b_s_once(tmp_path):
    """adaptive.start_batch="probe": the run probes at start-up (every rank, rank 0's initial
    weights), starts from the probe's choice with mu0 scaled to it, records it, and a resumed
    run keeps that choice without probing again."""
    run_dir = str(tmp_path / "probed")
    probed = (*GROW, "--epochs=4", "--batch_size=8", "--adaptive.start_batch=probe",
              "--adaptive.probe_batches=8,16,32", "--adaptive.probe_draws=2",
              f"--run_dir={run_dir}")
    done = kill_after_checkpoint(probed, run_dir, 2)
    assert 2 <= done < 4, f"killed after {done} epochs"
    state = ckpt.read_state(os.path.join(run_dir, ckpt.CHECKPOINT_NAME))
    start = state.adaptive_batch["start"]
    means = {int(b): v for b, v in start["mean_norm"].items()}
    assert sorted(means) == [8, 16, 32] and min(means.values()) > 0
    expected = 8
    for b in (16, 32):              # the largest batch before the first that falls short
        if means[b] < 0.9 * means[8]:
            break
        expected = b
    assert start["start_batch"] == expected and start["draws"] == 2
    before = rows(run_dir)
    proc = horovodrun(2, "-m", "lbsgd.train", f"--run_dir={run_dir}", "--resume")
    assert "start-up probe" not in proc.stdout + proc.stderr
    h = rows(run_dir)
    assert [r["epoch"] for r in h] == ["1", "2", "3", "4"]
    assert [r["batch_size"] for r in h[:len(before)]] == [r["batch_size"] for r in before]
    assert int(h[0]["batch_size"]) == expected
    assert float(h[0]["learning_rate"]) == pytest.approx(1e-4 * expected / 16)   # mu0 at B_s
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["probe"]["start_batch"] == expected
    assert summary["probe"]["mean_norm"] == start["mean_norm"]
    assert summary["adaptive"]["start_batch"] == expected


def test_workers_grow_with_the_batch_from_one_rank_to_two(grown, tmp_path):
    """adaptive.max_ranks=2 from 1 rank: at the first growth (16 -> 32, local batch 16 held)
    launch/run.sh restarts the run from its checkpoint on 2 ranks by itself; from then on it
    is the 2-fixed-rank run: the same batch, steps, LR and samples per epoch, and (EDSR has
    no BN) the same losses up to rounding. history.csv records the ranks, summary.json the
    restart and its seconds."""
    run_dir = str(tmp_path / "growing")
    proc = horovodrun(1, *GROW, "--adaptive.max_ranks=2", f"--run_dir={run_dir}",
                      hosts="localhost:2")
    assert "restarting on 2 ranks (was 1) from the checkpoint" in proc.stderr
    a, b = rows(grown), rows(run_dir)
    assert [r["ranks"] for r in b] == ["1", "1", "2", "2", "2", "2"]
    for ra, rb in zip(a, b):
        for column in ("batch_size", "steps", "K"):
            assert rb[column] == ra[column], column
        for column in ("learning_rate", "loss", "val_psnr"):
            assert float(rb[column]) == pytest.approx(float(ra[column]), rel=1e-3), column
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    restarts = summary["restarts"]
    assert restarts["count"] == 1 and restarts["each"][0]["epoch"] == 2
    assert (restarts["each"][0]["from_ranks"], restarts["each"][0]["to_ranks"]) == (1, 2)
    assert 0 < restarts["seconds"] < 300 and summary["num_ranks"] == 2
    assert summary["optimizer_steps"] == 56
    resumes = json.load(open(os.path.join(run_dir, "resumes.json")))
    assert resumes[0]["changes"]["world_size"] == {"before": 1, "after": 2}


def test_a_run_killed_at_its_growth_restarts_on_more_ranks_when_resumed(grown, tmp_path):
    """Killed once the growth epoch's checkpoint is written (before or during the restart):
    `--resume` on the 1 rank it started with restarts at once on 2 and ends as the
    2-fixed-rank run."""
    run_dir = str(tmp_path / "killed")
    done = kill_after_checkpoint((*GROW, "--adaptive.max_ranks=2", f"--run_dir={run_dir}"),
                                 run_dir, 2, np_=1, hosts="localhost:2")
    assert 2 <= done < 6, f"killed after {done} epochs"
    horovodrun(1, "-m", "lbsgd.train", f"--run_dir={run_dir}", "--resume", hosts="localhost:2")
    a, b = rows(grown), rows(run_dir)
    assert [r["epoch"] for r in b] == [str(e) for e in range(1, 7)]
    assert [r["ranks"] for r in b][2:] == ["2", "2", "2", "2"]
    for ra, rb in zip(a, b):
        for column in ("batch_size", "steps"):
            assert rb[column] == ra[column], column
        assert float(rb["learning_rate"]) == pytest.approx(float(ra["learning_rate"]))
