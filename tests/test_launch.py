"""The launcher: its decisions (lbsgd/launcher/plan.py: arguments, hosts, interface, names) and
its job (lbsgd/launcher/job.py: environment, exit codes, the guard), run for real."""

import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from lbsgd.launcher import job
from lbsgd.launcher import plan as launch
from lbsgd.errors import ConfigError


@pytest.mark.parametrize("argv, hvd, prog", [
    (["-np", "2", "python", "-m", "lbsgd.train"], ["-np", "2"], ["python", "-m", "lbsgd.train"]),
    (["-np", "4", "-H", "a:2,b:2", "/v/bin/python3.11", "x.py", "-np", "9"],
     ["-np", "4", "-H", "a:2,b:2"], ["/v/bin/python3.11", "x.py", "-np", "9"]),
    ([".venv/bin/python", "-c", "1"], [], [".venv/bin/python", "-c", "1"]),
])
def test_split_args_at_the_first_interpreter(argv, hvd, prog):
    assert launch.split_args(argv) == (hvd, prog)


def test_no_program_is_refused():
    with pytest.raises(ConfigError, match="no program given"):
        launch.split_args(["-np", "2", "train.py"])


@pytest.mark.parametrize("args, n", [([], 1), (["-np", "3"], 3), (["--num-proc", "8"], 8),
                                     (["--num-proc=6"], 6), (["-np", "2", "-np", "4"], 4)])
def test_num_ranks(args, n):
    assert launch.num_ranks(args) == n


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_rank_count_is_named(value):
    with pytest.raises(ConfigError, match=f"Field `-np` must be .*-np='{value}'"):
        launch.num_ranks(["-np", value])


def test_job_hosts_from_hosts_and_hostfile_once_each(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# the cluster\nh3 slots=2\n\nh1:4\n  h4\n")
    assert launch.job_hosts(["-H", "h1:2,h2:2", "--hostfile", str(hostfile)]) == [
        "h1", "h2", "h3", "h4"]
    assert launch.job_hosts([f"--hostfile={hostfile}", "--hosts=h9"]) == ["h9", "h3", "h1",
                                                                          "h4"]
    assert launch.job_hosts(["-np", "2"]) == []
    with pytest.raises(ConfigError, match="Field `--hostfile` names an unreadable file"):
        launch.job_hosts(["--hostfile", str(tmp_path / "missing")])


def test_remote_hosts_are_the_names_that_do_not_resolve_here():
    addresses = {"h1": "10.0.0.1", "h2": "10.0.0.2", "me": "192.168.1.5"}
    remote = launch.remote_hosts(["localhost", "box", "me", "h1", "h2", "gone"],
                                 {"127.0.0.1", "192.168.1.5"}, this_host="box",
                                 resolver=addresses.get)
    assert remote == ["h1", "h2", "gone"]


def test_interface_choice_order():
    route = {"10.0.0.2": "veth-h2"}.get
    resolver = {"h2": "10.0.0.2"}.get

    def choose(args, env, remote=("h2",)):
        return launch.choose_interface(args, env, list(remote), router=route, resolver=resolver)

    assert choose(["--network-interface", "eth1,eth2"], {"LBSGD_NETWORK_INTERFACE": "x"}) == (
        "eth1", "given")
    assert choose(["--network-interface=eth3"], {}) == ("eth3", "given")
    assert choose([], {"LBSGD_NETWORK_INTERFACE": "ib0"}) == ("ib0", "LBSGD_NETWORK_INTERFACE")
    assert choose([], {}) == ("veth-h2", "the route to h2")
    assert choose([], {}, remote=("nowhere",)) == (None, "")
    assert choose(["--network-interface", "eth1"], {}, remote=()) == (None, "")


def test_job_names():
    job_id = launch.new_job_id(host="node-1.lab", pid=4242)
    assert job_id.startswith("node-1.lab-4242-")
    key = launch.job_key(job_id)
    assert key.startswith("node_1_lab_4242_") and key.replace("_", "").isalnum()
    assert launch.heartbeat_prefix(key, uid=7).endswith(f"/lbsgd-heartbeat-7-{key}-")


def test_the_ranks_heartbeat_directory_is_under_the_launchers_prefix(monkeypatch):
    from lbsgd.run import faults
    monkeypatch.setenv("LBSGD_JOB_ID", "node-1-4242-99")
    prefix = launch.heartbeat_prefix(launch.job_key("node-1-4242-99"))
    assert faults.heartbeat_directory().startswith(prefix)


def _launcher(*args, env=None, timeout=120):
    env = dict(os.environ if env is None else env, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "lbsgd.launch", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_a_bad_command_line_is_refused_in_one_line_before_anything_starts():
    out = _launcher("-np", "x", "python", "t.py")
    assert out.returncode == 2
    assert out.stderr.strip() == ("launch/run.sh: error: Field `-np` must be a number of "
                                  "ranks >= 1. Received: -np='x'")
    out = _launcher("-np", "2", "train.py")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "no program given" in out.stderr


def test_the_job_environment_keeps_the_users_settings_and_tags_the_job():
    p = launch.Plan(["-np", "2"], ["python", "x.py"], 2, ["h2"], "veth1", "given", "j-1", "/x-")
    env = job.job_environment(p, {"OMPI_MCA_mpi_yield_when_idle": "0", "PATH": "/bin",
                                  "OMPI_MCA_btl": "self,tcp", "OMPI_MCA_ess": "singleton",
                                  "OMPI_MCA_orte_ess_num_procs": "1", "PMIX_RANK": "0",
                                  "OMPI_COMM_WORLD_SIZE": "1"})
    assert env["OMPI_MCA_mpi_yield_when_idle"] == "0"              # the user's value wins
    assert env["OMPI_MCA_btl"] == "self,tcp"                       # the user's MCA settings stay
    # an enclosing MPI singleton's runtime variables are left out (mpirun would join it)
    assert not {"OMPI_MCA_ess", "OMPI_MCA_orte_ess_num_procs", "PMIX_RANK",
                "OMPI_COMM_WORLD_SIZE"} & set(env)
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "2" and env["PYTHONUNBUFFERED"] == "1"
    assert env["OMPI_MCA_oob_tcp_if_include"] == "veth1" and env["LBSGD_JOB_ID"] == "j-1"
    local = launch.Plan(["-np", "2"], ["python"], 2, [], None, "", "j-2", "/x-")
    assert "OMPI_MCA_oob_tcp_if_include" not in job.job_environment(local, {})


def test_a_real_job_passes_its_exit_code_and_shows_the_other_ranks_only_on_failure(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys\n"
        "rank = int(os.environ['OMPI_COMM_WORLD_RANK'])\n"
        "print(f'rank {rank} job {os.environ[\"LBSGD_JOB_ID\"][:4]}', flush=True)\n"
        "sys.exit(int(sys.argv[1]) if rank == 1 else 0)\n")
    # The environment is inherited as is: after a test that started MPI in this process (a
    # singleton), it holds that runtime's variables, which the launcher leaves out.
    ok = subprocess.run([os.path.join(ROOT, "launch", "run.sh"), "-np", "2", "python",
                         str(script), "0"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("rank 0 job ") and "rank 1" not in ok.stdout + ok.stderr
    failed = subprocess.run([os.path.join(ROOT, "launch", "run.sh"), "-np", "2", "python",
                             str(script), "3"], capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0
    assert "the other ranks' last output:" in failed.stderr
    assert "[1,1]<stdout>:rank 1 job " in failed.stderr


def test_the_guard_ends_a_session_whose_launcher_is_killed(tmp_path):
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (tmp_path / "hb-host").mkdir()
    launcher = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from lbsgd.launcher import job; "
         f"job.start_guard({sleeper.pid}, {str(tmp_path / 'hb-')!r}, None); "
         "print('guarded', flush=True); time.sleep(300)"],
        env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE, text=True)
    assert launcher.stdout.readline() == "guarded\n"
    time.sleep(1)
    assert sleeper.poll() is None            # the launcher lives: the guard waits
    launcher.kill()                          # SIGKILL: nothing of the launcher runs after it
    launcher.wait()
    assert sleeper.wait(timeout=60) == -15   # TERM to the job's session
    deadline = time.time() + 60               # a loaded host delays the guard's clean-up
    while (tmp_path / "hb-host").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not (tmp_path / "hb-host").exists()
