"""Rank 0's console: Keras-style progress lines with integers as integers, and the run's summary.

Keras' own progress bar averages every log value as a float and prints it
with four decimals or in e-notation, so lbsgd's per-epoch logs read
`batch_size: 64.0000`, `steps: 22.0000`, `cycle: -1.0000e+00`.
:class:`EpochProgress` prints the same one line per epoch as
`model.fit(verbose=2)` — `22/22 - 8s - 363ms/step - accuracy: 0.4822 - ...`
— but formats each value by what it is (:func:`format_log_value`): counts and
flags as integers, metrics to four decimals, small or large values to four
significant digits. It prints on rank 0 only, so every rank is wired the
same way:

    model.fit(..., verbose=0,
              callbacks=[*lbsgd.parallel.callbacks(), ..., RunLogger(...),
                         ..., lbsgd.run.console.EpochProgress()])   # last: it prints the logs
                                                                 # the others have published
"""

from __future__ import annotations

import math
import os
import sys
import time

import keras
import numpy as np

# Log keys whose values are counts or flags: printed as integers when they are whole.
INTEGER_KEYS = frozenset({"batch_size", "steps", "ranks", "collective_calls", "K", "cycle",
                          "augment", "epoch", "epochs", "phase_index", "precise_bn_batches"})
# Log keys printed with a fixed format instead of the default.
KEY_FORMATS = {"images_per_second": "{:.1f}", "epoch_seconds": "{:.1f}",
               "elapsed_seconds": "{:.1f}"}
# Not shown by default: the line already starts with the epoch's time.
HIDDEN_KEYS = ("epoch_seconds", "elapsed_seconds")
# launch/run.sh exports 1 when the user's screen is a terminal, else 0 (under mpirun a
# rank's own stdout is a pty either way, so it cannot ask).
TTY_ENV = "LBSGD_CONSOLE_TTY"


def format_log_value(key: str, value) -> str:
    """A log value as the progress line shows it.

    Integers (and whole values of INTEGER_KEYS) as integers; bools as 0/1;
    zero and values in [0.001, 1e5) to four decimals (Keras' metric format);
    anything else to four significant digits (`5e-05`, `1.235e+06`); text as is.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        v = float(np.asarray(value))
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return str(v)
    if key in INTEGER_KEYS and v.is_integer():
        return str(int(v))
    if key in KEY_FORMATS:
        return KEY_FORMATS[key].format(v)
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.4f}"
    return f"{v:.4g}"


def _format_duration(seconds: float, unit: str) -> str:
    """Keras' time-per-unit format: `2s/step`, `363ms/step`, `850us/step`."""
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/{unit}"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/{unit}"
    return f"{seconds * 1e6:.0f}us/{unit}"


def format_epoch_line(step: int, steps: int | None, seconds: float, seconds_per_step: float,
                      logs: dict, hidden=HIDDEN_KEYS) -> str:
    """`22/22 - 8s - 363ms/step - loss: 1.8059 - batch_size: 64` (no newline)."""
    count = f"{step}/{steps}" if steps else f"{step}"
    if steps:
        count = count.rjust(2 * len(str(steps)) + 1)
    parts = [count, f"{seconds:.0f}s", _format_duration(seconds_per_step, "step")]
    parts += [f"{k}: {format_log_value(k, v)}" for k, v in logs.items() if k not in hidden]
    return " - ".join(parts)


class EpochProgress(keras.callbacks.Callback):
    """Keras-style progress for the chief rank: `Epoch i/N`, then one line per epoch.

    Replaces Keras' own progress output (pass `verbose=0` to `model.fit`).
    Put it last in the callback list: it prints the epoch logs as the
    callbacks before it left them (global metrics, learning_rate, batch_size,
    ...). When the user's screen is a terminal (launch/run.sh exports
    LBSGD_CONSOLE_TTY=1 or 0; a process outside horovodrun asks its stdout)
    the line is also redrawn during the epoch.

    Args:
      hidden: log keys not shown (default: the epoch and elapsed seconds,
        which the line's time already gives).
      live: redraw a step counter during the epoch (None: when on a terminal).
      interval: seconds between live redraws.
      stream: text stream to write to (default: sys.stdout at each write).
      chief_only: print on rank 0 only (lbsgd.parallel.runtime); other ranks stay silent.
    """

    def __init__(self, hidden=HIDDEN_KEYS, live: bool | None = None, interval: float = 0.5,
                 stream=None, chief_only: bool = True):
        super().__init__()
        self.hidden = tuple(hidden)
        self.live = live
        self.interval = float(interval)
        self.stream = stream
        self.chief_only = chief_only

    def _enabled(self) -> bool:
        if not self.chief_only:
            return True
        from lbsgd.parallel import runtime
        return runtime.current().is_chief

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stdout
        stream.write(text)   # one write per line: a tagging launcher never splits it
        stream.flush()

    def _is_live(self) -> bool:
        if self.live is not None:
            return self.live
        if os.environ.get(TTY_ENV) in ("0", "1"):
            return os.environ[TTY_ENV] == "1"
        if any(k in os.environ for k in ("OMPI_COMM_WORLD_SIZE", "HOROVOD_RANK", "PMI_RANK")):
            return False   # mpirun gives ranks a pty whatever the user's screen is
        stream = self.stream or sys.stdout
        return hasattr(stream, "isatty") and stream.isatty()

    def on_train_begin(self, logs=None):
        self._on = self._enabled()
        self._live = self._on and self._is_live()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._t_first = self._t_last = None
        self._seen = 0
        self._drawn = 0.0
        self._width = 0
        if self._on:
            self._write(f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}\n")

    def on_train_batch_end(self, batch, logs=None):
        if not self._on:
            return
        now = time.perf_counter()
        self._seen = batch + 1
        if self._t_first is None:
            self._t_first = now
        self._t_last = now
        if self._live and now - self._drawn >= self.interval:
            self._drawn = now
            self._redraw(format_epoch_line(self._seen, self.params.get("steps"), now - self._t0,
                                           self._per_step(now), logs or {}, self.hidden))

    def _per_step(self, now: float) -> float:
        if self._seen > 1 and self._t_first is not None:
            return (self._t_last - self._t_first) / (self._seen - 1)
        return (now - self._t0) / max(self._seen, 1)

    def _redraw(self, line: str) -> None:
        pad = " " * max(0, self._width - len(line))
        self._width = len(line)
        self._write(f"\r{line}{pad}")

    def on_epoch_end(self, epoch, logs=None):
        if not self._on:
            return
        now = time.perf_counter()
        steps = self.params.get("steps") or self._seen
        line = format_epoch_line(self._seen or steps, steps, now - self._t0, self._per_step(now),
                                 logs or {}, self.hidden)
        if self._live:
            self._redraw(line)
            self._write("\n")
        else:
            self._write(line + "\n")


def summary_line(name: str, summary: dict, monitor: str, run_dir: str) -> str:
    """The train command's last line: epochs, ranks, time, final metric (rounded), images/s."""
    final = summary.get("final", {}).get(monitor)
    shown = "n/a" if final is None else format_log_value(monitor, final)
    return (f"lbsgd.train: {name}: {summary['epochs']} epochs on {summary['num_ranks']} ranks "
            f"in {summary['total_seconds']:.1f} s, {monitor} {shown}, "
            f"{summary.get('images_per_second') or 0:.1f} images/s; run directory {run_dir}")


def print_line(text: str, stream=None) -> None:
    """Writes `text` and its newline in one write (a tagging launcher cannot split it)."""
    stream = stream or sys.stdout
    stream.write(text + "\n")
    stream.flush()
