"""Runs under `horovodrun -np 2` (or alone): precise BN on a small model, different data per rank.

Defines the model and each rank's batches that tests/test_precise_bn.py also
uses for its NumPy reference; rank 0 writes an .npz of the BN statistics
recomputed over all ranks, the weights before and after, and the rank count.

    horovodrun -np 2 python tests/distributed/precise_bn_checks.py OUT.npz
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def bn_model(seed=0):
    """Input -> Conv -> BN -> ReLU -> Conv -> BN -> GAP -> Dense, with random gamma/beta and
    stale moving statistics (mean 5, variance 7)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.95, name="bn1")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(3, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(momentum=0.95, name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    rng = np.random.default_rng(seed)
    for name in ("bn1", "bn2"):
        bn = model.get_layer(name)
        c = bn.gamma.shape[0]
        bn.gamma.assign(rng.uniform(0.5, 2.0, c))
        bn.beta.assign(rng.normal(0.0, 1.0, c))
        bn.moving_mean.assign(np.full(c, 5.0))
        bn.moving_variance.assign(np.full(c, 7.0))
    return model


def rank_batches(rank, sizes=(8, 8, 5)):
    """Rank r's (x, y) batches: N(3r, (1 + 2r)^2) images, rank 1 with a spatial ramp."""
    rng = np.random.default_rng(100 + rank)
    out = []
    for n in sizes:
        x = rng.normal(3.0 * rank, 1.0 + 2.0 * rank, (n, 6, 6, 2))
        x += rank * np.linspace(-4, 4, 6)[None, :, None, None]
        out.append((x.astype(np.float32), rng.integers(0, 3, n)))
    return out


def main(path):
    from lbsgd.model import precise_bn
    from lbsgd.parallel import runtime

    rt = runtime.init()
    model = bn_model()
    before = [w.copy() for w in model.get_weights()]
    used = precise_bn.recompute_bn_statistics(model, rank_batches(rt.rank), num_batches=3)
    stats = {f"{name}/{what}": keras.ops.convert_to_numpy(getattr(model.get_layer(name), what))
             for name in ("bn1", "bn2") for what in ("moving_mean", "moving_variance")}
    if rt.is_chief:
        np.savez(path, size=rt.size, used=used, **stats,
                 **{f"before/{i}": w for i, w in enumerate(before)},
                 **{f"after/{i}": w for i, w in enumerate(model.get_weights())})


if __name__ == "__main__":
    main(sys.argv[1])
