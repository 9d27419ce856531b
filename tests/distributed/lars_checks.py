"""Trains a tiny model with lbsgd's "lars" and "lamb" on 1 or N ranks; rank 0 writes the weights.

The global batch is the same on every rank count (each rank takes its slice
of every global batch) and the model has no batch statistics (LayerNorm
gamma/beta stand in for BN's), so the weights after training must agree
between 1 and 2 ranks up to float rounding; tests/test_lars.py compares them.

    python tests/distributed/lars_checks.py OUT.json
    horovodrun -np 2 python tests/distributed/lars_checks.py OUT.json
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from lbsgd import config
from lbsgd import parallel
from lbsgd.parallel import runtime
from lbsgd.recipe import schedules
from lbsgd.run import trainer  # noqa: E402

GLOBAL_BATCH, STEPS = 16, 4


def tiny_model():
    keras.utils.set_random_seed(5)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"),
                             keras.layers.LayerNormalization(), keras.layers.Dense(3)])


def local_slices(x, rank, size):
    """This rank's share of every global batch, in step order."""
    local = GLOBAL_BATCH // size
    return np.concatenate([x[s * GLOBAL_BATCH + rank * local:s * GLOBAL_BATCH + (rank + 1) * local]
                           for s in range(STEPS)])


def train(rt, name):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 6)).astype("float32")
    y = rng.integers(0, 3, GLOBAL_BATCH * STEPS)
    model = tiny_model()
    lr = schedules.GradualWarmup(schedules.PolynomialDecay(0.5, STEPS), warmup_steps=2)
    opt = trainer.build_distributed_optimizer(
        config.OptimizerConfig(name=name, momentum=0.9, trust_coefficient=0.01),
        lr, weight_decay=1e-3)
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=False)
    model.fit(local_slices(x, rt.rank, rt.size), local_slices(y, rt.rank, rt.size),
              batch_size=GLOBAL_BATCH // rt.size, epochs=1, shuffle=False, verbose=0,
              callbacks=parallel.callbacks())
    return [v.numpy().tolist() for v in model.trainable_variables]


def main(path):
    rt = runtime.init()
    out = {"size": rt.size, "lars": train(rt, "lars"), "lamb": train(rt, "lamb")}
    if rt.is_chief:
        with open(path, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1])
