"""Running a planned job under horovodrun: the console, signals, the guard and remote clean-up.

Serves the long and many-host runs of both papers (Codreanu et al. V;
Lee et al. IV) with one rule: no rank outlives its launcher, and what is
left on a remote host after a failure is ended there.

* **Console.** The user sees rank 0's output (and horovodrun's/mpirun's own)
  without the `[1,0]<stdout>:` tags mpirun adds (:class:`lbsgd.rankstreams.RankDemux`,
  one thread per stream); the other ranks' output goes to an unlinked
  temporary file whose last 40 lines are printed only if the job fails.
  `LBSGD_ALL_RANKS=1` shows every rank's tagged output instead.
* **Signals.** horovodrun, mpirun and the ranks run in a session of their
  own. A TERM, INT (Ctrl-C) or HUP sent to the launcher is forwarded to that
  whole session; whatever is still alive 20 s later is killed. Exit code:
  the job's, or 128 + the signal's number (143 TERM, 130 INT, 129 HUP).
* **The guard.** A process in a session of its own holds the read end of a
  pipe whose only writer is the launcher. When the launcher ends in any way,
  SIGKILL included, the guard reads EOF; a job still running then had no
  launcher to stop it, and the guard ends its session the same way, and
  removes the launcher's temporary directory (where lbsgd.train asks for
  more ranks), which a launcher that was killed could not remove.
* **Remote hosts.** After a failure or a signal each remote host is asked
  over ssh (5 s) to end the job's processes left there (those carrying its
  LBSGD_JOB_ID); a host that does not answer is named: "lost host NAME".

No TensorFlow here.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from lbsgd.launcher.plan import Plan, resolve
from lbsgd.rankstreams import StartUpFilter, pump, quiet_start_up

GRACE_SECONDS = 20          # after TERM, before KILL
CONSOLE_TAIL_LINES = 40
PREFIX = "launch/run.sh"    # what users run; every message names it
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Exported to every rank unless set: measured CPU defaults (README: Launch settings).
DEFAULTS = {"OMPI_MCA_mpi_yield_when_idle": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1"}
# Set by an MPI runtime in the process that started the launcher (a script or kernel that
# initialised MPI as a singleton): they would make mpirun believe it runs inside that job.
INHERITED_MPI = ("OMPI_MCA_ess", "OMPI_MCA_orte_", "OMPI_MCA_pmix", "OMPI_APP_CTX",
                 "OMPI_COMM_WORLD", "OMPI_UNIVERSE_SIZE", "PMIX_")


def say(message: str) -> None:
    print(f"{PREFIX}: {message}", file=sys.stderr, flush=True)


def session_alive(session: int) -> bool:
    try:
        os.killpg(session, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_session(session: int, grace: float = GRACE_SECONDS) -> None:
    """TERM to the whole session, KILL to what is left after `grace` seconds."""
    try:
        os.killpg(session, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while session_alive(session) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        os.killpg(session, signal.SIGKILL)
    except ProcessLookupError:
        pass


def remove_heartbeats(prefix: str) -> None:
    """The job's heartbeat directories on this host (left by ranks that were killed)."""
    for path in glob.glob(glob.escape(prefix) + "*"):
        shutil.rmtree(path, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def guard(session: int, heartbeats: str, launcher: int, launcher_tmp: str = "") -> int:
    """The guard's body (`python -m lbsgd.launch --guard SESSION HEARTBEATS LAUNCHER
    [LAUNCHER_TMP]`, stdin the pipe): at the pipe's EOF, once the launcher is gone, it ends
    what is left of the job and removes the launcher's temporary directory."""
    while True:
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:   # pragma: no cover - retried by Python anyway
            continue
    while process_alive(launcher):   # EOF comes with the launcher's end; act once it is over
        time.sleep(0.2)
    if launcher_tmp:                 # gone already unless the launcher was killed
        shutil.rmtree(launcher_tmp, ignore_errors=True)
    if not session_alive(session):
        return 0
    say(f"the launcher is gone; ending its job (session {session})")
    end_session(session)
    remove_heartbeats(heartbeats)
    return 0


def start_guard(session: int, heartbeats: str, env: dict, launcher_tmp: str = "") -> int:
    """Starts the guard of `session` (and of the launcher's temporary directory
    `launcher_tmp`); returns the pipe's write end (keep it open until exit).

    The pipe's ends are not inherited by the job (Python's default), so the
    launcher is the only writer: its exit, however it comes, is the guard's EOF.
    """
    read_end, write_end = os.pipe()
    subprocess.Popen([sys.executable, "-m", "lbsgd.launch", "--guard", str(session), heartbeats,
                      str(os.getpid()), *([launcher_tmp] if launcher_tmp else [])],
                     stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True,
                     env=env, close_fds=True)
    os.close(read_end)
    return write_end


class Console:
    """Rank 0's output shown untagged, the other ranks' kept aside (module docstring)."""

    def __init__(self, all_ranks: bool, quiet: bool = False):
        self.all_ranks = all_ranks
        self.quiet = quiet          # TF_CPP_MIN_LOG_LEVEL >= 1: TF's start-up INFO lines off
        self.others = None if all_ranks else tempfile.TemporaryFile(prefix="lbsgd-console-")
        self._lock = threading.Lock()
        self._threads = []

    def streams(self) -> dict:
        """Popen's stdout/stderr arguments."""
        pipe = None if self.all_ranks else subprocess.PIPE
        return {"stdout": pipe, "stderr": pipe}

    def attach(self, proc: subprocess.Popen) -> None:
        if self.all_ranks:
            return
        for source, target in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
            quiet = StartUpFilter() if self.quiet and target is sys.stderr else None
            thread = threading.Thread(target=pump, args=(source.fileno(), target.fileno(),
                                                         self._keep, quiet), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _keep(self, others: bytes) -> None:
        with self._lock:
            self.others.write(others)

    def close(self, rc: int) -> None:
        """Waits (10 s at most) for the job's output to end; on failure, the others' tail."""
        for thread in self._threads:
            thread.join(timeout=10)
        if self.others is None:
            return
        with self._lock:
            self.others.seek(0)
            tail = self.others.read().decode("utf-8", "replace").splitlines()[-CONSOLE_TAIL_LINES:]
            self.others.close()
        if rc != 0 and tail:
            say(f"the job exited with code {rc}; the other ranks' last output:")
            print("\n".join(tail), file=sys.stderr, flush=True)


def remote_cleanup(plan: Plan, rc: int, env: dict) -> None:
    """Ends the job's processes left on every remote host; names each host that does not answer."""
    if not plan.remote_hosts:
        return
    ends = (f"for d in /proc/[0-9]*; do tr '\\0' '\\n' < $d/environ 2>/dev/null | "
            f"grep -qx 'LBSGD_JOB_ID={plan.job_id}' && kill -KILL ${{d#/proc/}} 2>/dev/null; "
            f"done; rm -rf {plan.heartbeats}*; true")
    asks = [subprocess.Popen(["timeout", "10", "ssh", "-o", "BatchMode=yes", "-o",
                              "ConnectTimeout=5", host, ends], env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for host in plan.remote_hosts]
    lost = [host for host, ask in zip(plan.remote_hosts, asks) if ask.wait() != 0]
    resume = (" lbsgd.train's last checkpoint is intact: --resume continues it on the hosts "
              "left (README: Many hosts)." if "lbsgd.train" in plan.prog else "")
    for host in lost:
        if resolve(host):
            say(f"error: lost host {host}: it does not answer over ssh within 5 s (link down, "
                f"partition or host down); the job ended with exit code {rc}.{resume}")
        else:
            say(f"error: host {host}: its name does not resolve; the job ended with exit "
                f"code {rc}.")


class _Signalled(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.code = 128 + signum


def _raise_signalled(signum, frame):
    raise _Signalled(signum)


def job_environment(plan: Plan, env=None) -> dict:
    """The ranks' environment: the defaults unless set, the interface, the job id (an
    enclosing MPI runtime's variables left out)."""
    env = {k: v for k, v in (os.environ if env is None else env).items()
           if not k.startswith(INHERITED_MPI)}
    for key, value in DEFAULTS.items():
        env.setdefault(key, value)
    if plan.remote_hosts and plan.nic:
        env.setdefault("OMPI_MCA_oob_tcp_if_include", plan.nic)
    env["LBSGD_JOB_ID"] = plan.job_id
    if plan.relaunch_file:
        env["LBSGD_RELAUNCH_FILE"] = plan.relaunch_file
    return env


def run(plan: Plan) -> int:
    """Runs the planned job under horovodrun; returns its exit code (module docstring)."""
    env = job_environment(plan)
    quiet_env = {k: v for k, v in env.items() if k != "LBSGD_JOB_ID"}   # not ended by clean-up
    console = Console(all_ranks=env.get("LBSGD_ALL_RANKS", "0") == "1",
                      quiet=quiet_start_up(env))
    if not console.all_ranks:
        env["LBSGD_CONSOLE_TTY"] = "1" if sys.stdout.isatty() else "0"   # rank 0 may redraw
    for signum in SIGNALS:
        signal.signal(signum, _raise_signalled)
    rc, guard_pipe = 1, None
    try:
        proc = subprocess.Popen(["horovodrun", *plan.hvd_args, *plan.prog], env=env,
                                start_new_session=True, stdin=subprocess.DEVNULL,
                                **console.streams())   # stdin: as a shell's background job
        try:
            console.attach(proc)
            guard_pipe = start_guard(proc.pid, plan.heartbeats, quiet_env,
                                     os.path.dirname(plan.relaunch_file))
            rc = proc.wait()
            rc = 128 - rc if rc < 0 else rc
            for signum in SIGNALS:          # the job is over: only clean-up is left
                signal.signal(signum, signal.SIG_IGN)
            if rc:
                remote_cleanup(plan, rc, quiet_env)
        except _Signalled as signalled:
            for signum in SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            rc = signalled.code
            end_session(proc.pid)
            proc.wait()
            remote_cleanup(plan, rc, quiet_env)
        remove_heartbeats(plan.heartbeats)
    finally:
        console.close(rc)
        if guard_pipe is not None:
            os.close(guard_pipe)   # the guard's EOF: it ends whatever of the session is left
    return rc
