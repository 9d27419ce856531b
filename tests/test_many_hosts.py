"""Many hosts over real TCP: lbsgd jobs on launch/cluster.sh's namespace hosts, a lost host, a resume on fewer ranks.

One 2-host cluster (network namespaces lbsgd-h1 and lbsgd-h2 on a private bridge, an
sshd each, horovodrun launching over ssh, MPI and Gloo talking TCP through the bridge)
serves the whole module and is taken down at its end, also when a test fails. Skipped,
with the reason printed, where namespaces cannot be made (not root, no `ip netns`);
under LBSGD_REQUIRE_NAMESPACES=1 (.ci/run) that is a failure instead.

Runs are short (2-3 epochs of tiny models) and reused between tests.
"""

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import (ROOT, assert_no_rank_started, epochs_done, horovodrun, kill_session,
                      launch_env, start_job, wait_while_running)
from lbsgd.run import checkpoint as ckpt

CLUSTER = os.path.join(ROOT, "launch", "cluster.sh")
STATE = "/var/lib/lbsgd-cluster"
HOSTS = "lbsgd-h1:1,lbsgd-h2:1"
DIGITS = ("-m", "lbsgd.train", "--config", "configs/digits_resnet.py", "--model.name=resnet8",
          "--data.image_size=16", "--epochs=2", "--schedule.warmup_epochs=1")
# BN-free (EDSR), so a changed world size changes nothing but float rounding (lbsgd.run.resize);
# 32 steps per epoch of global batch 32, LR warmed up then decayed every step.
PHANTOM = ("-m", "lbsgd.train", "--config", "configs/phantom_linear_scaling.py",
           "--data.image_size=16", "--batch_size=32", "--epochs=3", "--schedule.warmup_epochs=1",
           "--schedule.decay=poly", "--optimizer.base_lr=2e-4", "--adaptive.log_theta=false",
           "--stop.patience=0")


def _skip_reason():
    if os.geteuid() != 0:
        return "not root: network namespaces, sshd and tc need root"
    for tool in ("ip", "tc", "unshare", "ssh", "ssh-keygen", "/usr/sbin/sshd"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (bash launch/install.sh installs it)"
    probe = subprocess.run(["ip", "netns", "add", "lbsgd-test-probe"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "lbsgd-test-probe"], check=True)
    return None


def _cluster(*args, timeout=120, check=True):
    return subprocess.run([CLUSTER, *args], capture_output=True, text=True, timeout=timeout,
                          check=check)


def _netns():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def cluster():
    reason = _skip_reason()
    if reason and os.environ.get("LBSGD_REQUIRE_NAMESPACES") == "1":   # set by .ci/run
        pytest.fail(f"LBSGD_REQUIRE_NAMESPACES=1, but {reason}")
    if reason:
        print(f"\ntests/test_many_hosts.py skipped: {reason}")
        pytest.skip(reason)
    try:
        _cluster("up", "2")
        yield
    finally:
        _cluster("down")
        names = _netns()
        assert "lbsgd-h" not in names, names


def _arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "state"}


def _rows(run_dir):
    import csv
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def _veth_bytes(host):
    """Bytes through `host`'s cable (its veth port on the bridge), both directions."""
    base = f"/sys/class/net/{host}v/statistics"
    return sum(int(open(f"{base}/{d}_bytes").read()) for d in ("rx", "tx"))


@contextlib.contextmanager
def _read_only_on(host, path):
    """`path` is read-only for every process `host`'s sshd starts (its mount namespace)."""
    sshd = open(f"{STATE}/sshd.{host}.pid").read().strip()
    enter = ["nsenter", "--target", sshd, "--mount", "--"]
    subprocess.run(enter + ["sh", "-c", f"mount --bind '{path}' '{path}' && "
                                        f"mount -o remount,bind,ro '{path}' '{path}'"],
                   check=True)
    try:
        yield
    finally:
        subprocess.run(enter + ["umount", str(path)], check=True)


# --------------------------------------------------------------------------
# (a) The same job on two hosts: the weights of the one-host job.
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_host_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("one_host") / "run"
    horovodrun(2, *DIGITS, f"--run_dir={run_dir}", timeout=600)
    return run_dir


@pytest.mark.parametrize("controller", ["mpi", "gloo"])
def test_two_hosts_train_to_the_weights_of_one_host(cluster, one_host_run, tmp_path,
                                                    controller):
    """Same seed, 2 ranks on lbsgd-h1 and lbsgd-h2 over TCP -> bitwise the weights of the
    2-rank job on one machine (shared memory). Each rank computes the same local batches;
    an allreduce of two values is one exact a + b, whatever the transport. TensorFlow's
    threads per rank follow the ranks per host (2 cores / 2 ranks here, 2 cores / 1 rank
    on a namespace host) and oneDNN's sums depend on them, so the two-host job is pinned
    to the one-host job's 1 thread per rank. Only rank 0 (on lbsgd-h1) may write the run
    directory: it is read-only on lbsgd-h2, so any write there would fail the job."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = launch_env()
    env["LBSGD_INTRA_OP_THREADS"] = "1"
    before = {h: _veth_bytes(h) for h in ("lbsgd-h1", "lbsgd-h2")}
    with _read_only_on("lbsgd-h2", run_dir):
        proc = horovodrun(2, *DIGITS, f"--run_dir={run_dir}", hosts=HOSTS, env=env,
                          extra=["--gloo"] if controller == "gloo" else [], timeout=600)
    moved = {h: _veth_bytes(h) - before[h] for h in before}
    assert ("2 remote host(s) (lbsgd-h1 lbsgd-h2) over network interface lbsgd0 "
            "(the route to lbsgd-h1)") in proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["num_ranks"] == 2
    assert summary["threads_per_rank"] == 1
    assert not (run_dir / "run.lock").exists()
    # every step's gradient exchange crossed both cables: >= 1/2 x steps x gradient bytes
    # (a 2-rank ring sends each rank's M bytes once per step; M from the checkpoint)
    weights = _arrays(run_dir / "checkpoint.npz")
    gradient_bytes = 4 * sum(v.size for k, v in weights.items() if k.startswith("model/"))
    for host, moved_bytes in moved.items():
        assert moved_bytes > 0.5 * summary["optimizer_steps"] * gradient_bytes, (host, moved)
    reference = _arrays(one_host_run / "checkpoint.npz")
    assert weights.keys() == reference.keys()
    unequal = [k for k in weights if not np.array_equal(weights[k], reference[k])]
    assert not unequal, f"{len(unequal)} of {len(weights)} arrays differ, e.g. {unequal[:3]}"


# --------------------------------------------------------------------------
# (b) A host lost mid-epoch; (c) the run resumed on the rank left.
# --------------------------------------------------------------------------

def _rank0_heartbeat(since):
    """Rank 0's heartbeat on lbsgd-h1 ({"where": "epoch 2 step 5", "pid": ...}) of a job
    started at `since`: written since then by a live process."""
    beats = glob.glob(f"/dev/shm/lbsgd-heartbeat-{os.getuid()}-*-lbsgd-h1/rank0.json")
    for path in beats:
        try:
            with open(path) as f:
                beat = json.load(f)
            if os.path.getmtime(path) >= since and os.path.exists(f"/proc/{beat['pid']}"):
                return beat
        except (OSError, ValueError, KeyError):
            continue
    return {}


@pytest.fixture(scope="module")
def lost_host_run(cluster, tmp_path_factory):
    """A 2-host MPI job whose lbsgd-h2 loses its cable (link down: no FIN, no RST, as a
    host that dies or is partitioned away) in epoch 2 of 3. Rank 0 is held (SIGSTOP) from
    the moment epoch 1's checkpoint is on disk until the cable is out, so the fault is in
    epoch 2 however fast the epoch runs (heartbeats come at most once a second: an epoch
    shorter than that may write none of its own)."""
    run_dir = tmp_path_factory.mktemp("lost_host") / "run"
    started = time.time()
    proc = start_job(2, *PHANTOM, f"--run_dir={run_dir}", hosts=HOSTS)

    def epoch_1_checkpointed():
        beat = _rank0_heartbeat(started)
        return beat if beat and epochs_done(run_dir) >= 1 else None

    beat = {}
    try:
        beat = wait_while_running(proc, epoch_1_checkpointed, "epoch 1's checkpoint", 600,
                                  poll=0.02)
        os.kill(beat["pid"], signal.SIGSTOP)
        try:
            epochs_at_fault = ckpt.read_state(str(run_dir / "checkpoint.npz")).epochs_done
            _cluster("link", "lbsgd-h2", "down")
        finally:
            os.kill(beat["pid"], signal.SIGCONT)
        t0 = time.time()
        out, err = proc.communicate(timeout=120)
        seconds = time.time() - t0
    finally:
        if proc.poll() is None:
            kill_session(proc.pid)
            proc.wait(timeout=60)
        _cluster("link", "lbsgd-h2", "up")
        _cluster("kill", "lbsgd-h2")          # whatever the lost host still runs
        _cluster("kill", "lbsgd-h1")
    return {"run_dir": run_dir, "returncode": proc.returncode, "seconds": seconds,
            "stderr": err, "stdout": out, "fault_at": beat["where"],
            "epochs_at_fault": epochs_at_fault}


def test_a_lost_host_ends_the_job_naming_it_and_keeps_the_checkpoint(lost_host_run):
    run = lost_host_run
    assert run["epochs_at_fault"] == 1, run["fault_at"]            # the fault was in epoch 2
    assert run["returncode"] != 0
    assert run["seconds"] < 60, f"the job took {run['seconds']:.0f} s to end"
    assert "launch/run.sh: error: lost host lbsgd-h2: it does not answer over ssh" in \
        run["stderr"], run["stderr"][-3000:]
    assert "lost host lbsgd-h1" not in run["stderr"]
    path = str(run["run_dir"] / "checkpoint.npz")
    state = ckpt.read_state(path)
    assert state.epochs_done == 1 and state.world_size == 2             # epoch 2 was cut
    from lbsgd.run import rundir
    rundir.read_checkpoint_state(path, verify=True)                      # every array's CRC
    arrays = _arrays(path)
    assert arrays and all(np.all(np.isfinite(a)) for a in arrays.values())
    assert [r["epoch"] for r in _rows(run["run_dir"])] == ["1"]


@pytest.fixture(scope="module")
def one_rank_run(cluster, tmp_path_factory):
    """The uninterrupted run at the new size: 1 rank on lbsgd-h1 from the start."""
    run_dir = tmp_path_factory.mktemp("one_rank") / "run"
    horovodrun(1, *PHANTOM, f"--run_dir={run_dir}", hosts="lbsgd-h1:1", timeout=600)
    return run_dir


def test_resume_on_fewer_ranks_matches_an_uninterrupted_run_at_the_new_size(
        lost_host_run, one_rank_run):
    """Policy (lbsgd.run.resize): global batch 32 and the samples seen are kept, the local batch
    becomes 32, the data order is a function of (seed, epoch). EDSR has no BatchNorm, so the
    1-rank continuation of the 2-rank checkpoint follows the run that had 1 rank all along:
    each step's gradient is the mean over the same 32 examples, and the only difference is
    float rounding - the 2-rank average (a/16 + b/16)/2 against one mean over 32 in epoch 1,
    and oneDNN's sums over a local batch of 16 instead of 32. Rounding differences of ~1e-7
    grow over 96 Adam steps but stay far below one step's update, which is what a wrong
    policy (another batch, data order or schedule position) would change."""
    run_dir = lost_host_run["run_dir"]
    before = _arrays(run_dir / "checkpoint.npz")
    proc = horovodrun(1, *PHANTOM, "--resume", f"--run_dir={run_dir}", hosts="lbsgd-h1:1",
                      timeout=600)
    assert ("resuming on 1 rank (the checkpoint was written by 2): global batch 32 and 1024 "
            "samples seen kept, local batch 16 -> 32") in proc.stderr, proc.stderr[-3000:]
    log = json.loads((run_dir / "resumes.json").read_text())
    assert log[-1]["epochs_done"] == 1
    assert log[-1]["changes"] == {"world_size": {"before": 2, "after": 1},
                                  "local_batch": {"before": 16, "after": 32}}
    resumed, uninterrupted = _rows(run_dir), _rows(one_rank_run)
    assert [r["epoch"] for r in resumed] == ["1", "2", "3"]
    for a, b in zip(resumed, uninterrupted):     # the schedule continues at the same step
        assert (a["batch_size"], a["steps"], a["learning_rate"]) == \
            (b["batch_size"], b["steps"], b["learning_rate"])
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-3)
    assert json.loads((run_dir / "summary.json").read_text())["optimizer_steps"] == 96
    final, reference = _arrays(run_dir / "checkpoint.npz"), _arrays(one_rank_run /
                                                                    "checkpoint.npz")
    model = [k for k in final if k.startswith("model/")]
    gap = max(float(np.max(np.abs(final[k] - reference[k]))) for k in model)
    moved = max(float(np.max(np.abs(final[k] - before[k]))) for k in model)
    assert moved > 1e-3                                  # epochs 2-3 did train
    assert gap < 1e-2 * moved, f"max |w_resumed - w_1rank| {gap:.3g}, epochs 2-3 moved {moved:.3g}"


def test_resume_on_ranks_that_do_not_divide_the_global_batch_is_refused(lost_host_run):
    proc = horovodrun(3, *PHANTOM, "--resume", f"--run_dir={lost_host_run['run_dir']}",
                      all_ranks=True, check=False, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert "Field `batch_size` must divide evenly over 3 ranks" in lines[0]
    assert_no_rank_started(proc)


# --------------------------------------------------------------------------
# (d) Workers that grow with the batch: one host, then two (Lee et al. IV-A).
# --------------------------------------------------------------------------

GROW = ("-m", "lbsgd.train", "--config", "configs/phantom_adaptive.py", "--epochs=4",
        "--batch_size=16", "--adaptive.max_batch=64", "--adaptive.k_epochs=2",
        "--data.num_train=256", "--data.image_size=16", "--model.edsr_blocks=2",
        "--model.edsr_filters=16", "--stop.patience=0")


def test_workers_grow_from_one_host_to_two(cluster, tmp_path):
    """adaptive.max_ranks=2, started as 1 rank on lbsgd-h1 of -H lbsgd-h1:1,lbsgd-h2:1: at
    the growth 16 -> 32 the launcher restarts the run on both hosts over TCP, and (EDSR has
    no BN) it follows the run that had both hosts from the start."""
    grown, fixed = tmp_path / "grown", tmp_path / "fixed"
    env = launch_env()
    env["LBSGD_INTRA_OP_THREADS"] = "1"
    proc = horovodrun(1, *GROW, "--adaptive.max_ranks=2", f"--run_dir={grown}", hosts=HOSTS,
                      env=env, timeout=900)
    assert "restarting on 2 ranks (was 1) from the checkpoint" in proc.stderr, proc.stderr
    horovodrun(2, *GROW, f"--run_dir={fixed}", hosts=HOSTS, env=env, timeout=900)
    a, b = _rows(fixed), _rows(grown)
    assert [r["ranks"] for r in b] == ["1", "1", "2", "2"]
    assert [r["batch_size"] for r in b] == ["16", "16", "32", "32"]
    for ra, rb in zip(a, b):
        assert (ra["batch_size"], ra["steps"]) == (rb["batch_size"], rb["steps"])
        assert float(rb["learning_rate"]) == pytest.approx(float(ra["learning_rate"]))
        assert float(rb["loss"]) == pytest.approx(float(ra["loss"]), rel=1e-3)
    summary = json.loads((grown / "summary.json").read_text())
    assert summary["restarts"]["count"] == 1 and summary["num_ranks"] == 2


def test_world_size_policy_keeps_the_reached_batch_and_names_what_changes():
    from lbsgd.run import resize
    from lbsgd.run.state import RunState
    from lbsgd.config import ConfigError, TrainConfig
    cfg = TrainConfig(batch_size=32)
    rows = [{"batch_size": 32, "steps": 30}, {"batch_size": 44, "steps": 21}]
    state = RunState.from_dict({"epochs_done": 2, "world_size": 2, "run_logger": {"rows": rows},
                                "adaptive_batch": {"growth": {"batch": 44}}})  # grown x1.5, trimmed
    assert resize.global_batch(state, cfg) == 44
    assert resize.samples_seen(state) == 32 * 30 + 44 * 21
    assert resize.changes(state, cfg, 2) == {}
    assert resize.changes(state, cfg, 4) == {"world_size": (2, 4), "local_batch": (22, 11)}
    assert resize.changes(RunState.from_dict({"epochs_done": 1}), cfg, 4) == {}  # older: unknown
    resize.check_resume(state, cfg, 4)
    with pytest.raises(ConfigError, match=r"keeps its global batch 44, which must divide "
                                          r"evenly over the ranks .*Received: 3 ranks"):
        resize.check_resume(state, cfg, 3)
    assert resize.describe(state, cfg, 1) == (
        "resuming on 1 rank (the checkpoint was written by 2): global batch 44 and 1884 "
        "samples seen kept, local batch 22 -> 44; the data order is a function of (seed, "
        "epoch), so the epochs ahead see the same global batches")


@pytest.mark.parametrize("args, error", [
    (["up", "2", "--slots=0"], "--slots must be >= 1. Received: --slots 0"),
    (["up", "2", "--slots", "0"], "--slots must be >= 1. Received: --slots 0"),
    (["up", "2", "--cpus-per-host=999"], "Received: --cpus-per-host 999"),
    (["up", "0"], "up needs the number of hosts, 1 to 200. Received: '0'"),
    (["up", "2", "--bogus=1"], "unknown option '--bogus'"),
    (["up", "2", "--link=fast"], "fast"),
    (["shape", "--link=1gbit", "extra"], "unknown argument 'extra'"),
])
def test_cluster_arguments_are_refused_in_one_line_before_anything_is_made(args, error):
    before = _netns()
    proc = _cluster(*args, timeout=60, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("launch/cluster.sh: error: ") and error in lines[0], lines[0]
    assert _netns() == before
