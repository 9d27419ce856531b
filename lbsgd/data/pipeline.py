"""Per-rank input pipelines whose data order is a pure function of (seed, epoch).

Serves Codreanu et al. Sections IV-A/B and V-B (data-parallel minibatches
split evenly over workers, dataset held in RAM, Inception-style scale and
aspect-ratio augmentation that the final collapse switches off while the
random crop stays, evaluation on a 224 centre crop of the 256-resized image)
and Lee et al. Section IV-A (each worker takes B/P samples of the global
batch B). Because the epoch's permutation and every example's augmentation
are derived from (seed, epoch, index) only, a resumed run sees exactly the
batches an uninterrupted run would, and the global batch can change between
epochs.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from lbsgd.data.augment import AugmentSwitch
from lbsgd.data.sources import Source
from lbsgd.parallel.runtime import available_cores


def steps_per_epoch(num_train: int, global_batch: int) -> int:
    """Optimizer steps per epoch: full global batches only (every rank steps alike)."""
    steps = num_train // global_batch
    if steps < 1:
        raise ValueError(f"Argument `global_batch` must be <= the {num_train} training "
                         f"examples. Received: global_batch={global_batch}")
    return steps


def epoch_indices(num_train: int, seed: int, epoch, global_batch: int, rank: int,
                  size: int):
    """This rank's example indices for one epoch, in step order (graph-compatible).

    The epoch's permutation depends on (seed, epoch) only; the first
    steps x global_batch indices are used and each global batch is split into
    `size` contiguous local batches, rank r taking the r-th.
    """
    local = global_batch // size
    steps = num_train // global_batch
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(num_train, dtype=tf.int64),
        seed=tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)]))
    perm = tf.reshape(perm[:steps * global_batch], [steps, size, local])
    return tf.reshape(perm[:, rank, :], [-1])


def train_dataset(source: Source, global_batch: int, seed: int, rank: int, size: int,
                  first_epoch: int, last_epoch: int,
                  augment_switch: AugmentSwitch | None = None) -> tf.data.Dataset:
    """Local batches for epochs [first_epoch, last_epoch), as one continuous stream.

    Yields exactly steps_per_epoch(...) batches of global_batch/size examples
    per epoch, so it suits `model.fit(steps_per_epoch=..., initial_epoch=...)`.
    `augment_switch` gates scale/aspect augmentation per epoch (default on).
    """
    epochs = tf.data.Dataset.range(first_epoch, last_epoch)
    return _epochs_batches(source, global_batch, seed, rank, size, epochs, augment_switch)


def epoch_train_dataset(source: Source, global_batch: int, seed: int, rank: int, size: int,
                        epoch, augment_switch: AugmentSwitch | None = None) -> tf.data.Dataset:
    """train_dataset's local batches of one epoch (the same examples and augmentation).

    `epoch` is an int, or an int64 tf.Variable read whenever an iterator
    starts, so one pipeline serves every epoch without copying the examples.
    """
    epochs = tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).map(
        lambda _: tf.cast(epoch, tf.int64))
    return _epochs_batches(source, global_batch, seed, rank, size, epochs, augment_switch)


def _epochs_batches(source: Source, global_batch: int, seed: int, rank: int, size: int,
                    epochs: tf.data.Dataset, augment_switch) -> tf.data.Dataset:
    """This rank's local batches of each epoch in `epochs` (a dataset of int64 epochs)."""
    if global_batch % size:
        raise ValueError(f"Argument `global_batch` must divide evenly over {size} ranks. "
                         f"Received: global_batch={global_batch}")
    steps_per_epoch(source.num_train, global_batch)
    decode = source.decode
    train_items = tf.constant(source.train_items)
    train_labels = tf.constant(source.train_labels)

    def epoch_stream(epoch):
        idx = epoch_indices(source.num_train, seed, epoch, global_batch, rank, size)
        positions = tf.data.Dataset.from_tensor_slices(idx)

        def example(i):
            x = tf.gather(train_items, i)
            y = tf.gather(train_labels, i)
            ex_seed = tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64),
                                tf.cast(i, tf.int64)])
            on = augment_switch.is_on(epoch) if augment_switch is not None else True
            return decode(x, True, tf.cast(ex_seed, tf.int32), on), y
        return positions.map(example, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True)

    ds = epochs.flat_map(epoch_stream).batch(global_batch // size, drop_remainder=True)
    return _fixed_parallelism(ds.prefetch(tf.data.AUTOTUNE))


# Cores of training one pipeline thread serves by default. Measured on a 2-core AMD EPYC
# (benchmarks/results/pipeline.md): one thread decodes and augments 182 ImageNet-style
# JPEGs/s (500x375 -> 224) where ResNet-50 trains 0.5 img/s per core, and 6,037 32x32
# images/s where ResNet-20 trains 41 per core and the Fashion-MNIST ResNet-8, the lightest
# model lbsgd ships, about 590: one thread keeps up with 10 cores of the lightest model
# and 147-364 of the others. One per 4 cores leaves >= 2.5x for the lightest.
CORES_PER_PIPELINE_THREAD = 4


def pipeline_threads(cores: int | None = None) -> int:
    """tf.data threads of this rank's pipelines: env `LBSGD_PIPELINE_THREADS`, else one
    per CORES_PER_PIPELINE_THREAD (4) of the rank's cores (its intra-op threads), >= 1.

    A fixed private pool per rank: tf.data's default pool has a thread per core of the
    host in every rank, which oversubscribes a host shared by several ranks.
    """
    env = os.environ.get("LBSGD_PIPELINE_THREADS")
    if env:
        try:
            threads = int(env)
        except ValueError:
            threads = 0
        if threads < 1:
            raise ValueError(f"LBSGD_PIPELINE_THREADS must be an integer >= 1. "
                             f"Received: LBSGD_PIPELINE_THREADS={env!r}")
        return threads
    if cores is None:
        cores = tf.config.threading.get_intra_op_parallelism_threads() or available_cores()
    return max(1, math.ceil(cores / CORES_PER_PIPELINE_THREAD))


def _fixed_parallelism(ds: tf.data.Dataset) -> tf.data.Dataset:
    """tf.data's autotuning thread sleeps with a period that doubles up to a minute, and
    destroying an iterator waits for it: 20-35 s lost at the end of every `fit` (measured
    here). Fixed parallelism instead: a private pool of pipeline_threads() threads, which
    the maps' AUTOTUNE parallelism takes as its width once autotuning is off."""
    options = tf.data.Options()
    options.autotune.enabled = False
    options.threading.private_threadpool_size = pipeline_threads()
    return ds.with_options(options)


def _unaugmented_batches(source: Source, items, labels, idx, local_batch: int):
    ds = tf.data.Dataset.from_tensor_slices((tf.gather(items, idx), tf.gather(labels, idx)))
    ds = ds.map(lambda x, y: (source.decode(x, False, tf.zeros([2], tf.int32)), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _fixed_parallelism(ds.batch(max(1, local_batch)).cache().prefetch(tf.data.AUTOTUNE))


def val_dataset(source: Source, local_batch: int, rank: int, size: int) -> tf.data.Dataset:
    """This rank's share of the validation set (uneven shares allowed), in batches."""
    return _unaugmented_batches(source, source.val_items, source.val_labels,
                                np.arange(rank, source.num_val, size), local_batch)


def fixed_train_subset(source: Source, num: int, local_batch: int, rank: int,
                       size: int) -> tf.data.Dataset:
    """This rank's share of the first `num` training examples, unaugmented, in batches.

    The same examples every time (e.g. the cost F of Lee et al.'s theta)."""
    return _unaugmented_batches(source, source.train_items, source.train_labels,
                                np.arange(rank, min(num, source.num_train), size), local_batch)
