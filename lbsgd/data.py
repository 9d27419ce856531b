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

from lbsgd import config
from lbsgd.config import ConfigError, DataConfig, check_data_files, fashion_mnist_files

EVAL_RESIZE_RATIO = 256 / 224  # evaluate on a 224 centre crop of the 256-resized image


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


class AugmentSwitch:
    """Per-epoch on/off switch for scale/aspect augmentation, read by the pipeline at run time.

    Holds one bool per epoch in a variable that the input pipeline reads when
    it produces that epoch's examples, so a callback (the final collapse)
    turns augmentation off without rebuilding the pipeline, and a resumed run
    reads the same values. The pipeline prefetches, so set an epoch's value
    before the epoch before it ends (RecipePhases writes the whole plan at
    train begin).
    """

    def __init__(self, num_epochs: int, on: bool = True):
        if num_epochs < 1:
            raise ValueError(f"Argument `num_epochs` must be >= 1. Received: num_epochs={num_epochs}")
        self.num_epochs = int(num_epochs)
        self.variable = tf.Variable(tf.fill([self.num_epochs], bool(on)), trainable=False,
                                    name="augment_switch")

    def set(self, first_epoch: int, on: bool, last_epoch: int | None = None) -> None:
        """Sets epochs [first_epoch, last_epoch) (default: to the end) on or off."""
        values = self.variable.numpy()
        values[first_epoch:last_epoch] = bool(on)
        self.variable.assign(values)

    def is_on(self, epoch):
        """The switch for `epoch` (a tensor), clipped to the table's range."""
        e = tf.clip_by_value(tf.cast(epoch, tf.int32), 0, self.num_epochs - 1)
        return tf.gather(self.variable, e)

    def values(self) -> list[bool]:
        return [bool(v) for v in self.variable.numpy()]


def _flip(image, seed, enabled):
    if not enabled:
        return image
    return tf.image.stateless_random_flip_left_right(image, seed=seed + 1)


def random_resized_crop(image, size: int, seed, min_area: float = 0.08):
    """Inception scale and aspect-ratio augmentation: a random box of area
    [min_area, 1] and aspect ratio [3/4, 4/3] of the image, resized to size x size."""
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([1, 0, 4], tf.float32), seed=seed,
        min_object_covered=min_area, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, extent)
    return tf.image.resize(crop, [size, size], method="bilinear", antialias=True)


def resize_shorter_side(image, side: int):
    """Resizes so the shorter side is `side`, keeping the aspect ratio."""
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = side / tf.reduce_min(hw)
    new = tf.cast(tf.round(hw * scale), tf.int32)
    return tf.image.resize(image, tf.maximum(new, side), method="bilinear", antialias=True)


def _augment(image, seed, augment_on, cfg: DataConfig, crop):
    """Training augmentation of `cfg.augment`: "crop", or "scale_aspect" gated by
    `augment_on` (random-resized crop when on, the plain `crop` when off)."""
    if cfg.augment == "crop":
        return _flip(crop(image, seed), seed, cfg.flip)
    return tf.cond(tf.convert_to_tensor(augment_on),
                   lambda: _flip(random_resized_crop(image, cfg.image_size, seed, cfg.min_area),
                                 seed, cfg.flip),
                   lambda: crop(image, seed))


def _array_decode(cfg: DataConfig, scale: float = 1.0):
    """Images already in RAM at `image_size` (digits, Fashion-MNIST, synthetic): pad-and-crop
    style. `scale` multiplies the stored values (1/255 for uint8 pixels)."""
    size, pad = cfg.image_size, max(1, cfg.image_size // 8)

    def crop(image, seed):
        image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        return tf.image.stateless_random_crop(image, [size, size, image.shape[-1]], seed=seed)

    def decode(image, training, seed, augment_on=True):
        image = tf.cast(image, tf.float32)
        if scale != 1.0:
            image = image * scale
        if not training or cfg.augment == "none":
            return image
        return _augment(image, seed, augment_on, cfg, crop)
    return decode


def _file_decode(cfg: DataConfig, in_ram: bool):
    """Encoded image files (folder, ImageNet): ImageNet style crops and evaluation."""
    size = cfg.image_size
    resize = int(round(size * EVAL_RESIZE_RATIO))

    def crop(image, seed):
        image = resize_shorter_side(image, resize)
        return tf.image.stateless_random_crop(image, [size, size, 3], seed=seed)

    def decode(item, training, seed, augment_on=True):
        data = item if in_ram else tf.io.read_file(item)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32) / 255.0
        image.set_shape([None, None, 3])
        if not training or cfg.augment == "none":
            image = resize_shorter_side(image, resize)
            hw = tf.shape(image)[:2]
            top, left = (hw[0] - size) // 2, (hw[1] - size) // 2
            return tf.ensure_shape(image[top:top + size, left:left + size, :], [size, size, 3])
        return tf.ensure_shape(_augment(image, seed, augment_on, cfg, crop), [size, size, 3])
    return decode


DIGITS_EXAMPLES = config.DIGITS_EXAMPLES


def _num_val(num_examples: int, cfg: DataConfig) -> int:
    """Held-out examples of a dataset without a validation split (digits)."""
    return int(round(num_examples * cfg.validation_fraction))


def num_train_examples(cfg: DataConfig) -> int:
    """Training-set size a data config implies, without loading the data."""
    n = config.train_examples(cfg)
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
                  _array_decode(cfg))


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
                  _array_decode(cfg, scale=1.0 / 255.0))


def _synthetic(cfg: DataConfig, seed: int, num_classes: int = 10) -> Source:
    rng = np.random.default_rng(seed)
    shape = (cfg.image_size, cfg.image_size, 3)
    n_val = max(1, int(cfg.num_train * cfg.validation_fraction))
    x = rng.random((cfg.num_train + n_val,) + shape, dtype=np.float32)
    y = rng.integers(0, num_classes, cfg.num_train + n_val).astype(np.int32)
    return Source("synthetic", x[:cfg.num_train], y[:cfg.num_train], x[cfg.num_train:],
                  y[cfg.num_train:], shape, num_classes, _array_decode(cfg))


IMAGE_EXTENSIONS = config.IMAGE_EXTENSIONS


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
                  _file_decode(cfg, in_ram=cfg.cache))


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
                  _array_decode(cfg))


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
                  _file_decode(cfg, in_ram=True))


def _phantom(cfg: DataConfig, seed: int) -> Source:
    from lbsgd import phantom

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
    return _without_autotune(ds.prefetch(tf.data.AUTOTUNE))


def _without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """tf.data's autotuning thread sleeps with a period that doubles up to a minute, and
    destroying an iterator waits for it: 20-35 s lost at the end of every `fit` (measured
    here). The pipelines run ~10x faster than training, so fixed parallelism is enough."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _unaugmented_batches(source: Source, items, labels, idx, local_batch: int):
    ds = tf.data.Dataset.from_tensor_slices((tf.gather(items, idx), tf.gather(labels, idx)))
    ds = ds.map(lambda x, y: (source.decode(x, False, tf.zeros([2], tf.int32)), y),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _without_autotune(ds.batch(max(1, local_batch)).cache().prefetch(tf.data.AUTOTUNE))


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
