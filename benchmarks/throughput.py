"""Training throughput of one job through lbsgd's stack, on synthetic data (Codreanu et al. V-A).

Run under any launcher; rank 0 prints one JSON line with images/s over the
timed steps (after warm-up steps that include tracing):

    launch/run.sh -np 2 python -m benchmarks.throughput --model=resnet50 --local_batch=8
"""

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "resnet50", "Model name (lbsgd.config.MODELS).")
flags.DEFINE_integer("local_batch", 8, "Images per rank per step.")
flags.DEFINE_integer("image_size", 224, "Square input side.")
flags.DEFINE_integer("warmup_steps", 3, "Untimed steps (tracing, caches).")
flags.DEFINE_integer("steps", 10, "Timed steps.")
flags.DEFINE_string("exchange", "grouped", "Gradient exchange.")
FLAGS = flags.FLAGS


def main(_):
    import keras
    import numpy as np
    import tensorflow as tf

    from lbsgd import config, distributed, models, runtime

    rt = runtime.init()
    model = models.build_model(config.ModelConfig(name=FLAGS.model),
                               (FLAGS.image_size, FLAGS.image_size, 3), 1000)
    opt = distributed.DistributedOptimizer(keras.optimizers.SGD(0.01, momentum=0.9),
                                           exchange=FLAGS.exchange, weight_decay=1e-4)
    model.compile(opt, "sparse_categorical_crossentropy", jit_compile=False)
    rng = np.random.default_rng(rt.rank)
    x = rng.random((FLAGS.local_batch, FLAGS.image_size, FLAGS.image_size, 3), np.float32)
    y = rng.integers(0, 1000, FLAGS.local_batch)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    stamps = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: stamps.append(time.perf_counter()))
    total = FLAGS.warmup_steps + FLAGS.steps
    model.fit(ds, steps_per_epoch=total, epochs=1, verbose=0,
              callbacks=distributed.callbacks() + [timer])
    seconds = stamps[-1] - stamps[FLAGS.warmup_steps - 1]
    per_rank = np.array([FLAGS.steps * FLAGS.local_batch / seconds])
    rates = distributed.allreduce_numpy([per_rank], op="sum")[0]
    if rt.is_chief:
        print(json.dumps({
            "model": FLAGS.model, "ranks": rt.size, "threads_per_rank": rt.intra_op_threads,
            "local_batch": FLAGS.local_batch, "exchange": FLAGS.exchange,
            "images_per_second": float(rates[0]), "seconds_per_step": seconds / FLAGS.steps,
        }), flush=True)


if __name__ == "__main__":
    app.run(main)
