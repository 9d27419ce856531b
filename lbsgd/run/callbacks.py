"""Run bookkeeping callbacks: per-epoch history, time-to-accuracy, convergence stop, checkpoints.

Serves Codreanu et al. Section V (time per epoch, images/s, time-to-accuracy,
Tables II-IV and XII) and Lee et al. VI-A (training to convergence) for any
Keras `fit`. Each callback publishes what it
measures in the epoch `logs` so History, CSV and TensorBoard see it; only
rank 0 writes files. Callbacks that carry state across epochs implement
`get_state()` / `set_state()` so a checkpoint restores them exactly.
lbsgd.model.precise_bn.PreciseBN (BN statistics recomputed before evaluation) is
re-exported here, so a script finds the run callbacks in one place.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time

import keras

from lbsgd.run import checkpoint as ckpt
from lbsgd.run import rundir
from lbsgd.run.state import RunState
from lbsgd.parallel import runtime
from lbsgd.model.precise_bn import PreciseBN  # noqa: F401  (re-exported)

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                   "learning_rate", "weight_decay", "augment", "batch_size", "steps", "ranks",
                   "collective_calls", "theta", "phase", "cycle",
                   "epoch_seconds", "images_per_second", "elapsed_seconds")


def current_learning_rate(optimizer) -> float:
    """The optimizer's learning rate at its current step (schedule evaluated)."""
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))


def current_weight_decay(optimizer) -> float:
    """The L2 coefficient lbsgd's optimizer applies (0 if none)."""
    wd = getattr(optimizer, "l2_weight_decay", None)
    if wd is None:
        return float(getattr(optimizer, "weight_decay", None) or 0.0)
    return float(keras.ops.convert_to_numpy(wd))


class RunLogger(keras.callbacks.Callback):
    """Adds epoch time, throughput, LR, weight decay, batch size and phase to the logs.

    Keeps one row per finished epoch (1-based `epoch`) and, on rank 0, writes
    them to `history_path` atomically after every epoch. Text values (e.g. a
    phase callback's `logs["phase"]`) are recorded in the row and removed
    from the logs, which Keras' progress bar can only average as numbers.

    Args:
      global_batch: samples per optimizer step over all ranks (a callback
        that changes it publishes `logs["batch_size"]`).
      steps_per_epoch: optimizer steps per epoch (or `logs["steps"]`).
      history_path: CSV to write on rank 0 (None: keep rows in memory only).
      world_size: the job's ranks, recorded per epoch as `ranks` (None: not recorded).
    """

    state_key = "run_logger"

    def __init__(self, global_batch: int, steps_per_epoch: int, history_path: str | None = None,
                 world_size: int | None = None):
        super().__init__()
        self.world_size = world_size
        self.global_batch = int(global_batch)
        self.steps_per_epoch = int(steps_per_epoch)
        self.history_path = history_path
        self.rows: list[dict] = []
        self.elapsed_seconds = 0.0

    # -- state --------------------------------------------------------------
    def get_state(self):
        return {"rows": self.rows, "elapsed_seconds": self.elapsed_seconds}

    def set_state(self, state):
        self.rows = [dict(r) for r in state["rows"]]
        self.elapsed_seconds = float(state["elapsed_seconds"])

    # -- hooks ----------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._t_train_end = None
        self._calls0 = self._collective_calls()

    def _collective_calls(self):
        calls = getattr(self.model.optimizer, "collective_calls", None)
        return None if calls is None else int(keras.ops.convert_to_numpy(calls))

    def on_test_begin(self, logs=None):
        if getattr(self, "_t_train_end", 0) is None:
            self._t_train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        now = time.perf_counter()
        epoch_seconds = now - self._t0
        train_seconds = (self._t_train_end or now) - self._t0
        batch = int(logs.get("batch_size", self.global_batch))
        steps = int(logs.get("steps", self.steps_per_epoch))
        self.elapsed_seconds += epoch_seconds
        logs.setdefault("learning_rate", current_learning_rate(self.model.optimizer))
        logs.setdefault("weight_decay", current_weight_decay(self.model.optimizer))
        logs["batch_size"] = batch
        logs["steps"] = steps
        if self.world_size is not None:
            logs["ranks"] = self.world_size
        logs.setdefault("phase", "main")
        calls = self._collective_calls()
        if calls is not None and self._calls0 is not None:
            logs["collective_calls"] = calls - self._calls0
        logs["epoch_seconds"] = epoch_seconds
        logs["images_per_second"] = batch * steps / max(train_seconds, 1e-9)
        logs["elapsed_seconds"] = self.elapsed_seconds
        row = {"epoch": epoch + 1}
        row.update({k: (v if isinstance(v, str) else float(v)) for k, v in logs.items()})
        # Keras' progress bar and History average numbers only: text such as
        # `phase` lives in the history rows, not in the logs passed on.
        for key in [k for k, v in logs.items() if isinstance(v, str)]:
            del logs[key]
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [row]
        self.write_history()

    def write_history(self):
        if self.history_path and runtime.current().is_chief:
            ckpt.atomic_write_text(self.history_path, history_csv(self.rows))


def history_csv(rows) -> str:
    """CSV text of history rows: the standard columns first, then any others."""
    extra = sorted({k for r in rows for k in r} - set(HISTORY_COLUMNS))
    columns = list(HISTORY_COLUMNS) + extra
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _fmt(r.get(k, "")) for k in columns})
    return buf.getvalue()


def _fmt(value):
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return value


class TimeToAccuracy(keras.callbacks.Callback):
    """Records the first epoch and wall time at which a validation metric reaches each target.

    Reads `logs[monitor]` and `logs["elapsed_seconds"]` (from RunLogger,
    which must run before it). Publishes nothing per epoch; `reached` maps
    each target to {"epoch", "seconds"} (or None while unreached).
    """

    state_key = "time_to_accuracy"

    def __init__(self, targets, monitor: str = "val_accuracy"):
        super().__init__()
        self.targets = sorted(float(t) for t in targets)
        self.monitor = monitor
        self.reached = {f"{t:g}": None for t in self.targets}

    def get_state(self):
        return {"reached": self.reached}

    def set_state(self, state):
        self.reached = dict(state["reached"])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        for t in self.targets:
            key = f"{t:g}"
            if self.reached[key] is None and value >= t:
                self.reached[key] = {"epoch": epoch + 1,
                                     "seconds": float(logs.get("elapsed_seconds", 0.0))}


class Checkpointer(keras.callbacks.Callback):
    """Writes an exact-resume checkpoint on rank 0 after every epoch (atomic).

    The checkpoint holds all model and optimizer variables (so the step, and
    with it every schedule, resumes exactly) and the state of each stateful
    callback in `stateful`, keyed by their `state_key`. Put it after the
    callbacks whose state it saves.
    """

    def __init__(self, path: str, stateful=(), extra_state=None):
        super().__init__()
        self.path = path
        self.stateful = list(stateful)
        self.extra_state = extra_state or (lambda: {})
        keys = [cb.state_key for cb in self.stateful]
        if len(set(keys)) != len(keys):
            raise ValueError(f"Argument `stateful` must hold one callback per state_key. "
                             f"Received state keys: {keys}")

    def state(self, epochs_done: int) -> RunState:
        """The run state after `epochs_done` epochs (`extra_state()` gives world_size, config_file)."""
        return RunState(epochs_done=int(epochs_done),
                        callbacks={cb.state_key: cb.get_state() for cb in self.stateful},
                        **self.extra_state())

    def on_epoch_end(self, epoch, logs=None):
        if runtime.current().is_chief:
            ckpt.save(self.path, self.model, self.state(epoch + 1).to_dict(),
                      keep_previous=os.path.join(os.path.dirname(self.path),
                                                 rundir.PREVIOUS_CHECKPOINT))

    def restore(self, model, state: RunState, load_variables: bool = True) -> int:
        """Restores the callbacks from `state` (and the variables from the file).

        In a job only rank 0 loads the variables; BroadcastGlobalVariables
        hands them to the other ranks when training begins. Returns the
        number of epochs done.
        """
        if load_variables:
            ckpt.load(self.path, model)
        for cb in self.stateful:
            cb.set_state(state.callback(cb.state_key))
        return state.epochs_done
class ConvergenceStop(keras.callbacks.Callback):
    """Stops when `monitor` has not improved by `min_delta` for `patience` epochs.

    Lee et al. VI-A: validation PSNR not up by 0.1 dB over 50 epochs. Records
    `converged_epoch` (the epoch of the best value) for the summary; its
    state survives resume.
    """

    state_key = "convergence"

    def __init__(self, monitor: str, min_delta: float, patience: int, mode: str = "max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"Argument `mode` must be 'max' or 'min'. Received: mode={mode!r}")
        self.monitor, self.min_delta, self.patience, self.mode = monitor, min_delta, patience, mode
        self.best, self.best_epoch, self.wait, self.stopped_epoch = None, None, 0, None

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch}

    def set_state(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.best_epoch, self.wait = float(value), epoch + 1, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True


def tensorboard_installed() -> bool:
    """Whether tf.summary can write (the tensorboard package; TF >= 2.20 does not bring it)."""
    import importlib.util
    return importlib.util.find_spec("tensorboard") is not None


class RunTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard logs of a run: every epoch's logs, the LR of every step, the phase.

    Keras' own callback writes the epoch logs as it always does (`train/` and
    `validation/` under `log_dir`, step = the 0-based epoch): loss, accuracy,
    the validation metrics and everything lbsgd's callbacks publish before it
    (learning_rate, weight_decay, batch_size, steps, theta, cycle,
    images_per_second, ...). This adds `step_learning_rate` at every optimizer
    step of the epoch (the schedule's value at that step, step = the
    optimizer's iteration) and the epoch's `phase` as text, then flushes.

    Place it after Checkpointer (lbsgd.run.trainer.CALLBACK_ORDER): an epoch is
    logged once the checkpoint holds it, so a resumed run never writes a step
    twice. A job killed between the two leaves the epoch out of the logs; the
    resumed run writes the epochs its checkpoint holds and the logs lack from
    the history rows (`rows`) before it trains, so every epoch has one value.
    Rank 0 only: give it to rank 0's fit.

    Args:
      log_dir: the logs' directory (a run's `tensorboard/`).
      rows: callable() -> the run's history rows so far (RunLogger.rows: 1-based
        `epoch`, the epoch's logs, `phase`).
    """

    def __init__(self, log_dir: str, rows=None):
        super().__init__(log_dir=log_dir, write_graph=False, update_freq="epoch")
        self.rows = rows or (lambda: [])
        self._filled = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if not self._filled:           # once per run, before its first epoch
            self._filled = True
            self._write_missing_epochs()

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._first_step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        last = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        rows = self.rows()
        self._write_steps(self._first_step, last, epoch, rows[-1] if rows else {})
        self._flush()

    def _write_steps(self, first: int, last: int, epoch: int, row: dict) -> None:
        rates = step_learning_rates(self.model.optimizer, first, last,
                                    fallback=row.get("learning_rate"))
        with self._train_writer.as_default():
            for step, lr in zip(range(first, last), rates):
                self.summary.scalar("step_learning_rate", lr, step=step)
            if "phase" in row:
                self.summary.text("phase", str(row["phase"]), step=epoch)

    def _flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def _write_missing_epochs(self) -> None:
        """The epochs the history holds that the logs on disk lack (a kill between the
        checkpoint and these logs), written from the history rows."""
        rows = self.rows()
        if not rows:                   # a fresh run: nothing to look for
            return
        logged = logged_epochs(self._train_dir, "epoch_loss")
        step = 0
        for row in rows:
            epoch, steps = int(row["epoch"]) - 1, int(row.get("steps", 0))
            if epoch not in logged:
                numbers = {k: float(v) for k, v in row.items()
                           if k != "epoch" and isinstance(v, (int, float))}
                for writer, keep in ((self._train_writer, lambda k: not k.startswith("val_")),
                                     (self._val_writer, lambda k: k.startswith("val_"))):
                    with writer.as_default():
                        for name, value in numbers.items():
                            if keep(name):
                                name = name[4:] if name.startswith("val_") else name
                                self.summary.scalar(f"epoch_{name}", value, step=epoch)
                self._write_steps(step, step + steps, epoch, row)
            step += steps
        self._flush()


def logged_epochs(directory: str, tag: str) -> set[int]:
    """The steps at which the TensorBoard event files in `directory` hold `tag`."""
    import glob

    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    found = set()
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        try:
            for record in tf.data.TFRecordDataset(path):
                event = event_pb2.Event.FromString(record.numpy())
                if any(v.tag == tag for v in event.summary.value):
                    found.add(int(event.step))
        except tf.errors.DataLossError:     # a file cut short by a kill: what it holds counts
            continue
    return found


def step_learning_rates(optimizer, first: int, last: int, fallback=None) -> list[float]:
    """The learning rate `optimizer` applies at each step in [first, last): its schedule's
    values, or for a plain learning rate (the adaptive batch's, set per epoch) `fallback`
    if given, else the current value, at every step."""
    import numpy as np

    lr = getattr(optimizer, "_learning_rate", None)
    schedule = keras.optimizers.schedules.LearningRateSchedule
    if not isinstance(lr, schedule):
        value = current_learning_rate(optimizer) if fallback is None else float(fallback)
        return [value] * max(0, last - first)
    steps = np.arange(first, last, dtype=np.int64)
    values = np.asarray(keras.ops.convert_to_numpy(lr(steps)), dtype=np.float64)
    if values.shape != steps.shape:         # a schedule written for one step at a time
        values = np.array([float(keras.ops.convert_to_numpy(lr(int(s)))) for s in steps])
    return values.tolist()


def make_summary(cfg, rows, reached, rt, num_train) -> dict:
    """summary.json: final metrics, time, throughput, ranks and time-to-accuracy."""
    last = rows[-1] if rows else {}
    train_seconds = sum(r["batch_size"] * r["steps"] / r["images_per_second"]
                        for r in rows if r.get("images_per_second"))
    images = sum(r["batch_size"] * r["steps"] for r in rows)
    return {
        "name": cfg.name,
        "epochs": len(rows),
        "num_ranks": rt.size,
        "threads_per_rank": rt.intra_op_threads,
        "global_batch": cfg.batch_size,
        "num_train_examples": num_train,
        "final": {k: last.get(k) for k in ("loss", "accuracy", "val_loss", "val_accuracy",
                                           "psnr", "val_psnr") if k in last},
        "best": {cfg.monitor: max((r[cfg.monitor] for r in rows if cfg.monitor in r),
                                  default=None)},
        "optimizer_steps": int(sum(r["steps"] for r in rows)),
        "total_seconds": last.get("elapsed_seconds", 0.0),
        "train_seconds": train_seconds,
        "images_per_second": images / train_seconds if train_seconds else None,
        "time_to_accuracy": reached,
    }
