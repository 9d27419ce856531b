"""The launcher's decisions (lbsgd/launch.py): arguments, hosts, interface, names; no job runs."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from lbsgd import launch
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
    from lbsgd import faults
    monkeypatch.setenv("LBSGD_JOB_ID", "node-1-4242-99")
    prefix = launch.heartbeat_prefix(launch.job_key("node-1-4242-99"))
    assert faults.heartbeat_directory().startswith(prefix)


def test_shell_plan_round_trips_through_bash():
    env = dict(os.environ, PYTHONPATH=ROOT, LBSGD_LAUNCHER_PID="31337")
    script = ('eval "$(' + sys.executable + ' -m lbsgd.launch --shell -np 3 '
              '--gloo python -c \'print("a b")\' "x y")"; '
              'printf "%s|" "${hvd_args[@]}"; echo; printf "%s|" "${prog[@]}"; echo; '
              'echo "$np ${#remote_hosts[@]} [$nic] $job_id"')
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    hvd, prog, last = out.stdout.splitlines()
    assert hvd == "-np|3|--gloo|"
    assert prog == 'python|-c|print("a b")|x y|'
    np_, remote, nic, job_id = last.split(" ", 3)
    assert (np_, remote, nic) == ("3", "0", "[]") and "-31337-" in job_id


def test_shell_plan_refuses_in_one_line():
    out = subprocess.run([sys.executable, "-m", "lbsgd.launch", "--shell", "-np", "x",
                          "python", "t.py"], env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == ("launch/run.sh: error: Field `-np` must be a number of "
                                  "ranks >= 1. Received: -np='x'")
