"""Per-rank input pipelines whose data order is a pure function of (seed, epoch).

Serves Codreanu et al. Section IV-A/B (data-parallel minibatches split evenly
over workers, dataset held in RAM) and Lee et al. Section IV-A (each worker
takes B/P samples of the global batch B). Because the epoch's permutation is
derived from (seed, epoch) only, a resumed run sees exactly the batches an
uninterrupted run would, and the global batch size can change between epochs.

Sources:
  * "digits": scikit-learn's 8x8 handwritten digits (ships with the package,
    no download), upscaled to `image_size` - the offline default.
  * "synthetic": random images and labels, for benchmarks and smoke tests.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from lbsgd.config import DataConfig


@dataclasses.dataclass
class Source:
    """Examples addressable by index, plus how to turn one into a model input.

    Attributes:
      train_items, val_items: tensors (or tuples of tensors) whose first axis
        indexes examples (images in RAM, or file paths).
      train_labels, val_labels: int labels, same first axis.
      decode: maps (item, training: bool, seed) -> float image in [0, 1].
      input_shape: shape of one decoded image.
      num_classes: number of labels.
    """

    name: str
    train_items: object
    train_labels: np.ndarray
    val_items: object
    val_labels: np.ndarray
    input_shape: tuple
    num_classes: int
    decode: Callable

    @property
    def num_train(self) -> int:
        return int(len(self.train_labels))

    @property
    def num_val(self) -> int:
        return int(len(self.val_labels))


def _in_ram_decode(augment: str, image_size: int):
    def decode(image, training, seed):
        image = tf.cast(image, tf.float32)
        if training and augment in ("crop", "crop_flip"):
            pad = max(1, image_size // 8)
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            image = tf.image.stateless_random_crop(
                image, [image_size, image_size, image.shape[-1]], seed=seed)
            if augment == "crop_flip":
                image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
        return image
    return decode


def _digits(cfg: DataConfig, seed: int) -> Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., None]
    labels = bunch.target.astype(np.int32)
    images = tf.image.resize(images, [cfg.image_size, cfg.image_size],
                             method="bilinear").numpy()
    order = np.random.default_rng(12345).permutation(len(labels))  # fixed split
    n_val = int(round(len(labels) * cfg.validation_fraction))
    val, train = order[:n_val], order[n_val:]
    return Source("digits", images[train], labels[train], images[val], labels[val],
                  (cfg.image_size, cfg.image_size, 1), 10,
                  _in_ram_decode(cfg.augment, cfg.image_size))


def _synthetic(cfg: DataConfig, seed: int, num_classes: int = 10) -> Source:
    rng = np.random.default_rng(seed)
    shape = (cfg.image_size, cfg.image_size, 3)
    n_val = max(1, int(cfg.num_train * cfg.validation_fraction))
    x = rng.random((cfg.num_train + n_val,) + shape, dtype=np.float32)
    y = rng.integers(0, num_classes, cfg.num_train + n_val).astype(np.int32)
    return Source("synthetic", x[:cfg.num_train], y[:cfg.num_train], x[cfg.num_train:],
                  y[cfg.num_train:], shape, num_classes,
                  _in_ram_decode(cfg.augment, cfg.image_size))


_SOURCES = {"digits": _digits, "synthetic": _synthetic}


def load_source(cfg: DataConfig, seed: int = 0) -> Source:
    """The dataset named by `cfg.name`, read from the package or `cfg.data_dir`."""
    if cfg.name not in _SOURCES:
        raise ValueError(f"Field `data.name` has no loader in this version of lbsgd. "
                         f"Received: data.name={cfg.name!r}")
    return _SOURCES[cfg.name](cfg, seed)


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
                  first_epoch: int, last_epoch: int) -> tf.data.Dataset:
    """Local batches for epochs [first_epoch, last_epoch), as one continuous stream.

    Yields exactly steps_per_epoch(...) batches of global_batch/size examples
    per epoch, so it suits `model.fit(steps_per_epoch=..., initial_epoch=...)`.
    """
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
            return decode(x, True, tf.cast(ex_seed, tf.int32)), y
        return positions.map(example, num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=True)

    epochs = tf.data.Dataset.range(first_epoch, last_epoch)
    ds = epochs.flat_map(epoch_stream).batch(global_batch // size, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def val_dataset(source: Source, local_batch: int, rank: int, size: int) -> tf.data.Dataset:
    """This rank's share of the validation set (uneven shares allowed), in batches."""
    idx = np.arange(rank, source.num_val, size)
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.gather(source.val_items, idx), tf.gather(source.val_labels, idx)))
    ds = ds.map(lambda x, y: (source.decode(x, False, tf.zeros([2], tf.int32)), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(local_batch).cache().prefetch(tf.data.AUTOTUNE)
