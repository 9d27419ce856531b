"""The run directory: every file name, the atomic writers, the lock and the start/resume decision.

A run of either paper's recipe is hours of work kept in one directory
(Codreanu et al. V: time-to-accuracy per run; Lee et al. VI: runs to
convergence); two jobs writing into it would mix their checkpoints and
histories. :class:`RunDir` names every file a run writes, decides whether a
job starts afresh, resumes or is refused, and holds the lock: `run.lock`
records the holder's host, pid and process start time; a second job is
refused naming the holder, and a lock whose process is gone (a killed job)
is recognised as stale and taken over. Every file is written atomically
(:func:`atomic_write_bytes`): a reader sees the old file or the new one.
No TensorFlow here: the launcher uses this module before any rank starts.
"""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import time

from lbsgd.errors import ConfigError
from lbsgd.run.state import RunState

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
SNAPSHOTS = "snapshots"                 # a directory: epoch_NNNN.npz and index.json
SNAPSHOT_INDEX = "index.json"
MODEL = "model.keras"                   # the trained network, Keras' format (lbsgd.model.export)
ENSEMBLE_MODEL = "ensemble.keras"       # the collapsed ensemble as one Keras model
TENSORBOARD = "tensorboard"             # a directory: Keras TensorBoard logs (train/, validation/)
RUN_FILES = (CONFIG, HISTORY, CHECKPOINT, PREVIOUS_CHECKPOINT, SUMMARY, ENSEMBLE,
             THETA_REFERENCE, RESUMES, MODEL, ENSEMBLE_MODEL)


# --------------------------------------------------------------------------
# Atomic writers.
# --------------------------------------------------------------------------

def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` so readers see the old file or the new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())     # mkstemp makes 0600; run files follow the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_file(path: str, write, suffix: str = "") -> None:
    """`write(tmp)` writes a temporary file beside `path` (named `suffix`-last, for writers
    that check the extension), which then replaces `path`: readers see the old file or the
    new one, never a part; the file follows the umask."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=suffix,
                               dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(directory: str, bases=RUN_FILES) -> None:
    """Deletes temporary files a killed writer left in `directory` (never complete files).

    Only temporaries of the files named in `bases`; `bases=None`: every hidden
    file (a directory only lbsgd writes, such as snapshots/).
    """
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if name.startswith(".") and (bases is None or any(
                name.startswith(f".{base}.") for base in bases)):
            os.unlink(os.path.join(directory, name))


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def strict_json(obj):
    """`obj` with every non-finite float replaced by None (so json.dumps gives strict JSON)."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def atomic_write_json(path: str, obj) -> None:
    """Writes strict JSON (non-finite numbers become null), atomically."""
    atomic_write_text(path, json.dumps(strict_json(obj), indent=2, sort_keys=True,
                                       allow_nan=False) + "\n")


def atomic_write_arrays(path: str, arrays: dict) -> None:
    """Writes named numpy arrays as one .npz, atomically."""
    buf = io.BytesIO()
    import numpy as np
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())



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


def read_run_state(path: str, verify: bool = False) -> RunState:
    """The run-state record of the checkpoint at `path` (the one reader; see lbsgd.run.state)."""
    return RunState.from_dict(read_checkpoint_state(path, verify=verify), path)


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

    # -- the files -----------------------------------------------------------
    config = property(lambda self: self.file(CONFIG))
    history = property(lambda self: self.file(HISTORY))
    checkpoint = property(lambda self: self.file(CHECKPOINT))
    previous_checkpoint = property(lambda self: self.file(PREVIOUS_CHECKPOINT))
    summary = property(lambda self: self.file(SUMMARY))
    ensemble = property(lambda self: self.file(ENSEMBLE))
    theta_reference = property(lambda self: self.file(THETA_REFERENCE))
    resumes = property(lambda self: self.file(RESUMES))
    snapshots = property(lambda self: self.file(SNAPSHOTS))
    model = property(lambda self: self.file(MODEL))
    ensemble_model = property(lambda self: self.file(ENSEMBLE_MODEL))
    tensorboard = property(lambda self: self.file(TENSORBOARD))

    def write_config(self, config_json: str) -> None:
        atomic_write_text(self.config, config_json + "\n")

    # -- the decision: start afresh, resume, or refuse -------------------------
    def decide(self, resume: bool, overwrite: bool, config_json: str,
               resume_changes: dict | None = None) -> RunState | None:
        """Prepares the directory for a job (the caller holds the lock).

        Returns the checkpoint's run state to resume from, or None for a
        fresh start (an earlier run's files are removed only with
        `overwrite`; the resolved config is written first). Raises
        ConfigError when the job may not start here.
        """
        remove_stale_temporaries(self.path)
        has_checkpoint = self._check_earlier_run(resume, overwrite)
        if resume and not has_checkpoint:
            raise ConfigError(f"Field `run_dir` must hold a run to resume (config.json and "
                              f"checkpoint.npz). Received: run_dir={self.path!r}")
        if resume:
            state = read_run_state(self.checkpoint)
            if resume_changes:       # the caller records them (record_resume)
                self.write_config(config_json)
            return state
        self.clear()
        self.write_config(config_json)
        return None

    def clear(self) -> None:
        """Removes an earlier run's files (never the lock or files lbsgd does not write)."""
        for name in RUN_FILES:
            if os.path.exists(self.file(name)):
                os.unlink(self.file(name))
        if os.path.isdir(self.snapshots):
            for name in os.listdir(self.snapshots):
                os.unlink(os.path.join(self.snapshots, name))
        if os.path.isdir(self.tensorboard):   # only what Keras' TensorBoard callback writes
            import shutil
            for name in ("train", "validation"):
                shutil.rmtree(os.path.join(self.tensorboard, name), ignore_errors=True)

    def record_resume(self, epochs_done: int, changes: dict) -> None:
        """Appends a resume's allowed config changes {field: (before, after)} to resumes.json."""
        try:
            with open(self.resumes) as f:
                log = json.load(f)
        except (OSError, ValueError):
            log = []
        log.append({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "epochs_done": epochs_done,
                    "changes": {k: {"before": b, "after": a} for k, (b, a) in changes.items()}})
        atomic_write_json(self.resumes, log)

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

    def check_can_start(self, resume: bool, overwrite: bool) -> RunState | None:
        """ConfigError unless a job may start here: unlocked, and an earlier run only with
        --resume or --overwrite (cheap: the launcher calls it before any rank starts; a
        lock of another host is judged by rank 0, see check_unlocked). With `resume`,
        returns the verified checkpoint's state."""
        self.check_unlocked(other_hosts=False)
        self._check_earlier_run(resume, overwrite)
        return read_run_state(self.checkpoint, verify=True) if resume else None

    def _check_earlier_run(self, resume: bool, overwrite: bool) -> bool:
        """Whether an earlier run is here; ConfigError if so without --resume or --overwrite."""
        has_checkpoint = os.path.isfile(self.checkpoint)
        if has_checkpoint and not (resume or overwrite):
            raise ConfigError(f"Run directory {self.path!r} already holds a run: pass --resume "
                              "to continue it or --overwrite to replace it.")
        return has_checkpoint

    def unlock(self) -> None:
        if self._locked:
            self._locked = False
            try:
                os.unlink(self.file(LOCK))
            except FileNotFoundError:
                pass
