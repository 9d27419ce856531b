"""Shared helpers: run lbsgd under horovodrun exactly as a user would."""

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "launch", "run.sh")


# The session's temporary directory for the processes its tests start (TMPDIR): what a
# SIGKILLed job leaves there (TensorFlow's generated modules, the launcher's directory,
# Open MPI's session files) goes with it at the session's end.
JOBS_TMP = ""


def launch_env(all_ranks=False):
    """The environment of a launched job; with `all_ranks` the launcher shows every rank's
    output with mpirun's "[1,N]<stdout>:" tags (LBSGD_ALL_RANKS=1), so
    :func:`assert_no_rank_started` can tell whether any rank ran."""
    env = dict(os.environ)
    if JOBS_TMP:
        env["TMPDIR"] = JOBS_TMP
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if all_ranks:
        env["LBSGD_ALL_RANKS"] = "1"
    else:
        env.pop("LBSGD_ALL_RANKS", None)
    return env


RANK_TAG = re.compile(r"\[\d+,\d+\]<std(out|err)>:")


def _heartbeat_dirs():
    """Every job's heartbeat directories on this host (lbsgd.launcher.plan's one naming)."""
    from lbsgd.launcher.plan import heartbeat_prefix
    return set(glob.glob(heartbeat_prefix("*") + "*"))


# Open MPI's shared-memory segments (its vader transport's backing files); mpirun has them
# removed at a job's end, but not when mpirun itself is SIGKILLed with its ranks.
MPI_SEGMENTS = "/dev/shm/vader_segment.*"


def _mapped_files():
    """Every file some live process maps (/proc/*/maps)."""
    mapped = set()
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            with open(maps) as f:
                mapped.update(fields[5].strip() for fields in (line.split(None, 5) for line in f)
                              if len(fields) == 6)
        except OSError:
            pass
    return mapped


def pytest_sessionstart(session):
    global JOBS_TMP
    JOBS_TMP = tempfile.mkdtemp(prefix="lbsgd-tests-")
    session.config.lbsgd_heartbeats_before = _heartbeat_dirs()
    session.config.lbsgd_segments_before = set(glob.glob(MPI_SEGMENTS))


def _rank_alive(beat_file):
    from lbsgd.launcher.job import process_alive
    try:
        with open(beat_file) as f:
            return process_alive(int(json.load(f)["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def pytest_sessionfinish(session, exitstatus):
    """Heartbeat directories and MPI shared-memory segments of the jobs this session's tests
    SIGKILLed whole (launcher, guard and ranks: nothing of the job was left to remove them)
    go once no rank of theirs runs; those from before the session are left alone. The
    session's TMPDIR goes whole."""
    if JOBS_TMP:
        shutil.rmtree(JOBS_TMP, ignore_errors=True)
    before = getattr(session.config, "lbsgd_heartbeats_before", set())
    for path in _heartbeat_dirs() - before:
        if not any(_rank_alive(f) for f in glob.glob(os.path.join(path, "rank*.json"))):
            shutil.rmtree(path, ignore_errors=True)
    new_segments = set(glob.glob(MPI_SEGMENTS)) - getattr(session.config,
                                                          "lbsgd_segments_before", set())
    if new_segments:         # those of such jobs: created in the session, mapped by no one
        for path in new_segments - _mapped_files():
            with contextlib.suppress(OSError):
                os.unlink(path)


def assert_no_rank_started(proc):
    """For a job launched with launch_env(all_ranks=True): no rank printed a line."""
    out = proc.stdout + proc.stderr
    assert not RANK_TAG.search(out), f"a rank started:\n{out[-3000:]}"


def run_python(*args, cwd=ROOT, timeout=120):
    """`python args...` as one process (no launcher) with launch_env; the CompletedProcess."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=launch_env(),
                          capture_output=True, text=True, timeout=timeout)


def _launch_cmd(np_, program, hosts=None, extra=()):
    """`launch/run.sh -np N [-H hosts] [extra...] python program...`"""
    return [LAUNCH, "-np", str(np_), *(["-H", hosts] if hosts else []), *extra,
            sys.executable, *program]


def horovodrun(np_, *program, timeout=900, check=True, all_ranks=False, hosts=None, extra=(),
               env=None):
    """Runs `launch/run.sh -np N [-H hosts] [extra...] python ...` (env: launch_env's unless
    given); returns the CompletedProcess, failing with its output unless it exits 0 or
    `check` is false."""
    cmd = _launch_cmd(np_, program, hosts, extra)
    proc = subprocess.run(cmd, cwd=ROOT, env=env or launch_env(all_ranks),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def session_pids(sid):
    """Live (non-zombie) processes of session `sid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) != sid:
                    continue
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        pids.append(int(entry))
            except (ProcessLookupError, PermissionError, FileNotFoundError):
                pass
    return pids


def _parents():
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parents[int(entry)] = int(fields[1])
            except (OSError, IndexError):
                pass
    return parents


def job_pids(sid):
    """Live processes of the launcher's session and all their descendants (the launcher
    starts horovodrun, mpirun and the ranks in a session of their own)."""
    parents = _parents()
    found = set(session_pids(sid))
    grew = True
    while grew:
        children = {p for p, pp in parents.items() if pp in found} - found
        grew = bool(children)
        found |= children
    return sorted(found)


def kill_session(sid):
    """SIGKILL the launcher, horovodrun, mpirun and every rank."""
    for pid in job_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture(scope="session")
def root():
    return ROOT


# A tiny digits model: ResNet-8 on 16x16 images, for tests of the run's machinery.
TINY_DIGITS = ("-m", "lbsgd.train", "--config", "configs/digits_resnet.py",
               "--model.name=resnet8", "--data.image_size=16")


@pytest.fixture(scope="session")
def short_run(tmp_path_factory):
    """One finished 2-rank, 2-epoch run of TINY_DIGITS in a directory named "run", shared
    read-only by the console and fault tests: (run directory, its CompletedProcess)."""
    run_dir = tmp_path_factory.mktemp("short") / "run"
    proc = horovodrun(2, *TINY_DIGITS, "--epochs=2", "--schedule.warmup_epochs=1",
                      f"--run_dir={run_dir}")
    return run_dir, proc


def start_job(np_, *program, hosts=None, env=None, output=subprocess.PIPE):
    """Starts `launch/run.sh -np N [-H hosts] python program...` in a session of its own
    (kill_session ends it all); returns the Popen."""
    return subprocess.Popen(_launch_cmd(np_, program, hosts), cwd=ROOT, env=env or launch_env(),
                            stdout=output, stderr=output, text=True,
                            start_new_session=True)


def wait_while_running(proc, ready, what, timeout=300, poll=0.1):
    """Polls `ready()` while the job `proc` runs and returns its first true value; fails
    naming `what` when the job ends or `timeout` seconds pass first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        value = ready()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"{what}: not reached (job exit code {proc.poll()}, "
                         f"waited up to {timeout} s)")


def epochs_done(run_dir):
    """Epochs in the run's checkpoint (0 before the first one)."""
    from lbsgd.run import checkpoint as ckpt

    path = os.path.join(run_dir, ckpt.CHECKPOINT_NAME)
    return ckpt.read_state(path).epochs_done if os.path.isfile(path) else 0


def kill_after_checkpoint(program, run_dir, min_epochs, timeout=600, np_=2, hosts=None):
    """Starts `launch/run.sh -np N [-H hosts] python program...`, SIGKILLs every process once
    the run's checkpoint holds >= min_epochs epochs; returns the epochs it holds."""
    proc = start_job(np_, *program, hosts=hosts, output=subprocess.DEVNULL)
    try:
        wait_while_running(proc, lambda: epochs_done(run_dir) >= min_epochs,
                           f"a checkpoint of epoch {min_epochs}", timeout, poll=0.05)
    finally:
        job = job_pids(proc.pid)      # the whole tree, taken before anything dies
        kill_session(proc.pid)
        proc.wait(timeout=60)
    alive = job
    for _ in range(100):  # SIGKILL is delivered asynchronously
        alive = [p for p in job if _alive(p)]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"processes survived SIGKILL: {alive}"
    return epochs_done(run_dir)
