"""Fashion-MNIST through `data.name=fashion_mnist`: the idx files of Debian's package, shapes,
labels, the stratified subset, per-rank shards, and the missing-package error."""

import csv
import gzip
import hashlib
import json
import os

import numpy as np
import pytest

from conftest import assert_no_rank_started, horovodrun
from lbsgd import config as config_lib
from lbsgd import data
from lbsgd.config import ConfigError, DataConfig

FILES = [p for pair in config_lib.fashion_mnist_files(DataConfig(name="fashion_mnist")).values()
         for p in pair]
MISSING = [p for p in FILES if not os.path.isfile(p)]
needs_package = pytest.mark.skipif(
    bool(MISSING), reason=f"{MISSING[0] if MISSING else ''} is missing: Debian's "
                          f"{config_lib.FASHION_MNIST_PACKAGE} is not installed "
                          "(bash launch/install.sh installs it)")


@pytest.fixture(scope="module")
def source():
    return data.load_source(DataConfig(name="fashion_mnist", image_size=28, augment="crop"))


@needs_package
def test_reads_the_original_idx_files(source):
    assert source.train_items.shape == (60_000, 28, 28, 1)
    assert source.val_items.shape == (10_000, 28, 28, 1)
    assert source.train_items.dtype == np.uint8 and source.input_shape == (28, 28, 1)
    assert source.num_classes == 10
    # Zalando's published files: 6,000 training and 1,000 test images per class,
    # and the first labels of each file (ankle boot, T-shirt, T-shirt, dress, ...).
    assert np.bincount(source.train_labels).tolist() == [6000] * 10
    assert np.bincount(source.val_labels).tolist() == [1000] * 10
    assert source.train_labels[:5].tolist() == [9, 0, 0, 3, 0]
    assert source.val_labels[:5].tolist() == [9, 2, 1, 1, 6]
    assert data.num_train_examples(DataConfig(name="fashion_mnist")) == 60_000


@needs_package
def test_decoded_images_are_in_unit_range(source):
    decode = source.decode
    image = decode(source.train_items[0], False, np.zeros(2, np.int32)).numpy()
    assert image.shape == (28, 28, 1) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0 and image.max() > 0.5


@needs_package
def test_stratified_subset_is_the_first_of_each_class(source):
    cfg = DataConfig(name="fashion_mnist", image_size=28, train_subset=1000)
    sub = data.load_source(cfg)
    assert sub.num_train == 1000 == data.num_train_examples(cfg)
    assert np.bincount(sub.train_labels).tolist() == [100] * 10
    first_nines = np.flatnonzero(source.train_labels == 9)[:100]
    np.testing.assert_array_equal(sub.train_items[sub.train_labels == 9],
                                  source.train_items[first_nines])
    assert sub.num_val == 10_000                 # evaluation keeps the whole test set
    with pytest.raises(ConfigError, match="train_subset=1005"):
        data.load_source(DataConfig(name="fashion_mnist", image_size=28, train_subset=1005))


def _digest(image_uint8):
    return hashlib.sha1(np.ascontiguousarray(image_uint8, np.uint8).tobytes()).hexdigest()


def _digests(ds):
    return [_digest(np.round(x * 255.0)) for xb, _ in ds for x in xb.numpy()]


@needs_package
def test_rank_shards_are_disjoint_and_a_function_of_seed_and_epoch():
    sub = data.load_source(DataConfig(name="fashion_mnist", image_size=28, train_subset=500,
                                      augment="none"))
    global_batch, steps = 100, 5
    shards = [_digests(data.train_dataset(sub, global_batch, 3, rank, 2, 0, 1))
              for rank in (0, 1)]
    assert [len(s) for s in shards] == [steps * global_batch // 2] * 2
    assert not set(shards[0]) & set(shards[1])                  # disjoint
    everything = {_digest(x) for x in sub.train_items}
    assert set(shards[0]) | set(shards[1]) == everything         # one epoch covers the subset
    again = _digests(data.train_dataset(sub, global_batch, 3, 0, 2, 0, 1))
    other_epoch = _digests(data.train_dataset(sub, global_batch, 3, 0, 2, 1, 2))
    assert again == shards[0] and other_epoch != shards[0]


def test_idx_reader_rejects_truncated_files(tmp_path):
    good = tmp_path / "labels-idx1-ubyte.gz"
    header = bytes([0, 0, 0x08, 1]) + (4).to_bytes(4, "big")
    with gzip.open(good, "wb") as f:
        f.write(header + bytes([1, 2, 3, 4]))
    assert data.read_idx(str(good)).tolist() == [1, 2, 3, 4]
    bad = tmp_path / "short-idx1-ubyte.gz"
    with gzip.open(bad, "wb") as f:
        f.write(header + bytes([1, 2]))
    with pytest.raises(ConfigError, match="truncated"):
        data.read_idx(str(bad))


def test_missing_files_name_the_path_and_the_package(tmp_path):
    with pytest.raises(ConfigError) as err:
        config_lib.check_data_files(DataConfig(name="fashion_mnist", data_dir=str(tmp_path)))
    assert str(tmp_path) in str(err.value) and "train-images-idx3-ubyte.gz" in str(err.value)
    proc = horovodrun(2, "-m", "lbsgd.train", "--config", "configs/fashion_mnist_resnet.py",
                      f"--data.data_dir={tmp_path}", f"--run_dir={tmp_path}/run", check=False,
                      all_ranks=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "data.data_dir" in lines[0] and "train-images-idx3-ubyte.gz" in lines[0]
    assert_no_rank_started(proc)
    assert not (tmp_path / "run").exists()


@needs_package
def test_two_rank_training_on_fashion_mnist(tmp_path):
    run_dir = tmp_path / "run"
    horovodrun(2, "-m", "lbsgd.train", "--config", "configs/fashion_mnist_resnet.py",
               "--data.train_subset=2000", "--batch_size=64", "--epochs=3",
               "--model.bn_moving_average_fraction=0.5",
               "--schedule.warmup_epochs=0", "--schedule.collapse_epochs=1",
               f"--run_dir={run_dir}")
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert [r["phase"] for r in rows] == ["main", "main", "collapse"]
    assert [int(float(r["augment"])) for r in rows] == [1, 1, 0]
    assert {int(r["steps"]) for r in rows} == {2000 // 64}
    summary = json.load(open(run_dir / "summary.json"))
    assert summary["num_ranks"] == 2 and summary["num_train_examples"] == 2000
    losses = [float(r["loss"]) for r in rows]
    assert losses[2] < losses[1] < losses[0]                 # it learns
    assert 0.3 < summary["final"]["val_accuracy"] <= 1.0     # chance is 0.1 on the 10,000 test images
