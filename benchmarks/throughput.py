"""Training throughput of one job through lbsgd's stack, on synthetic data (Codreanu et al. V-A).

Run under any launcher; rank 0 prints one JSON line with images/s and
seconds per step (the median of the timed steps, after warm-up steps that
include tracing):

    launch/run.sh -np 2 python -m benchmarks.throughput --model=resnet50 --local_batch=8

Modes:
  lbsgd     DistributedOptimizer + lbsgd's callbacks (what lbsgd.train runs)
  plain     a plain Keras `fit` of the same model (one process only)
  overhead  both in one process, alternating rounds; prints the step-time
            ratio lbsgd / plain of the 25th-percentile steps, and of the
            medians (one process only)

Every optimizer here is SGD with momentum 0.9 updating with the same kernel:
lbsgd's fused update (--fused_update, the default; the plain Keras `fit` and
--exchange=none's reference get it too, so an overhead or an exchange's cost
is the stack's or the exchange's own), or Keras' own ops on all of them
(--nofused_update).
"""

import json
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "resnet50", "Model name (lbsgd.config.MODELS).")
flags.DEFINE_integer("local_batch", 8, "Images per rank per step.")
flags.DEFINE_integer("image_size", 224, "Square input side.")
flags.DEFINE_integer("num_classes", 1000, "Classes of the synthetic labels.")
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps (tracing, caches).")
flags.DEFINE_integer("steps", 10, "Timed steps (per round in overhead mode).")
flags.DEFINE_integer("rounds", 3, "Alternating rounds in overhead mode (benchmarks.profile: "
                     "rounds per dtype).")
flags.DEFINE_string("exchange", "grouped", "Gradient exchange; 'none' keeps each rank's own "
                    "gradient (no communication: the compute-only reference of a job).")
flags.DEFINE_float("bucket_mb", 4.0, "Bucket size of the overlapped exchanges, in MiB.")
flags.DEFINE_enum("compression", "none", ["none", "fp16"],
                  "Wire format of the exchanged gradients.")
flags.DEFINE_string("dtype_policy", "float32", "Keras dtype policy (float32, mixed_bfloat16).")
flags.DEFINE_bool("fused_bn", True, "BN by TensorFlow's fused kernel (model.fused_bn); "
                  "--nofused_bn runs Keras' own layer.")
flags.DEFINE_bool("fused_update", True, "SGD's momentum update as one fused kernel per "
                  "variable (DistributedOptimizer's fused_update; the plain fit's and "
                  "--exchange=none's SGD the same); --nofused_update runs Keras' own ops.")
flags.DEFINE_enum("mode", "lbsgd", ["lbsgd", "plain", "overhead"], "What to time.")
flags.DEFINE_string("step_stamps", "", "Rank 0 writes here (JSON) each step's begin and end in "
                    "microseconds since the epoch, Horovod's timeline clock, and the bytes of "
                    "each gradient bucket in the order backprop issues them "
                    "(benchmarks.overlap_timeline).")
FLAGS = flags.FLAGS


def fused_sgd(keras):
    """Keras' SGD whose update is lbsgd's fused kernel (the no-exchange reference's)."""
    from lbsgd.optim.decay import fused_momentum_update

    class FusedSGD(keras.optimizers.SGD):
        def update_step(self, gradient, variable, learning_rate):
            fused_momentum_update(variable, self.momentums[self._get_variable_index(variable)],
                                  gradient, learning_rate, self.momentum)

    return FusedSGD


def build(lbsgd_stack: bool, dtype_policy: str | None = None):
    """The benchmark's model, compiled, and the callbacks of lbsgd's stack (if `lbsgd_stack`),
    from the flags; `dtype_policy` overrides --dtype_policy."""
    import keras

    from lbsgd.run import callbacks as cb
    from lbsgd import config
    from lbsgd import parallel
    from lbsgd.model import networks as models

    keras.utils.set_random_seed(0)
    model = models.build_model(config.ModelConfig(name=FLAGS.model,
                                                  dtype_policy=dtype_policy or FLAGS.dtype_policy,
                                                  fused_bn=FLAGS.fused_bn),
                               (FLAGS.image_size, FLAGS.image_size, 3), FLAGS.num_classes)
    callbacks = []
    if lbsgd_stack and FLAGS.exchange != "none":
        opt = parallel.DistributedOptimizer(keras.optimizers.SGD(0.01, momentum=0.9),
                                            exchange=FLAGS.exchange,
                                            weight_decay=1e-4, momentum_correction=True,
                                            compression=FLAGS.compression,
                                            bucket_mb=FLAGS.bucket_mb,
                                            fused_update=FLAGS.fused_update)
    else:   # the no-exchange reference and plain Keras update as lbsgd's optimizer does
        opt = (fused_sgd(keras) if FLAGS.fused_update else keras.optimizers.SGD)(
            0.01, momentum=0.9)
    if lbsgd_stack:
        callbacks = parallel.callbacks() + [cb.RunLogger(FLAGS.local_batch, 1)]
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False)
    return model, callbacks


def step_times(model, callbacks, ds, steps, warmup, windows=None):
    """Seconds of each of `steps` timed steps, after `warmup` untimed ones; each step's
    [begin, end] in microseconds since the epoch appended to `windows` if given."""
    import keras
    import numpy as np
    stamps = []

    def begin(b, logs):
        if windows is not None:
            windows.append([time.time() * 1e6, None])

    def end(b, logs):
        stamps.append(time.perf_counter())
        if windows is not None:
            windows[-1][1] = time.time() * 1e6
    timer = keras.callbacks.LambdaCallback(on_train_batch_begin=begin, on_train_batch_end=end)
    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0,
              callbacks=callbacks + [timer])
    return np.diff(stamps[warmup - 1:])


def main(_):
    import tensorflow as tf

    from lbsgd import parallel
    from lbsgd.parallel import runtime

    rt = runtime.init()
    if FLAGS.mode != "lbsgd" and rt.size > 1:
        raise app.UsageError(f"Flag `mode` must be 'lbsgd' under horovodrun. "
                             f"Received: mode={FLAGS.mode!r}")
    rng = np.random.default_rng(rt.rank)
    x = rng.random((FLAGS.local_batch, FLAGS.image_size, FLAGS.image_size, 3), np.float32)
    y = rng.integers(0, FLAGS.num_classes, FLAGS.local_batch)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    record = {"model": FLAGS.model, "ranks": rt.size, "threads_per_rank": rt.intra_op_threads,
              "local_batch": FLAGS.local_batch, "exchange": FLAGS.exchange,
              "bucket_mb": FLAGS.bucket_mb,
              "compression": FLAGS.compression,
              "dtype_policy": FLAGS.dtype_policy, "fused_bn": FLAGS.fused_bn,
              "fused_update": FLAGS.fused_update,
              "mode": FLAGS.mode}
    if FLAGS.mode == "overhead":
        built = {name: build(name == "lbsgd") for name in ("plain", "lbsgd")}
        for name, (model, cbs) in built.items():   # trace both before timing
            step_times(model, cbs, ds, 1, FLAGS.warmup_steps)
        steps = {"plain": [], "lbsgd": []}
        for r in range(FLAGS.rounds):   # ABBA order: no side always goes first
            order = ("plain", "lbsgd") if r % 2 == 0 else ("lbsgd", "plain")
            for name in order:
                model, cbs = built[name]
                steps[name].extend(step_times(model, cbs, ds, FLAGS.steps, 1))
        # Stalls of this shared host slow single steps and whole rounds by up
        # to +60%, on either side; the ratio compares each side's typical
        # uncontended step (25th percentile of all its steps), and the
        # medians are kept next to it.
        q = {k: np.percentile(v, [25, 50, 75]) for k, v in steps.items()}
        plain, ours = float(q["plain"][0]), float(q["lbsgd"][0])
        record.update(seconds_per_step_plain=plain, seconds_per_step_lbsgd=ours,
                      overhead_ratio=ours / plain,
                      overhead_ratio_median=float(q["lbsgd"][1] / q["plain"][1]),
                      rounds={k: [float(np.mean(v[i:i + FLAGS.steps]))
                                  for i in range(0, len(v), FLAGS.steps)]
                              for k, v in steps.items()},
                      step_quartiles={k: [float(x) for x in v] for k, v in q.items()})
        print(json.dumps(record), flush=True)
        return
    model, callbacks = build(FLAGS.mode == "lbsgd")
    record["gradient_bytes"] = int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize
                                       for v in model.trainable_variables))
    windows = [] if FLAGS.step_stamps else None
    times = step_times(model, callbacks, ds, FLAGS.steps, FLAGS.warmup_steps, windows)
    if windows is not None and rt.is_chief:
        from lbsgd.parallel import exchange
        from lbsgd.run import checkpoint as ckpt
        sizes = [int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                 for v in model.trainable_variables]
        order = exchange.buckets(sizes, int(FLAGS.bucket_mb * 2 ** 20),
                                 [str(v.dtype) for v in model.trainable_variables])
        ckpt.atomic_write_json(FLAGS.step_stamps, {
            "steps": windows, "warmup_steps": FLAGS.warmup_steps,
            "bucket_bytes": [sum(sizes[i] for i in idx) for idx in order],
            "gradient_bytes": sum(sizes)})
    each_step = np.zeros((rt.size, len(times)))
    each_step[rt.rank] = times
    (each_step,) = parallel.allreduce_numpy([each_step], op="sum")
    each = np.median(each_step, axis=1)   # each rank's median step: this host stalls single steps
    if rt.is_chief:
        record.update(images_per_second=float(np.sum(FLAGS.local_batch / each)),
                      seconds_per_step=float(np.mean(each)),
                      seconds_per_step_ranks=[float(x) for x in each],
                      step_seconds_each_rank=[[round(float(t), 5) for t in row]
                                              for row in each_step])
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
