"""The data section of a config, and the checks of its files made before any rank starts.

Serves Codreanu et al. IV-A/B and Lee et al. IV-A (which examples each run
trains on): dataset names, sizes without loading, and the files a source needs.
"""

from __future__ import annotations

import dataclasses
import os

from lbsgd.config.checks import (AUGMENTATIONS, DATASETS, IMAGENET_TRAIN_EXAMPLES,
                                 RESTORATION_DATASETS, check_types, one_of, require)
from lbsgd.errors import ConfigError


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"   # where Debian's package puts it


FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"


FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@dataclasses.dataclass
class DataConfig:
    """Where the examples come from and how they are augmented (Codreanu et al. IV, V-B).

    Attributes:
      name: "digits" (ships with scikit-learn, the offline default),
        "fashion_mnist" (the original idx files of Debian's
        dataset-fashion-mnist: 60,000 train / 10,000 test images, 28x28),
        "synthetic" (random images), "folder" (`data_dir/train/<class>/*`
        and `data_dir/val/<class>/*` image files), "cifar10" or
        "imagenet2012" (tensorflow-datasets, prepared under `data_dir`), or
        "phantom" (randomised Shepp-Logan phantoms, noisy -> clean; Lee et al.).
      data_dir: local directory for "folder", "cifar10" and "imagenet2012";
        for "fashion_mnist" the idx files' directory (default
        /usr/share/datasets/fashion-mnist, where Debian installs them).
      image_size: side of the square training image fed to the model (224
        for ImageNet).
      augment: "none"; "crop" (random crop: pad-and-crop for in-RAM images,
        crop of the resized image for files); or "scale_aspect" (Inception
        random-resized crop, which the final collapse switches off, leaving
        the random crop only).
      flip: random left-right flip while augmentation is on.
      min_area: smallest crop area fraction of "scale_aspect" (Inception: 0.08).
      num_train: examples for generated datasets ("synthetic", "phantom").
      noise_std: Gaussian noise on the phantom restoration inputs.
      validation_fraction: held-out share for datasets without a split (digits).
      cache: keep examples in RAM (the paper copies ImageNet to RAM).
      skip_unreadable: "folder" data: skip image files that are empty or not
        JPEG/PNG/GIF/BMP (counted in the log) instead of stopping with an
        error naming the first one.
      train_subset: train on this many examples only (0: all; a multiple of
        the class count): the first train_subset / num_classes of each class
        in file order, a fixed, stratified subset; evaluation still uses the
        whole validation set.
    """

    name: str = "digits"
    data_dir: str = ""
    image_size: int = 32
    augment: str = "none"
    flip: bool = False
    min_area: float = 0.08
    num_train: int = 1024
    noise_std: float = 0.1
    validation_fraction: float = 0.2
    cache: bool = True
    train_subset: int = 0
    skip_unreadable: bool = False

    def __post_init__(self):
        check_types(self, "data.")
        one_of("data.name", self.name, DATASETS)
        one_of("data.augment", self.augment, AUGMENTATIONS)
        require(self.image_size >= 8, "data.image_size", self.image_size, "must be >= 8")
        require(0.0 < self.min_area <= 1.0, "data.min_area", self.min_area, "must be in (0, 1]")
        require(self.num_train >= 1, "data.num_train", self.num_train, "must be >= 1")
        require(self.noise_std >= 0, "data.noise_std", self.noise_std, "must be >= 0")
        require(self.train_subset >= 0, "data.train_subset", self.train_subset,
                 "must be >= 0 (0: the whole training set)")
        require(0.0 < self.validation_fraction < 1.0, "data.validation_fraction",
                 self.validation_fraction, "must be in (0, 1)")
        if self.name in RESTORATION_DATASETS:
            require(self.augment == "none", "data.augment", self.augment,
                     f"must be 'none' for data.name={self.name!r}")
        if self.name in ("folder", "cifar10", "imagenet2012"):
            require(bool(self.data_dir), "data.data_dir", self.data_dir,
                     f"must name a local directory for data.name={self.name!r}")


DIGITS_EXAMPLES = 1797


CIFAR10_TRAIN_EXAMPLES = 50_000


FASHION_MNIST_TRAIN_EXAMPLES = 60_000


def train_examples(cfg: DataConfig) -> int | None:
    """Training-set size a data config implies without loading it (None: known once loaded)."""
    if cfg.train_subset:
        return cfg.train_subset
    if cfg.name == "digits":
        return DIGITS_EXAMPLES - int(round(DIGITS_EXAMPLES * cfg.validation_fraction))
    return {"imagenet2012": IMAGENET_TRAIN_EXAMPLES, "cifar10": CIFAR10_TRAIN_EXAMPLES,
            "fashion_mnist": FASHION_MNIST_TRAIN_EXAMPLES, "synthetic": cfg.num_train,
            "phantom": cfg.num_train}.get(cfg.name)


def fashion_mnist_files(cfg: DataConfig) -> dict:
    """{split: (images path, labels path)} of Fashion-MNIST under data_dir (or Debian's)."""
    directory = cfg.data_dir or FASHION_MNIST_DIR
    return {split: tuple(os.path.join(directory, f) for f in files)
            for split, files in FASHION_MNIST_FILES.items()}


def check_data_files(cfg: DataConfig) -> None:
    """ConfigError (one line: the path and how to get it) when a dataset's local files are missing.

    Looks for files and directories only (no TensorFlow), so the launcher
    runs it before any rank starts.
    """
    if cfg.name == "fashion_mnist":
        for path in (p for pair in fashion_mnist_files(cfg).values() for p in pair):
            if not os.path.isfile(path):
                hint = (f"install Debian's {FASHION_MNIST_PACKAGE} package (apt-get install "
                        f"{FASHION_MNIST_PACKAGE}, or bash launch/install.sh)" if not cfg.data_dir
                        else "put the four Fashion-MNIST idx files there")
                raise ConfigError(f"Field `data.data_dir` must hold Fashion-MNIST: {path!r} is "
                                  f"missing; {hint}. Received: data.data_dir="
                                  f"{cfg.data_dir or FASHION_MNIST_DIR!r}")
    elif cfg.name in ("folder", "cifar10", "imagenet2012") and not os.path.isdir(cfg.data_dir):
        raise ConfigError(f"Field `data.data_dir` must name an existing directory for "
                          f"data.name={cfg.name!r}. Received: data.data_dir={cfg.data_dir!r}")
    elif cfg.name == "folder":
        check_image_folder(cfg.data_dir)


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def check_image_folder(data_dir: str) -> None:
    """ConfigError unless `data_dir` holds train/<class>/ and val/<class>/ (or validation/)
    with an image file in every training class and in the validation split. Names and
    directories only, so the launcher refuses a bad folder before any rank starts (the ranks
    check each image's first bytes when they load it)."""
    train_dir = os.path.join(data_dir, "train")
    val_dir = next((os.path.join(data_dir, d) for d in ("val", "validation")
                    if os.path.isdir(os.path.join(data_dir, d))), None)
    if not os.path.isdir(train_dir) or val_dir is None:
        raise ConfigError("Field `data.data_dir` must hold train/<class>/ and val/<class>/ "
                          f"image folders. Received: data.data_dir={data_dir!r}")

    def images(class_dir):
        return any(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(class_dir))

    classes = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
    if not classes:
        raise ConfigError(f"Field `data.data_dir` has no class directories in {train_dir!r} "
                          "(train/<class>/<image>). Received: data.data_dir="
                          f"{data_dir!r}")
    for name in classes:
        if not images(os.path.join(train_dir, name)):
            raise ConfigError(f"Field `data.data_dir` has a class directory without images: "
                              f"{os.path.join(train_dir, name)!r} (remove it, or add its "
                              f"images). Received: data.data_dir={data_dir!r}")
    if not any(os.path.isdir(os.path.join(val_dir, c)) and images(os.path.join(val_dir, c))
               for c in classes):
        raise ConfigError(f"Field `data.data_dir` has no images under {val_dir!r} in the "
                          f"training classes {classes}. Received: data.data_dir={data_dir!r}")
