"""The launcher's decisions, before any rank starts: the job's arguments, hosts, network interface and names.

Serves the many-host runs of both papers (Codreanu et al. V: scale-out on a
cluster; Lee et al. IV: workers over a network) through horovodrun, never a
home-made communication layer. :func:`plan` turns `launch/run.sh ARGS` into a
:class:`Plan` (horovodrun's arguments and the program, -np, the remote hosts,
the interface and why, the job id, the heartbeat prefix) that
:mod:`lbsgd.launcher.job` runs. Pure decisions (the host's addresses and
routes are read, nothing is started). No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import time

from lbsgd.errors import ConfigError

HOST_FLAGS = ("-H", "--hosts")
HOSTFILE_FLAGS = ("-hostfile", "--hostfile")
INTERFACE_FLAGS = ("--network-interface", "--network-interfaces")
NP_FLAGS = ("-np", "--num-proc")


def is_program(arg: str) -> bool:
    """Whether `arg` starts the program: a python interpreter (`python3`, `.venv/bin/python`)."""
    return os.path.basename(arg).startswith("python")


def split_args(argv) -> tuple[list[str], list[str]]:
    """(horovodrun's arguments, the program) of `launch/run.sh ARGS`: the program starts at
    the first python interpreter. ConfigError when there is none."""
    argv = list(argv)
    start = next((i for i, a in enumerate(argv) if is_program(a)), None)
    if start is None:
        raise ConfigError("launch/run.sh: no program given (e.g. python -m lbsgd.train "
                          "--config ...)")
    return argv[:start], argv[start:]


def _value(args, flags) -> str | None:
    """The value of the last of `flags` in `args` (`-f VALUE` or `--flag=VALUE`)."""
    found = None
    for i, a in enumerate(args):
        if a in flags and i + 1 < len(args):
            found = args[i + 1]
        elif "=" in a and a.split("=", 1)[0] in flags:
            found = a.split("=", 1)[1]
    return found


def num_ranks(hvd_args) -> int:
    """-np/--num-proc (1 when absent); ConfigError naming the flag when it is not a count."""
    value = _value(hvd_args, NP_FLAGS)
    if value is None:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"Field `-np` must be a number of ranks >= 1. Received: -np={value!r}")
    return int(value)


def read_hostfile(path: str) -> list[str]:
    """Host names of a hostfile (`name slots=N` or `name:N` lines; # comments)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise ConfigError(f"Field `--hostfile` names an unreadable file ({err.strerror}). "
                          f"Received: --hostfile={path!r}") from None
    return [line.split()[0].split(":")[0] for line in lines
            if line.strip() and not line.lstrip().startswith("#")]


def job_hosts(hvd_args) -> list[str]:
    """The job's host names, in order, once each (-H/--hosts, then --hostfile)."""
    hosts = []
    spec = _value(hvd_args, HOST_FLAGS)
    if spec:
        hosts += [h.split(":")[0] for h in spec.split(",") if h]
    path = _value(hvd_args, HOSTFILE_FLAGS)
    if path:
        hosts += read_hostfile(path)
    return list(dict.fromkeys(hosts))


def local_addresses() -> set[str]:
    """This machine's IPv4 addresses (loopback included)."""
    addrs = {"127.0.0.1"}
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                             text=True, timeout=10).stdout
        addrs |= set(re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", out))
    except (OSError, subprocess.TimeoutExpired):
        pass
    return addrs


def resolve(host: str) -> str | None:
    """The first IPv4 address of `host`, None if it does not resolve."""
    try:
        return socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0]
    except (OSError, IndexError):
        return None


def remote_hosts(hosts, local_addrs, this_host: str | None = None,
                 resolver=resolve) -> list[str]:
    """The hosts other than this machine: a name resolving to one of `local_addrs` is local
    (as are localhost and this machine's own name); a name that does not resolve is remote
    (horovodrun then names it)."""
    this_host = this_host or socket.gethostname()
    remote = []
    for host in hosts:
        if host in ("localhost", this_host):
            continue
        addr = resolver(host)
        if addr is None or addr not in local_addrs:
            remote.append(host)
    return remote


def route_interface(addr: str) -> str | None:
    """The interface of this machine's route to `addr` (`ip route get`)."""
    try:
        out = subprocess.run(["ip", "-4", "route", "get", addr], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r" dev (\S+)", out)
    return match.group(1) if match else None


def choose_interface(hvd_args, env, remote, router=route_interface,
                     resolver=resolve) -> tuple[str | None, str]:
    """(interface, why) for a job with `remote` hosts: --network-interface if given (its
    first name), else LBSGD_NETWORK_INTERFACE, else the route to the first remote host;
    (None, "") without remote hosts or a route."""
    if not remote:
        return None, ""
    given = _value(hvd_args, INTERFACE_FLAGS)
    if given:
        return given.split(",")[0], "given"
    if env.get("LBSGD_NETWORK_INTERFACE"):
        return env["LBSGD_NETWORK_INTERFACE"], "LBSGD_NETWORK_INTERFACE"
    addr = resolver(remote[0])
    nic = router(addr) if addr else None
    return (nic, f"the route to {remote[0]}") if nic else (None, "")


def new_job_id(host: str | None = None, pid: int | None = None) -> str:
    """LBSGD_JOB_ID: host, launcher pid and a nanosecond clock (tags the job's processes)."""
    return f"{host or socket.gethostname()}-{pid or os.getpid()}-{time.time_ns()}"


def job_key(job_id: str) -> str:
    """`job_id` as a file-name part: every character but ASCII letters and digits as "_"."""
    return "".join(c if c.isascii() and c.isalnum() else "_" for c in job_id)


def heartbeat_prefix(key: str, uid: int | None = None) -> str:
    """The one naming of a job's heartbeat directories: this prefix and the host's name
    (lbsgd.run.faults.heartbeat_directory writes them; the launcher removes them)."""
    uid = os.getuid() if uid is None else uid
    root = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    return os.path.join(root, f"lbsgd-heartbeat-{uid}-{key}-")


@dataclasses.dataclass
class Plan:
    """What the launcher starts: horovodrun's arguments (the interface added where the
    launcher chose it) and the program, with the job's hosts and names."""

    hvd_args: list
    prog: list
    np: int
    remote_hosts: list
    nic: str | None
    nic_reason: str
    job_id: str
    heartbeats: str
    relaunch_file: str = ""     # where lbsgd.train asks for more ranks (lbsgd.adaptive.ranks)


def with_ranks(p: Plan, np_: int, prog) -> Plan:
    """`p` restarted on `np_` ranks with program `prog` (-np replaced, a new job id)."""
    args, i = [], 0
    while i < len(p.hvd_args):
        a = p.hvd_args[i]
        if a in NP_FLAGS:
            i += 2
            continue
        if "=" in a and a.split("=", 1)[0] in NP_FLAGS:
            i += 1
            continue
        args.append(a)
        i += 1
    job_id = new_job_id()
    return dataclasses.replace(p, hvd_args=["-np", str(np_), *args], prog=list(prog), np=np_,
                               job_id=job_id, heartbeats=heartbeat_prefix(job_key(job_id)))


def plan(argv, env=None, launcher_pid: int | None = None) -> Plan:
    """The job `launch/run.sh argv` starts (ConfigError when it cannot start)."""
    env = os.environ if env is None else env
    hvd_args, prog = split_args(argv)
    np_ = num_ranks(hvd_args)
    remote = remote_hosts(job_hosts(hvd_args), local_addresses())
    nic, why = choose_interface(hvd_args, env, remote)
    if nic and why != "given":
        hvd_args = ["--network-interface", nic, *hvd_args]
    job_id = new_job_id(pid=launcher_pid)
    return Plan(hvd_args, prog, np_, remote, nic, why, job_id, heartbeat_prefix(job_key(job_id)))
