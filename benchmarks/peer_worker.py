"""One process of a data-parallel peer, timed the way benchmarks.throughput times lbsgd (issue: the peers side by side).

Run by benchmarks.peers, never by hand: each peer's processes run this file
in that peer's own environment, on lbsgd's model (lbsgd.model.networks),
input shape, local batch, synthetic data and optimizer (SGD, LR 0.01,
momentum 0.9), with one TensorFlow/XLA thread per process:

  lbsgd             lbsgd.parallel.DistributedOptimizer (grouped) + lbsgd's callbacks,
                    under launch/run.sh (Horovod, Keras 3, TensorFlow)
  horovod_tf_keras  Horovod's own Keras layer (hvd.DistributedOptimizer +
                    BroadcastGlobalVariablesCallback) on tf_keras, under launch/run.sh
  jax_dataparallel  keras.distribution.DataParallel, Keras 3 on JAX, one process
                    per core, gloo CPU collectives (PEER_* environment)
  mwms              tf.distribute.MultiWorkerMirroredStrategy + Keras 3 `fit`
                    (TF_CONFIG)

Process 0 prints one JSON line: seconds per step (the median of the timed
steps, each step's loss read back so that asynchronous dispatch cannot hide
work) and, with --weights_out, writes the weights after the steps (.npz).
"""

import argparse
import json
import os
import sys
import time

PEERS = ("lbsgd", "horovod_tf_keras", "jax_dataparallel", "mwms")


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer", required=True, choices=PEERS)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--local_batch", type=int, default=64)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--num_classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup_steps", type=int, default=3)
    p.add_argument("--weights_out", default="",
                   help="write process 0's weights after warmup_steps + steps steps (.npz: "
                        "trainable_NNN, and state_NNN for the non-trainable ones)")
    return p.parse_args(argv)


def _process() -> tuple[int, int]:
    """(index, count) of this process, before any framework starts."""
    for index, count in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                         ("HOROVOD_RANK", "HOROVOD_SIZE"),
                         ("PEER_PROCESS_ID", "PEER_NUM_PROCESSES")):
        if index in os.environ:
            return int(os.environ[index]), int(os.environ[count])
    return 0, 1


def _data(args, index: int):
    """This process's synthetic batch, tiled over every step (numpy)."""
    import numpy as np
    rng = np.random.default_rng(1000 + index)
    x = rng.random((args.local_batch, args.image_size, args.image_size, 3), np.float32)
    y = rng.integers(0, args.num_classes, args.local_batch)
    n = args.warmup_steps + args.steps
    return np.concatenate([x] * n), np.concatenate([y] * n)


def _model(keras, args, fused_bn: bool = False):
    """lbsgd's network, built by whichever `keras` module is importable as `keras`; its BN is
    that module's own BatchNormalization (what a user of that peer runs: tf_keras' is fused
    by itself, JAX's is Keras'), unless `fused_bn` (lbsgd's, its default)."""
    keras.utils.set_random_seed(0)
    from lbsgd.model import networks
    shape = (args.image_size, args.image_size, 3)
    if args.model == "resnet50":
        return networks.resnet50(shape, args.num_classes, fused_bn=fused_bn)
    depths = {"resnet8": 1, "resnet14": 2, "resnet20": 3, "resnet32": 5}
    return networks.cifar_resnet(shape, args.num_classes, depths[args.model], name=args.model,
                                 fused_bn=fused_bn)


def _same_start(model) -> None:
    """Weights every framework agrees on (--weights_out): He-normal kernels from NumPy's
    generator, constants (BN, biases) as built. The frameworks' own initialisers draw
    different numbers from the same seed."""
    import numpy as np
    rng = np.random.default_rng(0)
    start = []
    for w in model.get_weights():
        w = np.asarray(w)
        if w.size and np.all(w == w.flat[0]):
            start.append(w)
        else:
            std = np.sqrt(2.0 / np.prod(w.shape[:-1]))
            start.append((rng.standard_normal(w.shape) * std).astype(w.dtype))
    model.set_weights(start)


def _timer(keras, stamps: list):
    def end(batch, logs):
        float(logs["loss"])          # the step's result is here: nothing left in flight
        stamps.append(time.perf_counter())
    return keras.callbacks.LambdaCallback(on_train_batch_end=end)


def _fit(keras, model, args, x, y, callbacks=()) -> list:
    stamps = []
    model.fit(x, y, batch_size=args.local_batch, epochs=1, shuffle=False, verbose=0,
              callbacks=list(callbacks) + [_timer(keras, stamps)])
    return stamps


def _tf_threads():
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def run_lbsgd(args, index):
    tf = _tf_threads()
    import keras
    from lbsgd import parallel
    from lbsgd.parallel import runtime
    runtime.init(1, 1)
    model = _model(keras, args, fused_bn=True)
    if args.weights_out:
        _same_start(model)
    opt = parallel.DistributedOptimizer(keras.optimizers.SGD(0.01, momentum=0.9),
                                        exchange="grouped")
    model.compile(opt, "sparse_categorical_crossentropy", jit_compile=False)
    x, y = _data(args, index)
    del tf
    return model, _fit(keras, model, args, x, y, parallel.callbacks())


def run_horovod_tf_keras(args, index):
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras
    sys.modules["keras"] = tf_keras       # lbsgd's network and Horovod's layer see tf_keras
    _tf_threads()
    import horovod.tensorflow.keras as hvd
    hvd.init()
    model = _model(tf_keras, args)
    if args.weights_out:
        _same_start(model)
    opt = hvd.DistributedOptimizer(tf_keras.optimizers.SGD(0.01, momentum=0.9))
    model.compile(opt, "sparse_categorical_crossentropy")
    x, y = _data(args, index)
    return model, _fit(tf_keras, model, args, x, y,
                       [hvd.callbacks.BroadcastGlobalVariablesCallback(0)])


def run_jax_dataparallel(args, index):
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                               "intra_op_parallelism_threads=1")
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import keras
    count = int(os.environ["PEER_NUM_PROCESSES"])
    keras.distribution.initialize(os.environ["PEER_COORDINATOR"], count, index)
    distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    distribution.auto_shard_dataset = False     # each process already holds its own batches
    keras.distribution.set_distribution(distribution)
    model = _model(keras, args)
    if args.weights_out:
        _same_start(model)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
    x, y = _data(args, index)
    return model, _fit(keras, model, args, x, y)


def run_mwms(args, index):
    tf = _tf_threads()
    import keras
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = _model(keras, args)
        model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                      "sparse_categorical_crossentropy")
    x, y = _data(args, index)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.local_batch)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    stamps = []
    model.fit(ds.with_options(options), epochs=1, verbose=0,
              callbacks=[_timer(keras, stamps)])
    return model, stamps


def main(argv=None) -> int:
    args = _args(argv)
    index, count = _process()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    model, stamps = globals()[f"run_{args.peer}"](args, index)
    if index != 0:
        return 0
    import numpy as np
    steps = np.diff(stamps[args.warmup_steps - 1:])
    seconds = float(np.median(steps))
    if args.weights_out:
        tmp = args.weights_out + ".tmp.npz"
        # trainable weights and the state (BN moving statistics) apart: lbsgd averages
        # the state over ranks at every epoch end, Horovod's Keras layer keeps rank 0's
        np.savez(tmp, **{f"trainable_{i:03d}": np.asarray(w)
                         for i, w in enumerate(model.trainable_weights)},
                 **{f"state_{i:03d}": np.asarray(w)
                    for i, w in enumerate(model.non_trainable_weights)})
        os.replace(tmp, args.weights_out)
    print(json.dumps({"model": args.model, "peer": args.peer, "processes": count,
                      "local_batch": args.local_batch, "steps": int(len(steps)),
                      "seconds_per_step": seconds,
                      "images_per_second": count * args.local_batch / seconds}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
