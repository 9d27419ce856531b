"""Datasets as examples addressable by index: digits, Fashion-MNIST, folders, CIFAR-10, ImageNet, phantoms.

Sources:
  * "digits": scikit-learn's 8x8 handwritten digits (ships with the package,
    no download), upscaled to `image_size` - the offline default.
  * "fashion_mnist": Zalando's Fashion-MNIST (60,000 train / 10,000 test
    28x28 grayscale images, 10 classes) from the original idx files that
    Debian's `dataset-fashion-mnist` package installs; evaluation on the
    10,000 test images.
  * "synthetic": random images and labels, for benchmarks and smoke tests.
  * "folder": `data_dir/{train,val}/<class>/<image>` files (JPEG/PNG/...).
  * "cifar10", "imagenet2012": tensorflow-datasets, prepared under `data_dir`.
  * "phantom": noisy -> clean randomised Shepp-Logan phantoms (restoration;
    "labels" are the clean images).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import numpy as np
import tensorflow as tf

from lbsgd.config import (IMAGE_EXTENSIONS, ConfigError, DataConfig,
                          check_data_files, fashion_mnist_files, train_examples)
from lbsgd.data.augment import array_decode, file_decode


@dataclasses.dataclass
class Source:
    """Examples addressable by index, plus how to turn one into a model input.

    Attributes:
      train_items, val_items: tensors (or tuples of tensors) whose first axis
        indexes examples (images in RAM, or file paths).
      train_labels, val_labels: int labels, same first axis.
      decode: maps (item, training: bool, seed, augment_on) -> float image;
        `augment_on` (a bool tensor, see AugmentSwitch) gates scale/aspect
        augmentation.
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


def _num_val(num_examples: int, cfg: DataConfig) -> int:
    """Held-out examples of a dataset without a validation split (digits)."""
    return int(round(num_examples * cfg.validation_fraction))


def num_train_examples(cfg: DataConfig) -> int:
    """Training-set size a data config implies, without loading the data."""
    n = train_examples(cfg)
    if n is None:
        raise ValueError(f"Argument `steps_per_epoch` is needed for data.name={cfg.name!r} "
                         "(its size is only known once loaded).")
    return n


def _digits(cfg: DataConfig, seed: int) -> Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[..., None]
    labels = bunch.target.astype(np.int32)
    images = tf.image.resize(images, [cfg.image_size, cfg.image_size],
                             method="bilinear").numpy()
    order = np.random.default_rng(12345).permutation(len(labels))  # fixed split
    n_val = _num_val(len(labels), cfg)
    val, train = order[:n_val], order[n_val:]
    return Source("digits", images[train], labels[train], images[val], labels[val],
                  (cfg.image_size, cfg.image_size, 1), 10,
                  array_decode(cfg))


@functools.lru_cache(maxsize=8)
def read_idx(path: str) -> np.ndarray:
    """An idx file (LeCun's MNIST format, optionally gzipped) as a read-only numpy array
    (cached: repeated runs in one process parse it once)."""
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ConfigError(f"Field `data.data_dir` holds an unreadable idx file {path!r} "
                          f"({err}).") from None
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
              0x0E: ">f8"}
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dtypes:
        raise ConfigError(f"Field `data.data_dir` holds {path!r}, which is not an idx file.")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ConfigError(f"Field `data.data_dir` holds {path!r}, whose header promises "
                          f"shape {shape} but which has {data.size} values (truncated?).")
    return data.reshape(shape)


def _fashion_mnist(cfg: DataConfig, seed: int) -> Source:
    check_data_files(cfg)
    arrays = {}
    for split, (images_path, labels_path) in fashion_mnist_files(cfg).items():
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise ConfigError(f"Field `data.data_dir`: {images_path!r} holds {images.shape} "
                              f"images for {labels.shape} labels in {labels_path!r}.")
        images = images[..., None]
        if cfg.image_size != images.shape[1]:
            images = np.round(tf.image.resize(images.astype(np.float32),
                                              [cfg.image_size] * 2).numpy()).clip(0, 255)
            images = images.astype(np.uint8)
        arrays[split] = (images, labels.astype(np.int32))
    (xt, yt), (xv, yv) = arrays["train"], arrays["test"]
    return Source("fashion_mnist", xt, yt, xv, yv, (cfg.image_size, cfg.image_size, 1), 10,
                  array_decode(cfg, scale=1.0 / 255.0))


def _synthetic(cfg: DataConfig, seed: int, num_classes: int = 10) -> Source:
    rng = np.random.default_rng(seed)
    shape = (cfg.image_size, cfg.image_size, 3)
    n_val = max(1, int(cfg.num_train * cfg.validation_fraction))
    x = rng.random((cfg.num_train + n_val,) + shape, dtype=np.float32)
    y = rng.integers(0, num_classes, cfg.num_train + n_val).astype(np.int32)
    return Source("synthetic", x[:cfg.num_train], y[:cfg.num_train], x[cfg.num_train:],
                  y[cfg.num_train:], shape, num_classes, array_decode(cfg))


IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def _list_folder(split_dir: str, classes=None):
    import os
    if classes is None:
        classes = sorted(d for d in os.listdir(split_dir)
                         if os.path.isdir(os.path.join(split_dir, d)))
    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(split_dir, name)
        if not os.path.isdir(class_dir):
            continue
        found = [f for f in sorted(os.listdir(class_dir)) if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            raise ConfigError(f"Field `data.data_dir` has a class directory without images: "
                              f"{class_dir!r} (remove it, or add its images). "
                              f"Received: data.data_dir={os.path.dirname(split_dir)!r}")
        for f in found:
            paths.append(os.path.join(class_dir, f))
            labels.append(label)
    return classes, paths, np.array(labels, dtype=np.int32)


def _readable_images(paths, labels, cfg: DataConfig):
    """(paths, labels) without unreadable files (empty, or not JPEG/PNG/GIF/BMP by their
    first bytes): ConfigError naming the first one, or with `data.skip_unreadable` a count."""
    bad = []
    for p in paths:
        try:
            with open(p, "rb") as f:
                head = f.read(8)
        except OSError:
            head = b""
        if not any(head.startswith(sig) for sig in IMAGE_SIGNATURES):
            bad.append(p)
            if not cfg.skip_unreadable:
                what = "is empty" if not head else "is not a JPEG, PNG, GIF or BMP image"
                raise ConfigError(f"Field `data.data_dir` holds an unreadable image {p!r} "
                                  f"({what}); remove it, or set --data.skip_unreadable=true. "
                                  f"Received: data.data_dir={cfg.data_dir!r}")
    if bad:
        import sys
        print(f"lbsgd: skipped {len(bad)} unreadable image file(s) under {cfg.data_dir!r} "
              f"(data.skip_unreadable), e.g. {bad[0]!r}", file=sys.stderr)
        unreadable = set(bad)
        keep = np.array([p not in unreadable for p in paths])
        paths = [p for p, k in zip(paths, keep) if k]
        labels = labels[keep]
    return paths, labels


def _read_all(paths) -> np.ndarray:
    out = np.empty(len(paths), dtype=object)
    for i, p in enumerate(paths):
        with open(p, "rb") as f:
            out[i] = f.read()
    return out


def _folder(cfg: DataConfig, seed: int) -> Source:
    import os
    train_dir = os.path.join(cfg.data_dir, "train")
    val_dir = next((os.path.join(cfg.data_dir, d) for d in ("val", "validation")
                    if os.path.isdir(os.path.join(cfg.data_dir, d))), None)
    if not os.path.isdir(train_dir) or val_dir is None:
        raise ConfigError("Field `data.data_dir` must hold train/<class>/ and val/<class>/ "
                          f"image folders. Received: data.data_dir={cfg.data_dir!r}")
    classes, train_paths, train_labels = _list_folder(train_dir)
    _, val_paths, val_labels = _list_folder(val_dir, classes)
    train_paths, train_labels = _readable_images(train_paths, train_labels, cfg)
    val_paths, val_labels = _readable_images(val_paths, val_labels, cfg)
    if not train_paths or not val_paths:
        raise ConfigError("Field `data.data_dir` has no images under train/<class>/ or "
                          f"val/<class>/. Received: data.data_dir={cfg.data_dir!r}")
    if cfg.cache:  # encoded bytes in RAM, as the paper copies ImageNet to RAM
        train_items, val_items = _read_all(train_paths), _read_all(val_paths)
    else:
        train_items, val_items = np.array(train_paths), np.array(val_paths)
    return Source("folder", train_items, train_labels, val_items, val_labels,
                  (cfg.image_size, cfg.image_size, 3), len(classes),
                  file_decode(cfg, in_ram=cfg.cache))


def _tfds_builder(name: str, cfg: DataConfig):
    import tensorflow_datasets as tfds
    builder = tfds.builder(name, data_dir=cfg.data_dir)
    if not builder.is_prepared():
        raise ConfigError(f"Field `data.data_dir` must hold a prepared tensorflow-datasets "
                          f"{name} (lbsgd never downloads: prepare it there first). "
                          f"Received: data.data_dir={cfg.data_dir!r}")
    return builder


def _cifar10(cfg: DataConfig, seed: int) -> Source:
    import tensorflow_datasets as tfds
    builder = _tfds_builder("cifar10", cfg)

    def split(name):
        d = tfds.as_numpy(builder.as_dataset(split=name, batch_size=-1))
        images = d["image"].astype(np.float32) / 255.0
        if cfg.image_size != images.shape[1]:
            images = tf.image.resize(images, [cfg.image_size] * 2).numpy()
        return images, d["label"].astype(np.int32)
    (xt, yt), (xv, yv) = split("train"), split("test")
    return Source("cifar10", xt, yt, xv, yv, (cfg.image_size, cfg.image_size, 3), 10,
                  array_decode(cfg))


def _imagenet2012(cfg: DataConfig, seed: int) -> Source:
    import tensorflow_datasets as tfds
    if not cfg.cache:
        raise ConfigError("Field `data.cache` must be true for imagenet2012 (examples are "
                          "addressed by index in RAM). Received: data.cache=False")
    builder = _tfds_builder("imagenet2012", cfg)

    def split(name):
        ds = builder.as_dataset(split=name, shuffle_files=False,
                                decoders={"image": tfds.decode.SkipDecoding()})
        items, labels = [], []
        for ex in ds.as_numpy_iterator():
            items.append(ex["image"])
            labels.append(ex["label"])
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return arr, np.array(labels, dtype=np.int32)
    train_items, train_labels = split("train")
    val_items, val_labels = split("validation")
    return Source("imagenet2012", train_items, train_labels, val_items, val_labels,
                  (cfg.image_size, cfg.image_size, 3),
                  builder.info.features["label"].num_classes,
                  file_decode(cfg, in_ram=True))


def _phantom(cfg: DataConfig, seed: int) -> Source:
    from lbsgd.data import phantom

    n_val = max(1, int(round(cfg.num_train * cfg.validation_fraction)))
    x, y = phantom.restoration_pairs(cfg.num_train + n_val, cfg.image_size, cfg.noise_std,
                                     seed=12345)  # a fixed dataset, like a downloaded one
    return Source("phantom", x[:cfg.num_train], y[:cfg.num_train], x[cfg.num_train:],
                  y[cfg.num_train:], (cfg.image_size, cfg.image_size, 1), 0,
                  lambda image, training, seed, augment_on=True: tf.cast(image, tf.float32))


_SOURCES = {"digits": _digits, "fashion_mnist": _fashion_mnist, "phantom": _phantom, "synthetic": _synthetic, "folder": _folder,
            "cifar10": _cifar10, "imagenet2012": _imagenet2012}


def load_source(cfg: DataConfig, seed: int = 0) -> Source:
    """The dataset named by `cfg.name`, read from the package or `cfg.data_dir`."""
    if cfg.name not in _SOURCES:
        raise ValueError(f"Field `data.name` has no loader in this version of lbsgd. "
                         f"Received: data.name={cfg.name!r}")
    source = _SOURCES[cfg.name](cfg, seed)
    return stratified_subset(source, cfg.train_subset) if cfg.train_subset else source


def subset_indices(labels: np.ndarray, size: int, num_classes: int) -> np.ndarray:
    """The first size // num_classes examples of each class, in file order (sorted indices)."""
    per_class = size // num_classes
    picked = [np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]
    short = [c for c, p in enumerate(picked) if len(p) < per_class]
    if per_class < 1 or size % num_classes or short:
        raise ConfigError(f"Field `data.train_subset` must be a multiple of the {num_classes} "
                          f"classes, each having that many examples (classes short: {short}). "
                          f"Received: data.train_subset={size}")
    return np.sort(np.concatenate(picked))


def stratified_subset(source: Source, size: int) -> Source:
    """`source` with a fixed, stratified training subset of `size` examples (classification)."""
    if source.num_classes < 1:
        raise ConfigError(f"Field `data.train_subset` needs a classification dataset. "
                          f"Received: data.train_subset={size} for data.name={source.name!r}")
    idx = subset_indices(source.train_labels, size, source.num_classes)
    return dataclasses.replace(source, train_items=source.train_items[idx],
                               train_labels=source.train_labels[idx])
