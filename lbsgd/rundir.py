"""The run directory: its file names and its lock (one live job per run directory).

A run of either paper's recipe is hours of work kept in one directory
(Codreanu et al. V: time-to-accuracy per run; Lee et al. VI: runs to
convergence); two jobs writing into it would mix their checkpoints and
histories. :class:`RunDir` names every file a run writes and holds the lock:
`run.lock` records the holder's host, pid and process start time; a second
job is refused naming the holder, and a lock whose process is gone (a killed
job) is recognised as stale and taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time

from lbsgd.config import ConfigError

# Every file a run writes (README "The run directory" lists what each holds).
CONFIG = "config.json"
HISTORY = "history.csv"
CHECKPOINT = "checkpoint.npz"
PREVIOUS_CHECKPOINT = "checkpoint.prev.npz"   # the epoch before: kept while the next is written
SUMMARY = "summary.json"
ENSEMBLE = "ensemble.json"
THETA_REFERENCE = "theta_reference.npz"
RESUMES = "resumes.json"
LOCK = "run.lock"
SNAPSHOTS = "snapshots"
RUN_FILES = (CONFIG, HISTORY, CHECKPOINT, PREVIOUS_CHECKPOINT, SUMMARY, ENSEMBLE,
             THETA_REFERENCE, RESUMES)


def read_checkpoint_state(path: str, verify: bool = False) -> dict:
    """The trainer state of a checkpoint (numpy and json only: no TensorFlow).

    With `verify`, every array is read (zip CRCs checked), so a damaged file
    is found before any rank starts. Raises ConfigError naming the file.
    """
    import zipfile

    import numpy as np
    try:
        if not zipfile.is_zipfile(path):   # np.load would blame "pickled data"
            raise ValueError("not an .npz archive: damaged or truncated")
        with np.load(path) as z:
            if verify:
                for key in z.files:
                    z[key]
            return json.loads(bytes(z["state"]).decode("utf-8"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        directory = os.path.dirname(path)
        previous = os.path.join(directory, PREVIOUS_CHECKPOINT)
        offer = (f"the previous epoch's {previous} is intact: `mv {previous} {path}` and "
                 "resume from it, or start afresh with --overwrite"
                 if os.path.abspath(path) != os.path.abspath(previous) and _readable(previous)
                 else "start afresh with --overwrite")
        raise ConfigError(f"Field `run_dir` holds an unreadable checkpoint {path!r} "
                          f"({type(err).__name__}: {err}); {offer}.") from None


def _readable(path: str) -> bool:
    try:
        read_checkpoint_state(path, verify=True)
        return True
    except ConfigError:
        return False


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (tells a live holder from a reused pid), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else fields[19]
    except (OSError, IndexError):
        return None


class RunDir:
    """One run's directory: file paths and the lock.

    Args:
      path: the directory (created when the lock is taken).
    """

    def __init__(self, path: str):
        self.path = path
        self._locked = False

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- the lock ------------------------------------------------------------
    def holder(self) -> dict | None:
        """The live job holding the lock, or None (no lock, or a stale one)."""
        try:
            with open(self.file(LOCK)) as f:
                info = json.load(f)
        except (OSError, ValueError):
            return None
        if info.get("host") != socket.gethostname():
            return info                       # cannot look at another host's processes
        start = _start_time(int(info.get("pid", -1)))
        return info if start is not None and start == info.get("start_time") else None

    def check_unlocked(self, other_hosts: bool = True) -> None:
        """ConfigError naming the holder if a live job holds this run directory.

        With `other_hosts=False` a lock taken on another host is left alone: this host
        cannot see that host's processes (a many-host job's launcher), and rank 0 judges
        it when it takes the lock on its own host.
        """
        info = self.holder()
        if info is not None and not other_hosts and info.get("host") != socket.gethostname():
            return
        if info is not None and not (info.get("host") == socket.gethostname()
                                     and info.get("pid") == os.getpid()):
            raise ConfigError(
                f"Field `run_dir` is in use by another job (host {info.get('host')}, pid "
                f"{info.get('pid')}, since {info.get('since')}): wait for it, stop it, or "
                f"choose another --run_dir (if that job is gone, delete {self.file(LOCK)}). "
                f"Received: run_dir={self.path!r}")

    def lock(self) -> str | None:
        """Takes the lock (atomically); returns a note if a stale lock was taken over."""
        os.makedirs(self.path, exist_ok=True)
        note = None
        for _ in range(3):
            self.check_unlocked()
            try:
                fd = os.open(self.file(LOCK), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self.check_unlocked()             # a live holder: refused here
                try:
                    with open(self.file(LOCK)) as f:
                        stale = json.load(f)
                except (OSError, ValueError):
                    stale = {}
                note = (f"took over the stale lock of a job that is gone (host "
                        f"{stale.get('host')}, pid {stale.get('pid')})")
                try:
                    os.unlink(self.file(LOCK))
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                           "start_time": _start_time(os.getpid()),
                           "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f)
            self._locked = True
            return note
        self.check_unlocked()
        raise ConfigError(f"Field `run_dir` could not be locked. Received: run_dir={self.path!r}")

    def check_can_start(self, resume: bool, overwrite: bool) -> None:
        """ConfigError unless a job may start here: unlocked, and an earlier run only with
        --resume or --overwrite (cheap: the launcher calls it before any rank starts; a
        lock of another host is judged by rank 0, see check_unlocked)."""
        self.check_unlocked(other_hosts=False)
        if os.path.isfile(self.file(CHECKPOINT)) and not (resume or overwrite):
            raise ConfigError(f"Run directory {self.path!r} already holds a run: pass --resume "
                              "to continue it or --overwrite to replace it.")
        if resume:
            read_checkpoint_state(self.file(CHECKPOINT), verify=True)

    def unlock(self) -> None:
        if self._locked:
            self._locked = False
            try:
                os.unlink(self.file(LOCK))
            except FileNotFoundError:
                pass
