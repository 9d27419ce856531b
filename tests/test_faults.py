"""Faults under real `horovodrun -np 2` jobs: divergence, a stalled rank, signals to the launcher.

Each test runs the job a user or a cluster would break, and asserts the exit
code, the seconds it took to end, what the message names and what is left in
the run directory.
"""

import csv
import json
import os
import signal
import time

import numpy as np
import pytest

from conftest import (TINY_DIGITS, _alive, assert_no_rank_started, epochs_done, horovodrun,
                      job_pids, kill_session, launch_env, start_job,
                      wait_while_running)
from lbsgd.run import checkpoint as ckpt
from lbsgd.run import faults

TRAIN = TINY_DIGITS


def _start(*args, env=None):
    return start_job(2, *TRAIN, *args, env=env)


def _wait_for_epochs(proc, run_dir, epochs, timeout=300):
    wait_while_running(proc, lambda: epochs_done(run_dir) >= epochs,
                       f"a checkpoint of epoch {epochs}", timeout)


def _environ(pid) -> dict:
    """A process's environment, as bytes."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)


def _rank_pids(launcher_pid):
    """{rank: pid} of the job's training processes (from their environment)."""
    ranks = {}
    for pid in job_pids(launcher_pid):
        try:
            env = _environ(pid)
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
    import re
    step = int(re.search(r"training diverged at epoch 1, step (\d+) ", errors[0]).group(1))
    # peak 1e6 x 64 / 256, no warmup, linear decay over 3 x 22 steps; the step is 1-based
    assert f"(learning rate {2.5e5 * (1 - (step - 1) / 66):.6g})" in errors[0]
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
    assert epochs_done(run_dir) >= 1                    # the last checkpoint is intact


def test_sigterm_to_the_launcher_stops_every_rank_and_resume_continues(tmp_path):
    run_dir = str(tmp_path / "run")
    # 12 epochs: a tiny epoch takes 0.3-0.6 s and the ranks end ~1 s after the signal, so
    # the job must still have epochs to run when they do
    proc = _start("--epochs=12", f"--run_dir={run_dir}")
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
    done = epochs_done(run_dir)
    assert 2 <= done < 12                               # stopped, not finished
    horovodrun(2, *TRAIN, "--resume", f"--run_dir={run_dir}")
    with open(os.path.join(run_dir, "history.csv")) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 13))
    assert json.load(open(os.path.join(run_dir, "summary.json")))["status"] == "completed"


def test_sigkill_of_the_launcher_ends_every_rank_within_30_s(tmp_path):
    from lbsgd.run.rundir import RunDir
    run_dir = str(tmp_path / "run")
    proc = _start("--epochs=30", f"--run_dir={run_dir}")
    try:
        _wait_for_epochs(proc, run_dir, 1)
        job = job_pids(proc.pid)            # launcher, guard, horovodrun, mpirun, ranks
        ranks = _rank_pids(proc.pid)
        assert sorted(ranks) == [0, 1]
        launcher_tmp = os.path.dirname(   # the launcher's temporary directory
            _environ(ranks[0])[b"LBSGD_RELAUNCH_FILE"].decode())
        assert os.path.isdir(launcher_tmp)
        at_kill = epochs_done(run_dir)
        os.kill(proc.pid, signal.SIGKILL)   # the launcher alone: it cannot forward anything
        proc.communicate(timeout=60)
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(p) for p in job):
            time.sleep(0.2)
        left = [p for p in job if _alive(p)]
    finally:
        kill_session(proc.pid)
        for pid in job:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert proc.returncode == -signal.SIGKILL
    assert not left, f"processes outlived the launcher by 30 s: {left}"
    assert not os.path.exists(launcher_tmp), "the guard left the launcher's temporary dir"
    # the last checkpoint is whole (every array's CRC read) and consistent with itself
    from lbsgd.run.rundir import read_run_state
    state = read_run_state(os.path.join(run_dir, "checkpoint.npz"), verify=True)
    # the epochs checkpointed when the launcher died, and those finished while the ranks
    # were being ended (~1 s after the kill, against 0.3-0.6 s a tiny epoch): not all 30
    assert 1 <= at_kill <= state.epochs_done < 30
    assert [r["epoch"] for r in state.history_rows] == list(range(1, state.epochs_done + 1))
    assert RunDir(run_dir).holder() is None                 # the lock is stale, not held


def test_stall_timeout_knob_is_validated(monkeypatch):
    monkeypatch.setenv("LBSGD_STALL_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="LBSGD_STALL_TIMEOUT='soon'"):
        faults.stall_timeout()
    monkeypatch.setenv("LBSGD_STALL_TIMEOUT", "30")
    assert faults.stall_timeout() == 30.0


def _one_line(proc):
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr[-3000:])
    assert_no_rank_started(proc)      # refused before any rank started (all_ranks=True jobs)
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(short_run):
    return short_run[0]


def _snapshot(run_dir):
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


def test_second_job_into_a_live_run_dir_is_refused_naming_the_holder(tmp_path):
    run_dir = str(tmp_path / "run")
    first = _start("--epochs=1000", f"--run_dir={run_dir}")   # still running when asked; killed below
    try:
        _wait_for_epochs(first, run_dir, 1)
        config_before = open(os.path.join(run_dir, "config.json")).read()
        holder = _rank_pids(first.pid)[0]
        for extra in ((), ("--overwrite",)):
            t0 = time.time()
            second = horovodrun(2, *TRAIN, "--epochs=3", f"--run_dir={run_dir}", *extra,
                                check=False, all_ranks=True)
            line = _one_line(second)
            assert "in use by another job" in line and f"pid {holder}" in line
            assert time.time() - t0 < 30
        assert first.poll() is None                          # the first job goes on
        assert open(os.path.join(run_dir, "config.json")).read() == config_before
    finally:
        kill_session(first.pid)
        first.wait(timeout=60)
    # the killed job's lock is stale: a new job takes it over and trains on (epochs stay
    # above the config's 2 warmup epochs)
    done = epochs_done(run_dir)
    epochs = max(done + 1, 3)
    proc = horovodrun(2, *TRAIN, "--resume", f"--run_dir={run_dir}", f"--epochs={epochs}",
                      "--allow_change=epochs")
    assert "took over the stale lock" in proc.stderr
    assert epochs_done(run_dir) == epochs
    assert not os.path.exists(os.path.join(run_dir, "run.lock"))


@pytest.mark.parametrize("flag, field", [("--batch_size=128", "batch_size"),
                                         ("--seed=3", "seed"), ("--epochs=5", "epochs"),
                                         ("--config=configs/digits_recipe.py", "schedule.kind")])
def test_resume_refuses_a_changed_trajectory_and_writes_nothing(finished_run, flag, field):
    before = _snapshot(finished_run)
    proc = horovodrun(2, *TRAIN, "--resume", flag, f"--run_dir={finished_run}", check=False,
                      all_ranks=True, timeout=120)
    line = _one_line(proc)
    assert f"{field} " in line and "--allow_change=" in line
    assert _snapshot(finished_run) == before


def test_resume_with_allow_change_is_recorded(finished_run, tmp_path):
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    horovodrun(2, *TRAIN, "--resume", "--epochs=3", "--allow_change=epochs",
               f"--run_dir={run_dir}")
    log = json.loads((run_dir / "resumes.json").read_text())
    assert log[-1]["epochs_done"] == 2
    assert log[-1]["changes"] == {"epochs": {"before": 2, "after": 3}}
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 3
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_resuming_a_finished_run_on_fewer_ranks_reports_the_runs_own_ranks(finished_run,
                                                                           tmp_path):
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    proc = horovodrun(1, *TRAIN, "--resume", f"--run_dir={run_dir}")
    assert "2 epochs on 2 ranks" in proc.stdout, proc.stdout
    assert json.load(open(run_dir / "summary.json"))["num_ranks"] == 2


def test_resume_of_a_missing_run_is_an_error(tmp_path):
    proc = horovodrun(2, *TRAIN, "--resume", f"--run_dir={tmp_path}/nothing", check=False,
                      all_ranks=True, timeout=120)
    assert "must hold a run to resume" in _one_line(proc)
    assert not (tmp_path / "nothing").exists()


def test_corrupt_checkpoint_names_the_file_and_offers_the_previous_one(finished_run, tmp_path):
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    assert (run_dir / "checkpoint.prev.npz").is_file()        # epoch 1, kept by epoch 2's save
    (run_dir / "checkpoint.npz").write_bytes(b"not a zip file")
    proc = horovodrun(2, *TRAIN, "--resume", f"--run_dir={run_dir}", check=False,
                      all_ranks=True, timeout=120)
    line = _one_line(proc)
    assert f"'{run_dir / 'checkpoint.npz'}'" in line and "damaged or truncated" in line
    assert f"mv {run_dir / 'checkpoint.prev.npz'}" in line
    (run_dir / "checkpoint.prev.npz").replace(run_dir / "checkpoint.npz")
    horovodrun(2, *TRAIN, "--resume", f"--run_dir={run_dir}")
    assert ckpt.read_state(str(run_dir / "checkpoint.npz")).epochs_done == 2


def test_saving_keeps_the_previous_epoch_and_never_leaves_the_checkpoint_missing(
        tmp_path, monkeypatch):
    import keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    path, previous = str(tmp_path / "checkpoint.npz"), str(tmp_path / "checkpoint.prev.npz")
    ckpt.save(path, model, {"epochs_done": 1}, keep_previous=previous)
    write = ckpt._write
    seen = []

    def checked_write(target, *args):   # what a reader polling the run dir sees mid-save
        seen.append((os.path.isfile(target), ckpt.read_state(target).epochs_done))
        write(target, *args)

    monkeypatch.setattr(ckpt, "_write", checked_write)
    ckpt.save(path, model, {"epochs_done": 2}, keep_previous=previous)
    assert seen == [(True, 1)]
    assert ckpt.read_state(path).epochs_done == 2
    assert ckpt.read_state(previous).epochs_done == 1
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "checkpoint.prev.npz"]


def test_run_files_follow_the_umask(finished_run):
    for name in ("config.json", "history.csv", "checkpoint.npz", "summary.json"):
        mode = (finished_run / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~_umask(), (name, oct(mode))


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _image_folder(root, bad=None, empty_class=False):
    from PIL import Image
    for split in ("train", "val"):
        for c, color in (("cat", 40), ("dog", 200)):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (20, 20), (color, i * 20, 0)).save(d / f"{i}.png")
    if bad is not None:
        (root / "train" / "dog" / "broken.jpg").write_bytes(bad)
    if empty_class:
        (root / "train" / "bird").mkdir()


@pytest.mark.parametrize("content, what", [(b"", "is empty"),
                                           (b"garbage!" * 10, "not a JPEG, PNG")])
def test_unreadable_image_is_named_or_skipped(tmp_path, content, what):
    from lbsgd import data
    from lbsgd.config import ConfigError, DataConfig
    _image_folder(tmp_path, bad=content)
    cfg = DataConfig(name="folder", data_dir=str(tmp_path), image_size=16)
    with pytest.raises(ConfigError) as err:
        data.load_source(cfg)
    assert str(tmp_path / "train" / "dog" / "broken.jpg") in str(err.value)
    assert what in str(err.value)
    source = data.load_source(DataConfig(name="folder", data_dir=str(tmp_path), image_size=16,
                                         skip_unreadable=True))
    assert source.num_train == 8


@pytest.mark.parametrize("layout, message", [
    ("empty", "must hold train/<class>/ and val/<class>/"),
    ("no_train", "must hold train/<class>/ and val/<class>/"),
    ("no_classes", "has no class directories in"),
    ("empty_class", "class directory without images"),
    ("no_val_images", "has no images under"),
])
def test_a_bad_image_folder_is_refused_by_the_launcher_before_any_rank(tmp_path, layout,
                                                                       message):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if layout != "empty":
        _image_folder(data_dir, empty_class=layout == "empty_class")
    if layout == "no_train":
        import shutil
        shutil.rmtree(data_dir / "train")
    elif layout == "no_classes":
        for c in ("cat", "dog"):
            for f in (data_dir / "train" / c).iterdir():
                f.unlink()
            (data_dir / "train" / c).rmdir()
    elif layout == "no_val_images":
        for f in (data_dir / "val").glob("*/*.png"):
            f.unlink()
    proc = horovodrun(2, *TRAIN, "--data.name=folder", f"--data.data_dir={data_dir}",
                      f"--run_dir={tmp_path / 'run'}",
                      check=False, all_ranks=True, timeout=120)
    line = _one_line(proc)
    assert proc.returncode == 2 and message in line and f"data.data_dir='{data_dir}'" in line
    assert_no_rank_started(proc)
    assert not (tmp_path / "run").exists()


def test_empty_class_directory_is_an_error(tmp_path):
    from lbsgd import data
    from lbsgd.config import ConfigError, DataConfig
    _image_folder(tmp_path, empty_class=True)
    with pytest.raises(ConfigError, match=r"class directory without images: .*bird"):
        data.load_source(DataConfig(name="folder", data_dir=str(tmp_path), image_size=16))
