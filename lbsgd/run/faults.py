"""Failing loudly: divergence, stalled ranks and the job's exit codes (trust for long runs of both papers).

Large-batch recipes push the learning rate to its edge (Codreanu et al. IV-D,
V-C: linear scaling to 6.4, warmup; Lee et al. III-D: the LR doubles with the
batch), so a run that diverges must stop at once, keep its last finite
checkpoint and say so; and a job whose rank stops answering must end instead of
waiting forever in an allreduce.

* :class:`DivergenceGuard` (Keras callback): stops every rank at the first
  optimizer step whose averaged gradient is not finite (the flag comes from
  the averaged gradient, identical on every rank, so all ranks stop at the
  same step without another collective), or at an epoch whose global loss or
  weights are not finite, raising :class:`TrainingDiverged` before the
  epoch's checkpoint is written.
* :class:`StallWatchdog` (Keras callback with a thread): ends this rank with
  exit code :data:`EXIT_STALLED` when training makes no progress for
  `timeout` seconds past the slowest step seen (env `LBSGD_STALL_TIMEOUT`,
  default 120 s), naming the ranks on this host that stopped answering.
* Exit codes of lbsgd's commands: :data:`EXIT_USAGE` (bad config, data or run
  directory, before any training), :data:`EXIT_DIVERGED`, :data:`EXIT_STALLED`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import threading
import time

import keras
import numpy as np

EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_STALLED = 4
DEFAULT_STALL_TIMEOUT = 120.0


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite gradient, loss or weight.

    Attributes:
      epoch: 1-based epoch in which it happened.
      step: 1-based optimizer step (0 when only the epoch is known).
      learning_rate: the LR at that step.
      what: what was non-finite ("averaged gradient", "loss", "val_loss", "weights").
    """

    def __init__(self, epoch: int, step: int, learning_rate: float, what: str):
        self.epoch, self.step, self.learning_rate, self.what = epoch, step, learning_rate, what
        where = f"epoch {epoch}, step {step}" if step else f"epoch {epoch}"
        super().__init__(f"training diverged at {where} (learning rate {learning_rate:.6g}): "
                         f"non-finite {what}")

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "learning_rate": self.learning_rate,
                "what": self.what}


def _learning_rate_at(optimizer, step: int) -> float:
    lr = optimizer._learning_rate if hasattr(optimizer, "_learning_rate") else None
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(keras.ops.convert_to_numpy(lr(step)))
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class DivergenceGuard(keras.callbacks.Callback):
    """Raises TrainingDiverged at the first non-finite averaged gradient, loss or weight.

    Reads the `nonfinite_step` variable of lbsgd.parallel.DistributedOptimizer
    after every batch (set inside the train step from the averaged gradient,
    so it is the same on every rank) and, at each epoch end, the global
    `loss`/`val_loss` and the weights. Put it before every callback that
    writes files (checkpoints, snapshots, history), so a diverged epoch
    leaves nothing behind.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        flag = getattr(self.model.optimizer, "nonfinite_step", None)
        if flag is None:
            return
        step = int(keras.ops.convert_to_numpy(flag))
        if step >= 0:
            raise TrainingDiverged(getattr(self, "_epoch", 0) + 1, step + 1,
                                   _learning_rate_at(self.model.optimizer, step),
                                   "averaged gradient")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        optimizer = self.model.optimizer
        step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        for key in ("loss", "val_loss"):
            value = logs.get(key)
            if value is not None and not math.isfinite(float(value)):
                raise TrainingDiverged(epoch + 1, 0, _learning_rate_at(optimizer, step), key)
        for v in self.model.trainable_variables:
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(v.value))):
                raise TrainingDiverged(epoch + 1, 0, _learning_rate_at(optimizer, step),
                                       f"weights ({v.path})")


# --------------------------------------------------------------------------
# Stalled ranks.
# --------------------------------------------------------------------------

def stall_timeout() -> float:
    """Seconds without progress before a rank gives up (env LBSGD_STALL_TIMEOUT, default 120)."""
    text = os.environ.get("LBSGD_STALL_TIMEOUT", "")
    try:
        value = float(text) if text else DEFAULT_STALL_TIMEOUT
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError("Environment variable `LBSGD_STALL_TIMEOUT` must be a number of "
                         f"seconds > 0. Received: LBSGD_STALL_TIMEOUT={text!r}")
    return value


def job_key() -> str:
    """A name shared by the ranks of one job (launch/run.sh's LBSGD_JOB_ID, else MPI's or
    Gloo's job), for heartbeat files."""
    from lbsgd.launcher import plan as launch

    env = os.environ
    for key in ("LBSGD_JOB_ID", "PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid"):
        if env.get(key):
            return launch.job_key(env[key])
    if env.get("HOROVOD_GLOO_RENDEZVOUS_PORT"):
        return f"gloo{env.get('HOROVOD_GLOO_RENDEZVOUS_PORT')}"
    return f"pid{os.getpid()}"


def _process_state(pid: int) -> str | None:
    """One-letter /proc state of `pid` (R, S, D, T stopped, Z zombie), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def heartbeat_directory() -> str:
    """This host's heartbeat directory of this job. Named by the host too: hosts that share
    /dev/shm (containers, or launch/cluster.sh's namespace hosts) keep theirs apart."""
    from lbsgd.launcher import plan as launch

    host = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())
    return launch.heartbeat_prefix(job_key()) + host


class StallWatchdog(keras.callbacks.Callback):
    """Ends this rank when training makes no progress for `timeout` s past the slowest step.

    Every batch, validation batch and epoch end counts as progress; it also
    writes a small heartbeat file per rank in a directory shared by the
    ranks of this host, so the rank that gives up can name the ranks on its
    host that stopped (SIGSTOP: state T), died, or stopped beating. It is
    armed after the first batch of each `fit` (tracing the step is not
    progress) and disarmed at the end of `fit`. On a stall it prints one line
    to stderr and exits the process with EXIT_STALLED; mpirun then ends the
    other ranks.
    """

    def __init__(self, rank: int, size: int, timeout: float | None = None,
                 heartbeat_dir: str | None = None, exit=os._exit):
        super().__init__()
        self.rank, self.size = int(rank), int(size)
        self.timeout = stall_timeout() if timeout is None else float(timeout)
        self.heartbeat_dir = heartbeat_dir or heartbeat_directory()
        self._exit = exit
        self._lock = threading.Lock()
        self._armed = False
        self._last = time.monotonic()
        self._slowest = 0.0
        self._where = "start"
        self._beat_written = 0.0
        self._thread = None

    # -- progress ----------------------------------------------------------
    def _progress(self, where: str):
        now = time.monotonic()
        with self._lock:
            if self._armed:
                self._slowest = max(self._slowest, now - self._last)
            self._last, self._where = now, where
        if now - self._beat_written >= 1.0:
            self._beat_written = now
            self._write_heartbeat(where)

    def _write_heartbeat(self, where: str):
        try:
            os.makedirs(self.heartbeat_dir, exist_ok=True)
            path = os.path.join(self.heartbeat_dir, f"rank{self.rank}.json")
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump({"rank": self.rank, "pid": os.getpid(), "time": time.time(),
                           "where": where}, f)
            os.replace(tmp, path)
        except OSError:
            pass  # heartbeats only help name a stalled rank; never fail training for them

    def on_train_begin(self, logs=None):
        self._epoch, self._first = 0, True
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="lbsgd-stall-watchdog",
                                            daemon=True)
            self._thread.start()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        where = f"epoch {self._epoch + 1} step {batch + 1}"
        if self._first:
            self._first = False
            with self._lock:
                self._armed, self._last = True, time.monotonic()
        self._progress(where)

    def on_test_batch_end(self, batch, logs=None):
        self._progress(f"epoch {self._epoch + 1} validation batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._progress(f"end of epoch {epoch + 1}")

    def on_train_end(self, logs=None):
        with self._lock:
            self._armed = False
        try:
            os.unlink(os.path.join(self.heartbeat_dir, f"rank{self.rank}.json"))
            os.rmdir(self.heartbeat_dir)
        except OSError:
            pass

    # -- the watcher ---------------------------------------------------------
    def _watch(self):
        while True:
            time.sleep(min(1.0, self.timeout / 10))
            with self._lock:
                idle = time.monotonic() - self._last
                limit = self.timeout + self._slowest
                fire = self._armed and idle > limit
                where = self._where
            if fire:
                print(self.report(idle, where), file=sys.stderr, flush=True)
                self._exit(EXIT_STALLED)
                return

    def stalled_peers(self) -> list[str]:
        """Ranks on this host that stopped: 'rank R (pid P, stopped|gone|no heartbeat for S s)'."""
        found = []
        try:
            names = sorted(os.listdir(self.heartbeat_dir))
        except OSError:
            return found
        for name in names:
            if not (name.startswith("rank") and name.endswith(".json")):
                continue
            try:
                with open(os.path.join(self.heartbeat_dir, name)) as f:
                    beat = json.load(f)
            except (OSError, ValueError):
                continue
            if beat["rank"] == self.rank:
                continue
            state = _process_state(int(beat["pid"]))
            if state is None:
                found.append(f"rank {beat['rank']} (pid {beat['pid']}, gone)")
            elif state in ("T", "t"):
                found.append(f"rank {beat['rank']} (pid {beat['pid']}, stopped)")
            elif state == "Z":
                found.append(f"rank {beat['rank']} (pid {beat['pid']}, exited)")
        return found

    def report(self, idle: float, where: str) -> str:
        peers = self.stalled_peers()
        named = (f"stalled: {', '.join(peers)}" if peers else
                 "no rank on this host is stopped; the stalled rank is on another host "
                 "(Horovod's stall warning on rank 0 lists it)" if self.size > 1 else
                 "this is the only rank")
        return (f"lbsgd: error: rank {self.rank} on {socket.gethostname()} made no progress for "
                f"{idle:.0f} s after {where} (limit {self.timeout:g} s + slowest step "
                f"{self._slowest:.1f} s; LBSGD_STALL_TIMEOUT); {named}. Ending the job.")
