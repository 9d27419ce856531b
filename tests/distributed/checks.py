"""Runs under `horovodrun -np 2`: measures what lbsgd's data-parallel layer does, for the tests.

Each rank computes real values (weights after training from different
initialisations, averaged gradients, logged metrics); rank 0 gathers them and
writes one JSON file that tests/test_parallel.py asserts on.

    horovodrun -np 2 python tests/distributed/checks.py OUT.json
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lbsgd import parallel
from lbsgd.parallel import runtime  # noqa: E402


def small_model(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6, 6, 1)),
        keras.layers.Conv2D(4, 3, use_bias=False),
        keras.layers.BatchNormalization(momentum=0.9),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax"),
    ])


def flat_weights(model):
    return np.concatenate([np.ravel(v.numpy()) for v in model.variables])


def gather(array):
    """Every rank's array, stacked (rank order)."""
    import horovod.tensorflow as hvd
    return hvd.allgather(tf.constant(array[None])).numpy()


def check_identical_weights(rt, out):
    """Ranks start from different initialisations and must end identical."""
    model = small_model(seed=100 + rt.rank)
    before = gather(flat_weights(model))
    rng = np.random.default_rng(7 + rt.rank)  # different data on each rank
    x = rng.random((64, 6, 6, 1), dtype=np.float32)
    y = rng.integers(0, 3, 64)
    opt = parallel.DistributedOptimizer(keras.optimizers.SGD(0.05, momentum=0.9),
                                           weight_decay=1e-4)
    model.compile(opt, "sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=parallel.callbacks())
    after = gather(flat_weights(model))
    out["initial_max_abs_diff"] = float(np.max(np.abs(before[0] - before[1])))
    out["final_max_abs_diff"] = float(np.max(np.abs(after[0] - after[1])))
    out["trained_change"] = float(np.max(np.abs(after[0] - before[0])))


def check_gradient_average(rt, out):
    """lbsgd's averaged gradient equals the gradient of the concatenated batch."""
    model = small_model(seed=3)
    parallel.broadcast_variables(model.variables)
    rng = np.random.default_rng(11)
    x_all = rng.random((16, 6, 6, 1), dtype=np.float32)
    y_all = rng.integers(0, 3, 16)
    local = slice(rt.rank * 8, (rt.rank + 1) * 8)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def grads_on(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=False))
        return tape.gradient(loss, model.trainable_variables)

    for exchange in parallel.GRADIENT_EXCHANGES:
        @tf.function
        def averaged(x, y):
            # 1e-6 MiB: every gradient its own bucket in the overlapped exchanges
            return parallel.average_gradients(grads_on(x, y), exchange, bucket_mb=1e-6)

        avg = averaged(tf.constant(x_all[local]), tf.constant(y_all[local]))
        full = grads_on(tf.constant(x_all), tf.constant(y_all))
        out[f"grad_max_abs_err_{exchange}"] = float(max(
            np.max(np.abs(a.numpy() - f.numpy())) for a, f in zip(avg, full)))
        out[f"grad_max_abs_{exchange}"] = float(max(np.max(np.abs(f.numpy())) for f in full))

        @tf.function
        def averaged_fp16(x, y):
            return parallel.average_gradients(grads_on(x, y), exchange, compression="fp16")

        avg16 = averaged_fp16(tf.constant(x_all[local]), tf.constant(y_all[local]))
        out[f"fp16_dtypes_{exchange}"] = sorted({a.dtype.name for a in avg16})
        out[f"fp16_max_abs_err_{exchange}"] = float(max(
            np.max(np.abs(a.numpy() - f.numpy())) for a, f in zip(avg16, full)))
        # float16 keeps 11 significant bits: each rank's gradient is rounded to
        # 2^-11 of itself and the float16 sum to 2^-11 of the partial sums, so
        # |err| <= 2e-3 * mean(|g_rank|) (+ a floor for float16 subnormals).
        halves = [grads_on(tf.constant(x_all[k * 8:(k + 1) * 8]),
                           tf.constant(y_all[k * 8:(k + 1) * 8])) for k in range(2)]
        out[f"fp16_max_excess_{exchange}"] = float(max(
            np.max(np.abs(a.numpy() - f.numpy())
                   - (2e-3 * (np.abs(h0.numpy()) + np.abs(h1.numpy())) / 2 + 1e-7))
            for a, f, h0, h1 in zip(avg16, full, *halves)))


def check_overlap_graph(rt, out):
    """In a compiled step, which gradients each Horovod collective waits for.

    For each exchange: the number of Horovod collectives, and for the
    collective that waits for the fewest gradients, whether the first
    layer's kernel gradient (Conv2DBackpropFilter) is among its inputs: an
    overlapped exchange's last-layer bucket must not wait for it."""
    model = small_model(seed=3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    x = tf.zeros((8, 6, 6, 1))
    y = tf.zeros((8,), tf.int64)
    for exchange in parallel.GRADIENT_EXCHANGES:
        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            return parallel.average_gradients(grads, exchange, bucket_mb=1e-6)

        graph = step.get_concrete_function(x, y).graph
        ops = {op.name: op for op in graph.get_operations()}

        def ancestors(op, seen=None):
            seen = set() if seen is None else seen
            for t in list(op.inputs) + list(op.control_inputs):
                src = getattr(t, "op", t)
                if src.name not in seen:
                    seen.add(src.name)
                    ancestors(src, seen)
            return seen

        collectives = [op for op in ops.values() if op.type.startswith("Horovod")]
        first_waits = []
        for op in collectives:
            up = ancestors(op)
            first_waits.append(any(ops[n].type == "Conv2DBackpropFilter" for n in up))
        out[f"collectives_{exchange}"] = len(collectives)
        out[f"every_collective_waits_for_first_layer_{exchange}"] = all(first_waits)


def check_metric_average(rt, out):
    """Logged epoch metrics equal the global ones, with uneven validation shards."""
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(2, activation="softmax")])
    model.layers[0].set_weights([np.array([[1.0, -1.0], [0.0, 0.0]], np.float32),
                                 np.zeros(2, np.float32)])
    # predicts class 0 when x0 > 0, else class 1
    def shard(n, correct):
        x = np.zeros((n, 2), np.float32)
        x[:, 0] = 1.0
        y = np.zeros(n, np.int64) if correct else np.ones(n, np.int64)
        return x, y

    # rank 0: 12 train samples all right, rank 1: 12 with 3 right.
    if rt.rank == 0:
        x_tr, y_tr = shard(12, True)
        x_va, y_va = shard(10, True)          # 10 val samples, all right
    else:
        xa, ya = shard(3, True)
        xb, yb = shard(9, False)
        x_tr, y_tr = np.concatenate([xa, xb]), np.concatenate([ya, yb])
        x_va, y_va = shard(5, False)          # 5 val samples, all wrong
    model.compile(parallel.DistributedOptimizer(keras.optimizers.SGD(0.0)),
                  "sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False)
    local = model.evaluate(x_va, y_va, verbose=0, return_dict=True)
    local_train = model.evaluate(x_tr, y_tr, verbose=0, return_dict=True)
    hist = model.fit(x_tr, y_tr, batch_size=4, epochs=1, verbose=0,
                     validation_data=(x_va, y_va), validation_batch_size=4,
                     callbacks=parallel.callbacks())
    locals_ = gather(np.array([local["accuracy"], local_train["accuracy"],
                               local["loss"], local_train["loss"]]))
    out["local_val_accuracy"] = locals_[:, 0].tolist()
    out["local_train_accuracy"] = locals_[:, 1].tolist()
    out["local_val_loss"] = locals_[:, 2].tolist()
    out["local_train_loss"] = locals_[:, 3].tolist()
    out["logged_val_accuracy"] = hist.history["val_accuracy"][0]
    out["logged_accuracy"] = hist.history["accuracy"][0]
    out["logged_val_loss"] = hist.history["val_loss"][0]
    out["logged_loss"] = hist.history["loss"][0]


def main(path):
    rt = runtime.init()
    hvd = runtime.horovod()
    out = {"size": rt.size, "controller": "gloo" if hvd.gloo_enabled() else
           "mpi" if hvd.mpi_enabled() else "unknown"}
    check_identical_weights(rt, out)
    check_gradient_average(rt, out)
    check_overlap_graph(rt, out)
    check_metric_average(rt, out)
    if rt.is_chief:
        with open(path, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
