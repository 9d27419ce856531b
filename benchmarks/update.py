"""The optimizer step alone: SGD's fused momentum update against Keras' own ops, on a network's weights (Codreanu et al. IV-B, V-B).

    python -m benchmarks.update [--model=resnet50] [--rounds=3] [--steps=15]

Times `DistributedOptimizer(SGD(momentum=0.9), weight_decay=1e-4).apply` on one rank
(L2, the finiteness check, the momentum correction and the update itself; no exchange)
with `fused_update` on and off, alternating rounds, each the median of --steps calls of
a compiled step on fixed gradients. The learning rate warms up linearly over all the
steps, so lr_t / lr_{t-1} runs from 2 down to ~1 and the correction does work. Prints one
JSON line: each path's milliseconds per round, the ratio of the medians, and how far
apart the two paths' weights and velocities are after the same steps (the largest
difference in a tensor relative to that tensor's largest magnitude: float rounding only).
"""

import json
import os
import statistics
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "resnet50", "Model name (lbsgd.config.MODELS).")
flags.DEFINE_integer("image_size", 224, "Square input side (sets the dense layer's size).")
flags.DEFINE_integer("num_classes", 1000, "Classes of the last layer.")
flags.DEFINE_integer("steps", 15, "Timed steps per round and path (the median is kept).")
flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
FLAGS = flags.FLAGS

PATHS = {"fused": True, "keras_ops": False}


def _relative_difference(a, b) -> float:
    """max |a - b| over max |b| (0 for two zero tensors)."""
    scale = float(np.abs(b).max())
    diff = float(np.abs(a - b).max())
    return diff / scale if scale else diff


def _compiled_step(tf, optimizer, grads, variables):
    return tf.function(lambda: optimizer.apply(grads, variables))


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    from lbsgd import config, parallel
    from lbsgd.model import networks
    from lbsgd.recipe import schedules

    if FLAGS.steps < 1 or FLAGS.rounds < 1:
        raise app.UsageError(f"--steps and --rounds must be >= 1. Received: "
                             f"steps={FLAGS.steps}, rounds={FLAGS.rounds}")
    keras.utils.set_random_seed(0)
    model = networks.build_model(config.ModelConfig(name=FLAGS.model),
                                 (FLAGS.image_size, FLAGS.image_size, 3), FLAGS.num_classes)
    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.standard_normal(v.shape).astype(np.float32) * 1e-3)
             for v in model.trainable_variables]
    steps, weights, velocities = {}, {}, {}
    for name, fused in PATHS.items():
        ws = [keras.Variable(v.numpy(), name=f"{name}_{i}")
              for i, v in enumerate(model.trainable_variables)]
        calls = 2 + FLAGS.rounds * FLAGS.steps
        opt = parallel.DistributedOptimizer(
            keras.optimizers.SGD(schedules.GradualWarmup(
                schedules.PolynomialDecay(0.1, 100000), calls + 1), momentum=0.9),
            weight_decay=1e-4, fused_update=fused)
        opt.build(ws)
        steps[name] = _compiled_step(tf, opt, grads, ws)
        weights[name], velocities[name] = ws, opt.momentums
    for name in PATHS:                          # trace and warm up, the same steps for both
        for _ in range(2):
            steps[name]()
    ms = {name: [] for name in PATHS}
    for _ in range(FLAGS.rounds):
        for name in PATHS:
            times = []
            for _ in range(FLAGS.steps):
                t0 = time.perf_counter()
                steps[name]()
                times.append(time.perf_counter() - t0)
            ms[name].append(round(1e3 * statistics.median(times), 2))
    apart = max(_relative_difference(a.numpy(), b.numpy())
                for a, b in zip(weights["fused"] + velocities["fused"],
                                weights["keras_ops"] + velocities["keras_ops"]))
    record = {"model": FLAGS.model, "variables": len(grads),
              "parameters": int(sum(np.prod(g.shape) for g in grads)),
              "steps": FLAGS.steps, "rounds": FLAGS.rounds,
              "ms_per_update": ms,
              "median_ms": {name: round(statistics.median(v), 2) for name, v in ms.items()},
              "keras_ops_over_fused": statistics.median(ms["keras_ops"])
              / statistics.median(ms["fused"]),
              "max_difference_relative": apart}
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    app.run(main)
