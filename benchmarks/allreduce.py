"""Allreduce time against message size through Horovod: the latency (seconds per message) and bandwidth (bytes/s) of a network (Lee et al. IV-B, Codreanu et al. V-A).

Run under any launcher; rank 0 prints one JSON line:

    launch/run.sh -np 2 -H lbsgd-h1:1,lbsgd-h2:1 python -m benchmarks.allreduce

Times Horovod's averaging allreduce of one float32 tensor (what lbsgd's grouped gradient
exchange issues) for sizes from 4 bytes to --max_bytes (x4 apart): the median of --reps
calls after --warmup, each call timed on rank 0 from start to the averaged tensor in
memory. A line t(n) = a + n / b is fitted to (bytes, seconds) in relative terms (each
size weighted by 1 / its time, so small and large messages count alike); for a ring
allreduce on P ranks, t(n) = 2 (P-1) latency + 2 (P-1) / P * n / bandwidth (lbsgd.scaling), so

    latency = a / (2 (P-1)),   bandwidth = 2 (P-1) / P * b.

latency includes Horovod's own per-call cost (its background cycle, the fusion buffer), as
a gradient exchange pays it.
"""

import json
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_integer("max_bytes", 64 << 20, "Largest message (bytes, float32).")
flags.DEFINE_integer("reps", 20, "Timed calls per size (the median is kept).")
flags.DEFINE_integer("warmup", 3, "Untimed calls per size.")
FLAGS = flags.FLAGS


def message_sizes(max_bytes: int) -> list[int]:
    """4 bytes, 16, 64, ... up to max_bytes (float32 tensors)."""
    if max_bytes < 4:
        raise ValueError(f"Argument `max_bytes` must be >= 4. Received: max_bytes={max_bytes}")
    sizes, n = [], 4
    while n <= max_bytes:
        sizes.append(n)
        n *= 4
    return sizes


def fit_latency_bandwidth(sizes, seconds, ranks: int) -> dict:
    """latency (s) and bandwidth (bytes/s) of the ring model from (bytes, seconds) pairs."""
    if ranks < 2:
        raise ValueError(f"Argument `ranks` must be >= 2 (one rank sends nothing). "
                         f"Received: ranks={ranks}")
    n = np.asarray(sizes, np.float64)
    t = np.asarray(seconds, np.float64)
    design = np.stack([1 / t, n / t], axis=1)
    (a, inv_b), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    a, inv_b = max(float(a), 0.0), max(float(inv_b), 1e-30)
    fitted = a + n * inv_b
    return {"latency": a / (2 * (ranks - 1)), "bandwidth": 2 * (ranks - 1) / ranks / inv_b,
            "intercept_seconds": a, "seconds_per_byte": inv_b,
            "max_relative_residual": float(np.max(np.abs(fitted - t) / t))}


def main(_):
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from lbsgd.parallel import runtime

    rt = runtime.init()
    if rt.size < 2:
        raise app.UsageError("Run under a launcher with >= 2 ranks (launch/run.sh -np 2 ...).")
    sizes = message_sizes(FLAGS.max_bytes)
    medians = []
    for n in sizes:
        x = tf.ones([n // 4], tf.float32)
        times = []
        for i in range(FLAGS.warmup + FLAGS.reps):
            t = time.perf_counter()
            hvd.allreduce(x, op=hvd.Average, name=f"latency_bandwidth.{n}").numpy()
            if i >= FLAGS.warmup:
                times.append(time.perf_counter() - t)
        medians.append(float(np.median(times)))
    if rt.is_chief:
        record = {"benchmark": "allreduce", "ranks": rt.size, "bytes": sizes,
                  "seconds": medians}
        record.update(fit_latency_bandwidth(sizes, medians, rt.size))
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
