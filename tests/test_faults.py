"""Faults under real `horovodrun -np 2` jobs: divergence, a stalled rank, signals to the launcher.

Each test runs the job a user or a cluster would break, and asserts the exit
code, the seconds it took to end, what the message names and what is left in
the run directory.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import LAUNCH, ROOT, _alive, horovodrun, job_pids, kill_session, launch_env
from lbsgd import checkpoint as ckpt
from lbsgd import faults

TRAIN = ("-m", "lbsgd.train", "--config", "configs/digits_resnet.py", "--model.name=resnet8",
         "--data.image_size=16")


def _start(*args, env=None):
    cmd = [LAUNCH, "-np", "2", sys.executable, *TRAIN, *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env or launch_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _epochs_done(run_dir):
    path = os.path.join(run_dir, ckpt.CHECKPOINT_NAME)
    return ckpt.read_state(path)["epochs_done"] if os.path.isfile(path) else 0


def _wait_for_epochs(proc, run_dir, epochs, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if _epochs_done(run_dir) >= epochs:
            return
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint of epoch {epochs} (exit {proc.poll()})")


def _rank_pids(launcher_pid):
    """{rank: pid} of the job's training processes (from their environment)."""
    ranks = {}
    for pid in job_pids(launcher_pid):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"lbsgd.train" in cmdline and b"OMPI_COMM_WORLD_RANK" in env:
            ranks[int(env[b"OMPI_COMM_WORLD_RANK"])] = pid
    return ranks


def test_divergence_stops_every_rank_with_a_clear_error(tmp_path):
    run_dir = tmp_path / "run"
    t0 = time.time()
    proc = horovodrun(2, *TRAIN, "--optimizer.base_lr=1e6", "--epochs=3",
                      "--schedule.warmup_epochs=0", f"--run_dir={run_dir}", check=False)
    seconds = time.time() - t0
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "lbsgd.train: error:" in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "training diverged at epoch 1, step " in errors[0]
    assert "learning rate 2.5e+05" in errors[0]          # 1e6 x 64 / 256, no warmup
    assert "no checkpoint was written" in errors[0]
    assert not (run_dir / ckpt.CHECKPOINT_NAME).exists()  # nothing non-finite saved
    summary = json.loads((run_dir / "summary.json").read_text())   # strict JSON
    assert summary["status"] == "diverged"
    assert summary["diverged"]["epoch"] == 1 and summary["diverged"]["step"] >= 1
    assert seconds < 120


def test_divergence_after_a_good_epoch_keeps_its_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    horovodrun(2, *TRAIN, "--epochs=1", "--schedule.warmup_epochs=0", f"--run_dir={run_dir}")
    with np.load(run_dir / ckpt.CHECKPOINT_NAME) as z:
        before = {k: z[k] for k in z.files}
    proc = horovodrun(2, *TRAIN, "--resume", "--epochs=3", "--optimizer.base_lr=1e6",
                      "--allow_change=epochs,optimizer.base_lr", f"--run_dir={run_dir}",
                      check=False)
    assert proc.returncode != 0
    assert "training diverged at epoch 2" in proc.stderr
    assert f"checkpoint of epoch 1 is kept in {run_dir}" in proc.stderr
    with np.load(run_dir / ckpt.CHECKPOINT_NAME) as z:
        assert z.files == list(before)
        for k in z.files:
            np.testing.assert_array_equal(z[k], before[k])
            assert k == "state" or np.all(np.isfinite(z[k]))
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("stopped_rank", [1, 0])
def test_a_stopped_rank_ends_the_job_in_bounded_time(tmp_path, stopped_rank):
    run_dir = str(tmp_path / "run")
    env = launch_env()
    env["LBSGD_STALL_TIMEOUT"] = "15"
    proc = _start("--epochs=40", f"--run_dir={run_dir}", env=env)
    try:
        _wait_for_epochs(proc, run_dir, 1)
        pid = _rank_pids(proc.pid)[stopped_rank]
        os.kill(pid, signal.SIGSTOP)
        t0 = time.time()
        out, err = proc.communicate(timeout=120)
        seconds = time.time() - t0
    finally:
        if proc.poll() is None:
            kill_session(proc.pid)
    assert proc.returncode != 0
    assert seconds < 60, f"the job took {seconds:.0f} s to end"
    assert f"rank {stopped_rank} (pid {pid}, stopped)" in err, err[-3000:]
    assert "made no progress" in err
    assert not _alive(pid)
    assert _epochs_done(run_dir) >= 1                    # the last checkpoint is intact


def test_sigterm_to_the_launcher_stops_every_rank_and_resume_continues(tmp_path):
    run_dir = str(tmp_path / "run")
    proc = _start("--epochs=6", f"--run_dir={run_dir}")
    try:
        _wait_for_epochs(proc, run_dir, 2)
        job = job_pids(proc.pid)
        ranks = _rank_pids(proc.pid)
        assert sorted(ranks) == [0, 1]
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        seconds = time.time() - t0
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(p) for p in job):
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            kill_session(proc.pid)
    assert proc.returncode == 143
    assert seconds < 30
    assert not [p for p in job if _alive(p)], "processes outlived the launcher"
    done = _epochs_done(run_dir)
    assert 2 <= done < 6
    horovodrun(2, *TRAIN, "--resume", f"--run_dir={run_dir}")
    with open(os.path.join(run_dir, "history.csv")) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]
    assert json.load(open(os.path.join(run_dir, "summary.json")))["status"] == "completed"


def test_stall_timeout_knob_is_validated(monkeypatch):
    monkeypatch.setenv("LBSGD_STALL_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="LBSGD_STALL_TIMEOUT='soon'"):
        faults.stall_timeout()
    monkeypatch.setenv("LBSGD_STALL_TIMEOUT", "30")
    assert faults.stall_timeout() == 30.0
