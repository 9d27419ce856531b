"""Training throughput of one job through lbsgd's stack, on synthetic data (Codreanu et al. V-A).

Run under any launcher; rank 0 prints one JSON line with images/s and
seconds per step over the timed steps (after warm-up steps that include
tracing):

    launch/run.sh -np 2 python -m benchmarks.throughput --model=resnet50 --local_batch=8

Modes:
  lbsgd     DistributedOptimizer + lbsgd's callbacks (what lbsgd.train runs)
  plain     a plain Keras `fit` of the same model (one process only)
  overhead  both in one process, alternating rounds; prints the step-time
            ratio lbsgd / plain (one process only)
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "resnet50", "Model name (lbsgd.config.MODELS).")
flags.DEFINE_integer("local_batch", 8, "Images per rank per step.")
flags.DEFINE_integer("image_size", 224, "Square input side.")
flags.DEFINE_integer("num_classes", 1000, "Classes of the synthetic labels.")
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps (tracing, caches).")
flags.DEFINE_integer("steps", 10, "Timed steps (per round in overhead mode).")
flags.DEFINE_integer("rounds", 3, "Alternating rounds in overhead mode.")
flags.DEFINE_string("exchange", "grouped", "Gradient exchange; 'none' keeps each rank's own "
                    "gradient (no communication: the compute-only reference of a job).")
flags.DEFINE_string("dtype_policy", "float32", "Keras dtype policy (float32, mixed_bfloat16).")
flags.DEFINE_enum("mode", "lbsgd", ["lbsgd", "plain", "overhead"], "What to time.")
FLAGS = flags.FLAGS


def _build(lbsgd_stack: bool):
    import keras

    from lbsgd import callbacks as cb
    from lbsgd import config, distributed, models

    keras.utils.set_random_seed(0)
    model = models.build_model(config.ModelConfig(name=FLAGS.model,
                                                  dtype_policy=FLAGS.dtype_policy),
                               (FLAGS.image_size, FLAGS.image_size, 3), FLAGS.num_classes)
    opt = keras.optimizers.SGD(0.01, momentum=0.9)
    callbacks = []
    if lbsgd_stack:
        if FLAGS.exchange != "none":
            opt = distributed.DistributedOptimizer(opt, exchange=FLAGS.exchange,
                                                   weight_decay=1e-4, momentum_correction=True)
        callbacks = distributed.callbacks() + [cb.RunLogger(FLAGS.local_batch, 1)]
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False)
    return model, callbacks


def _timed_fit(model, callbacks, ds, steps, warmup):
    import keras
    stamps = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: stamps.append(time.perf_counter()))
    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0,
              callbacks=callbacks + [timer])
    return (stamps[-1] - stamps[warmup - 1]) / steps


def main(_):
    import numpy as np
    import tensorflow as tf

    from lbsgd import distributed, runtime

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
              "dtype_policy": FLAGS.dtype_policy, "mode": FLAGS.mode}
    if FLAGS.mode == "overhead":
        built = {name: _build(name == "lbsgd") for name in ("plain", "lbsgd")}
        for name, (model, cbs) in built.items():   # trace both before timing
            _timed_fit(model, cbs, ds, 1, FLAGS.warmup_steps)
        times = {"plain": [], "lbsgd": []}
        for r in range(FLAGS.rounds):   # ABBA order: no side always goes first
            order = ("plain", "lbsgd") if r % 2 == 0 else ("lbsgd", "plain")
            for name in order:
                model, cbs = built[name]
                times[name].append(_timed_fit(model, cbs, ds, FLAGS.steps, 1))
        plain, ours = float(np.median(times["plain"])), float(np.median(times["lbsgd"]))
        record.update(seconds_per_step_plain=plain, seconds_per_step_lbsgd=ours,
                      overhead_ratio=ours / plain, rounds=times)
        print(json.dumps(record), flush=True)
        return
    model, callbacks = _build(FLAGS.mode == "lbsgd")
    seconds = _timed_fit(model, callbacks, ds, FLAGS.steps, FLAGS.warmup_steps)
    per_rank = np.array([FLAGS.local_batch / seconds, seconds])
    total = distributed.allreduce_numpy([per_rank], op="sum")[0]
    if rt.is_chief:
        record.update(images_per_second=float(total[0]),
                      seconds_per_step=float(total[1]) / rt.size)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
