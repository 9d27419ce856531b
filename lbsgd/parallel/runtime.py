"""Process runtime for data-parallel CPU training: Horovod start-up and per-rank threads.

Serves Codreanu et al. Section IV-E (execution methodology: cores for compute
per worker) and Lee et al. Section IV-C (one worker process per core group).
Every lbsgd entry point calls :func:`init` once; without ``horovodrun`` it runs
as a single process (rank 0 of size 1).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import warnings

_STATE = None


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What this process is in the job.

    Attributes:
      rank: global rank of this process.
      size: number of processes in the job.
      local_rank: rank among the processes of this host.
      local_size: number of processes on this host.
      intra_op_threads: TensorFlow intra-op threads of this process.
      inter_op_threads: TensorFlow inter-op threads of this process.
      horovod: whether Horovod is driving the job (False: plain single process).
    """

    rank: int
    size: int
    local_rank: int
    local_size: int
    intra_op_threads: int
    inter_op_threads: int
    horovod: bool

    @property
    def is_chief(self) -> bool:
        """Rank 0: the only process that prints, logs and writes checkpoints."""
        return self.rank == 0


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _threads_per_rank(local_size: int, intra_op_threads: int | None,
                      inter_op_threads: int | None) -> tuple[int, int]:
    if intra_op_threads is None:
        env = os.environ.get("LBSGD_INTRA_OP_THREADS")
        intra_op_threads = int(env) if env else max(1, available_cores() // local_size)
    if inter_op_threads is None:
        env = os.environ.get("LBSGD_INTER_OP_THREADS")
        inter_op_threads = int(env) if env else (1 if intra_op_threads <= 2 else 2)
    for name, value in (("intra_op_threads", intra_op_threads),
                        ("inter_op_threads", inter_op_threads)):
        if value < 1:
            raise ValueError(f"Argument `{name}` must be >= 1. Received: {name}={value}")
    return intra_op_threads, inter_op_threads


def init(intra_op_threads: int | None = None,
         inter_op_threads: int | None = None) -> Runtime:
    """Starts Horovod (if present) and sets this rank's TensorFlow threads.

    Idempotent: later calls return the first call's runtime. Must run before
    TensorFlow executes its first op, or the thread settings cannot apply.

    Args:
      intra_op_threads: threads inside one op; default cores on this host
        divided by the ranks on this host (env `LBSGD_INTRA_OP_THREADS`).
      inter_op_threads: ops run concurrently; default 1 for <= 2 intra-op
        threads, else 2 (env `LBSGD_INTER_OP_THREADS`).
    """
    global _STATE
    if _STATE is not None:
        return _STATE
    try:
        import horovod.tensorflow as hvd
    except ImportError as err:  # pragma: no cover - the installer builds horovod
        if "OMPI_COMM_WORLD_SIZE" in os.environ or "HOROVOD_RANK" in os.environ:
            raise RuntimeError(
                "This process was started by horovodrun/mpirun but horovod.tensorflow "
                f"cannot be imported ({err}); run `bash launch/install.sh`.") from err
        warnings.warn("horovod is not installed: lbsgd runs as a single process.")
        hvd = None
    if hvd is not None:
        hvd.init()
        rank, size = hvd.rank(), hvd.size()
        local_rank, local_size = hvd.local_rank(), hvd.local_size()
    else:
        rank, size, local_rank, local_size = 0, 1, 0, 1
    intra, inter = _threads_per_rank(local_size, intra_op_threads, inter_op_threads)

    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:
        # TensorFlow already ran an op (e.g. in a notebook): keep its threads.
        intra = tf.config.threading.get_intra_op_parallelism_threads() or intra
        inter = tf.config.threading.get_inter_op_parallelism_threads() or inter
    _STATE = Runtime(rank=rank, size=size, local_rank=local_rank,
                     local_size=local_size, intra_op_threads=intra,
                     inter_op_threads=inter, horovod=hvd is not None)
    return _STATE


def current() -> Runtime:
    """The runtime of this process, initialising it on first use."""
    return _STATE if _STATE is not None else init()


def horovod():
    """`horovod.tensorflow`, imported on first use (only under horovodrun is it needed)."""
    import horovod.tensorflow as hvd
    return hvd


def world_size() -> int:
    """Ranks in the job (1 without horovodrun)."""
    return current().size


def import_tensorflow():
    """`import tensorflow`, its start-up INFO lines dropped when TF_CPP_MIN_LOG_LEVEL >= 1.

    What else it writes to stderr while importing (warnings, errors) is
    passed on unchanged, after the import.
    """
    from lbsgd.rankstreams import is_start_up_info, quiet_start_up

    if "tensorflow" in sys.modules or not quiet_start_up(os.environ):
        import tensorflow as tf
        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow as tf
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            kept = [line for line in log.read().splitlines(keepends=True)
                    if not is_start_up_info(line)]
            if kept:
                os.write(2, b"".join(kept))
    return tf
