"""Multi-rank training from a Jupyter cell: launch, stream rank 0's progress, load the results.

:func:`launch` runs `launch/run.sh -np N python -m lbsgd.train ...` (horovodrun
with lbsgd's CPU defaults) as a subprocess of the kernel, prints rank 0's
progress into the cell as it comes (the launcher strips horovodrun's rank
tags and keeps the other ranks quiet), and returns the run directory; a job
that fails raises :class:`RunFailed` with the tail of its error output (the
failing rank's included). :func:`history`, :func:`summary` and
:func:`summary_table` read what a run wrote; `lbsgd.report.plots.run_curves` and
`compare_runs` draw it. :func:`reproducible` pins what in-process training
depends on (seeds, threads, op determinism) so a notebook's numbers repeat.

    from lbsgd.report import notebook
    from lbsgd.report import plots
    run = notebook.launch("configs/digits_resnet.py", np=2, overrides={"epochs": 5})
    plots.run_curves(run)
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import selectors
import signal
import subprocess
import sys
import time

from lbsgd.run.rundir import RunDir

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "launch" / "run.sh"


class RunFailed(RuntimeError):
    """A launched job exited non-zero; the message ends with the tail of its error output.

    Attributes:
      returncode: the launcher's exit code (the job's; 2: refused before any
        rank started; 130/143: interrupted).
      stderr_tail: the last lines the job wrote to stderr (the other ranks'
        output is among them when one of them failed).
      run_dir: the run directory the job was given.
    """

    def __init__(self, command, returncode: int, stderr_tail: str, run_dir: pathlib.Path):
        self.command, self.returncode = list(command), returncode
        self.stderr_tail, self.run_dir = stderr_tail, run_dir
        super().__init__(f"{display_command(command)} exited with code {returncode}; the last "
                         f"lines of its error output:\n{stderr_tail.rstrip() or '(none)'}")


def display_command(argv, words: int = 8) -> str:
    """The command as a user would type it: paths in the checkout relative, `python`, cut short."""
    shown = []
    for arg in map(str, argv):
        if arg == sys.executable:
            arg = "python"
        elif arg.startswith(str(ROOT) + os.sep):
            arg = os.path.relpath(arg, ROOT)
        shown.append(arg)
    return " ".join(shown[:words]) + (" ..." if len(shown) > words else "")


def _flag_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _resolve(path, name: str) -> pathlib.Path:
    """`path` as given if it exists, else relative to the checkout (configs/... from notebooks/)."""
    p = pathlib.Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p.resolve()
    if (ROOT / p).exists():
        return (ROOT / p).resolve()
    raise ValueError(f"Argument `{name}` must name an existing file (relative to the current "
                     f"directory or to {ROOT}). Received: {name}={str(path)!r}")


def _in_checkout(path: pathlib.Path) -> str:
    """`path` relative to the checkout (the job's working directory) when inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def train_command(config, np: int = 2, run_dir=None, overrides=None, overwrite: bool = False,
                  resume: bool = False, launcher_args=(), python: str | None = None):
    """(argv, run directory) of `launch/run.sh -np N python -m lbsgd.train ...` (see launch);
    the command runs in the checkout, so paths inside it are given relative to it."""
    if int(np) < 1:
        raise ValueError(f"Argument `np` must be >= 1. Received: np={np}")
    config = _resolve(config, "config")
    run_dir = pathlib.Path(run_dir).expanduser().resolve() if run_dir is not None else (
        ROOT / "runs" / config.stem)
    argv = [str(LAUNCHER), "-np", str(int(np)), *map(str, launcher_args),
            python or sys.executable, "-m", "lbsgd.train", "--config", _in_checkout(config),
            f"--run_dir={_in_checkout(run_dir)}"]
    argv += [f"--{k}={_flag_value(v)}" for k, v in (overrides or {}).items()]
    argv += ["--overwrite"] * bool(overwrite) + ["--resume"] * bool(resume)
    return argv, run_dir


def launch(config, np: int = 2, run_dir=None, overrides: dict | None = None,
           overwrite: bool = False, resume: bool = False, launcher_args=(), echo: bool = True,
           timeout: float | None = None) -> pathlib.Path:
    """Trains `config` on `np` ranks through launch/run.sh; returns the run directory.

    Rank 0's progress is printed as it arrives (into the cell in Jupyter);
    the call returns when the job has ended. Interrupting the kernel stops
    the whole job (the launcher forwards the signal to every rank).

    Args:
      config: a config file (`configs/<name>.py`, relative to the current
        directory or to the checkout) or a run's config.json.
      np: number of ranks (horovodrun -np).
      run_dir: the run directory (default: <checkout>/runs/<config file stem>).
      overrides: {dotted config field: value}, e.g. {"epochs": 5,
        "optimizer.base_lr": 0.2}; lists are passed comma-separated.
      overwrite: replace an earlier run in `run_dir` (otherwise it is refused).
      resume: continue the run in `run_dir`.
      launcher_args: more horovodrun options (e.g. ["-H", "node1:4,node2:4"]).
      echo: print the job's output (False: only collect it for errors).
      timeout: seconds after which the job is stopped and RunFailed raised.
    Raises:
      RunFailed: the job exited non-zero (a refused config exits 2 before any
        rank starts; the message carries the launcher's one-line reason).
    """
    argv, run_dir = train_command(config, np, run_dir, overrides, overwrite, resume,
                                  launcher_args)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.Popen(argv, cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    tail = collections.deque(maxlen=60)
    try:
        _stream(proc, tail, echo, timeout)
    except BaseException:
        _stop(proc)
        raise
    if proc.returncode != 0:
        raise RunFailed(argv, proc.returncode, "".join(tail), run_dir)
    return run_dir


def _stream(proc, tail, echo: bool, timeout: float | None) -> None:
    """Copies the job's stdout and stderr to ours as they come; keeps stderr's last lines."""
    deadline = None if timeout is None else time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    targets = {proc.stdout.fileno(): sys.stdout, proc.stderr.fileno(): sys.stderr}
    for pipe in (proc.stdout, proc.stderr):
        sel.register(pipe, selectors.EVENT_READ)
    partial = ""
    decoders = {fd: _decoder() for fd in targets}
    while sel.get_map():
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        events = sel.select(timeout=wait if wait is None else min(wait, 1.0))
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"Argument `timeout` ({timeout} s) passed; the job was stopped")
        for key, _ in events:
            fd = key.fd
            chunk = os.read(fd, 65536)
            text = decoders[fd].decode(chunk, final=not chunk)
            if not chunk:
                sel.unregister(key.fileobj)
            if text and echo:
                targets[fd].write(text)
                targets[fd].flush()
            if text and fd == proc.stderr.fileno():
                lines = (partial + text).split("\n")
                partial = lines.pop()
                tail.extend(line + "\n" for line in lines)
    if partial:
        tail.append(partial)
    proc.wait()


def _decoder():
    import codecs
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _stop(proc, grace: float = 30.0) -> None:
    """TERM to the launcher (it stops horovodrun, mpirun and every rank), KILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --------------------------------------------------------------------------
# Reading runs.
# --------------------------------------------------------------------------

def history(run_dir) -> list[dict]:
    """A run's history.csv: one dict per epoch, numbers as floats."""
    from lbsgd.report import plots
    return plots.read_history(str(run_dir))


def summary(run_dir) -> dict:
    """A run's summary.json."""
    with open(RunDir(run_dir).summary) as f:
        return json.load(f)


def summary_table(run_dirs, labels=None) -> str:
    """One line per run: ranks, batch, epochs, final validation metric, time, images/s."""
    runs = [pathlib.Path(r) for r in run_dirs]
    labels = list(labels) if labels is not None else [r.name for r in runs]
    width = max(8, *(len(label) for label in labels))
    lines = [f"{'run':<{width}} {'ranks':>5} {'batch':>6} {'epochs':>6} {'metric':>13} "
             f"{'final':>8} {'best':>8} {'seconds':>8} {'img/s':>8}"]
    for label, run in zip(labels, runs):
        s = summary(run)
        metric = next(iter(s["best"]), "val_accuracy")
        final = s["final"].get(metric)
        best = s["best"].get(metric)
        lines.append(f"{label:<{width}} {s['num_ranks']:>5} {s['global_batch']:>6} "
                     f"{s['epochs']:>6} {metric:>13} {_num(final):>8} {_num(best):>8} "
                     f"{s['total_seconds']:>8.1f} {_num(s.get('images_per_second'), 1):>8}")
    return "\n".join(lines)


def _num(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def reproducible(seed: int = 0, threads: int = 1, op_determinism: bool = False):
    """Pins what in-process training results depend on; call it before any TensorFlow work.

    The same config gives different weights with 1 or 2 intra-op threads
    (reductions are split differently: notebook 03's last snapshot 84.96% on
    2 threads, 87.19% on 1), so a notebook whose numbers must repeat fixes the
    thread count instead of taking the machine's core count. Seeds Python,
    NumPy and TensorFlow (keras.utils.set_random_seed; lbsgd's trainer seeds
    again from the config; the data order is a function of (seed, epoch)).
    With a fixed thread count lbsgd's training repeats bit for bit without
    TensorFlow's op determinism; `op_determinism=True` turns it on as well
    (other kernels: other, equally repeatable numbers). Returns the lbsgd runtime.
    """
    if threads < 1:
        raise ValueError(f"Argument `threads` must be >= 1. Received: threads={threads}")
    import keras
    import tensorflow as tf

    from lbsgd.parallel import runtime
    rt = runtime.init(intra_op_threads=threads, inter_op_threads=1)
    actual = tf.config.threading.get_intra_op_parallelism_threads()
    if actual != threads:
        raise RuntimeError(f"Argument `threads` cannot apply: TensorFlow already runs with "
                           f"{actual or 'its default'} intra-op threads in this kernel; restart "
                           f"it and call reproducible() first. Received: threads={threads}")
    keras.utils.set_random_seed(seed)
    if op_determinism:
        tf.config.experimental.enable_op_determinism()
    return rt
