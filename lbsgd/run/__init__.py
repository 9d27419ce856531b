"""One training run: its wiring, directory, checkpoints, bookkeeping and faults (exact resume; both papers' runs).

* `trainer`: the run's wiring in one place (`Trainer`, `CALLBACK_ORDER`,
  `fit_segments`, `run`)
* `rundir`: every run file's name, the atomic writers, the lock, start/resume
* `checkpoint`: checkpoint and snapshot files (model, optimizer, trainer state)
* `callbacks`: history rows, time-to-accuracy, convergence stop, `Checkpointer`,
  TensorBoard
* `faults`: divergence guard, stalled-rank watchdog, exit codes
* `resize`: the world-size policy of a resume on another number of ranks
* `console`: rank 0's Keras-style progress lines and the summary
"""

from lbsgd._exports import lazy

_WHERE = {
    "RunDir": "rundir", "CALLBACK_ORDER": "trainer", "Trainer": "trainer",
    "check_callback_order": "trainer", "fit_segments": "trainer", "run": "trainer",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy(__name__, _WHERE)
