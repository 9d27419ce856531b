"""Precise BN (Wu & Johnson 2021): recomputed BN statistics against a NumPy reference, at 1 and
2 ranks, the callback's hooks, the config field, and a real 2-rank run whose weights it leaves
bit-identical."""

import csv
import importlib.util
import os

import keras
import numpy as np
import pytest

from conftest import TINY_DIGITS, horovodrun
from lbsgd import config
from lbsgd.model import networks as models
from lbsgd.model import precise_bn
from lbsgd.parallel import runtime
from lbsgd.run import checkpoint as ckpt

CHECKS = os.path.join(os.path.dirname(__file__), "distributed", "precise_bn_checks.py")
_spec = importlib.util.spec_from_file_location("precise_bn_checks", CHECKS)
checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checks)


def reference_statistics(model, batches):
    """NumPy: each BN's input population (mean, variance) over all batches' samples and
    positions, the first BN normalising each batch with that batch's moments."""
    conv1, bn1, conv2 = (model.get_layer(n) for n in ("conv1", "bn1", "conv2"))
    gamma, beta = (keras.ops.convert_to_numpy(v).astype(np.float64) for v in (bn1.gamma, bn1.beta))
    inputs1, inputs2 = [], []
    for x, _ in batches:
        h1 = keras.ops.convert_to_numpy(conv1(x)).astype(np.float64)
        mean, var = h1.mean(axis=(0, 1, 2)), h1.var(axis=(0, 1, 2))
        y = np.maximum(gamma * (h1 - mean) / np.sqrt(var + bn1.epsilon) + beta, 0.0)
        h2 = keras.ops.convert_to_numpy(conv2(y.astype(np.float32))).astype(np.float64)
        inputs1.append(h1.reshape(-1, h1.shape[-1]))
        inputs2.append(h2.reshape(-1, h2.shape[-1]))
    return {name: (np.concatenate(h).mean(axis=0), np.concatenate(h).var(axis=0))
            for name, h in (("bn1", inputs1), ("bn2", inputs2))}


def assert_statistics(stats, reference):
    for name, (mean, var) in reference.items():
        scale = np.sqrt(var)
        np.testing.assert_allclose(stats[f"{name}/moving_mean"], mean, rtol=1e-5,
                                   atol=1e-5 * scale.max(), err_msg=name)
        np.testing.assert_allclose(stats[f"{name}/moving_variance"], var, rtol=1e-5,
                                   err_msg=name)


def statistics(model):
    return {f"{n}/{w}": keras.ops.convert_to_numpy(getattr(model.get_layer(n), w))
            for n in ("bn1", "bn2") for w in ("moving_mean", "moving_variance")}


def test_one_process_equals_numpy_population_statistics():
    runtime.init()
    model = checks.bn_model()
    batches = checks.rank_batches(0)              # 8 + 8 + 5 samples: weighted by samples
    trainable = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    assert precise_bn.recompute_bn_statistics(model, batches, num_batches=3) == 3
    stats = statistics(model)
    assert_statistics(stats, reference_statistics(model, batches))
    assert np.all(np.abs(stats["bn1/moving_mean"] - 5.0) > 0.1)       # not the stale values
    for before, v in zip(trainable, model.trainable_variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), before)
    # num_batches caps the batches drawn; a longer request stops where `batches` ends
    assert precise_bn.recompute_bn_statistics(model, batches, num_batches=2) == 2
    assert_statistics(statistics(model), reference_statistics(model, batches[:2]))
    assert precise_bn.recompute_bn_statistics(model, iter(batches), num_batches=9) == 3


def test_nested_model_statistics_are_its_inner_bns():
    runtime.init()
    inner = checks.bn_model()
    outer = keras.Sequential([keras.Input((6, 6, 2)), inner, keras.layers.Dense(2)])
    assert precise_bn.bn_layers(outer) == [inner.get_layer("bn1"), inner.get_layer("bn2")]
    precise_bn.recompute_bn_statistics(outer, checks.rank_batches(0), num_batches=3)
    assert_statistics(statistics(inner), reference_statistics(inner, checks.rank_batches(0)))


def test_mixed_bfloat16_statistics_are_float32():
    runtime.init()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = checks.bn_model()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    precise_bn.recompute_bn_statistics(model, checks.rank_batches(0), num_batches=3)
    stats = statistics(model)
    assert {v.dtype for v in stats.values()} == {np.dtype("float32")}
    # of the bfloat16 conv outputs (~1e-3 off the float32 ones), reduced in float32
    assert_statistics(stats, reference_statistics(model, checks.rank_batches(0)))


def test_refuses_bad_arguments():
    model = checks.bn_model()
    with pytest.raises(ValueError, match=r"Argument `num_batches` must be an int >= 1\. "
                                         r"Received: num_batches=0"):
        precise_bn.recompute_bn_statistics(model, checks.rank_batches(0), 0)
    with pytest.raises(ValueError, match="num_batches=-1"):
        precise_bn.PreciseBN(checks.rank_batches(0), -1)
    with pytest.raises(ValueError, match="Argument `batches` gave no batch"):
        precise_bn.recompute_bn_statistics(model, [], 2)


def test_callback_recomputes_once_per_epoch_before_validation():
    """In fit: before validation, or at the epoch end without one; evaluate alone: never."""
    runtime.init()
    model = checks.bn_model()
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), jit_compile=False)
    batches = checks.rank_batches(0)
    seen = []

    class Probe(keras.callbacks.Callback):       # runs after PreciseBN at every hook
        def on_test_begin(self, logs=None):
            seen.append(("test", statistics(self.model)))

        def on_epoch_end(self, epoch, logs=None):
            seen.append(("end", statistics(self.model), logs["precise_bn_batches"]))

    calls = []
    cb = precise_bn.PreciseBN(lambda epoch: calls.append(epoch) or batches, 2)
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    model.fit(x, y, batch_size=7, epochs=3, validation_data=(x[:6], y[:6]), validation_freq=2,
              callbacks=[cb, Probe()], verbose=0, shuffle=False)
    assert calls == [0, 1, 2]                     # once per epoch, that epoch's batches
    assert [s[0] for s in seen] == ["end", "test", "end", "end"]
    assert [s[2] for s in seen if s[0] == "end"] == [2, 2, 2]
    # at each point the statistics are the population ones of the weights then
    assert_statistics(seen[-1][1], reference_statistics(model, batches[:2]))
    for key, value in seen[1][1].items():        # the epoch end kept validation's values
        np.testing.assert_array_equal(seen[2][1][key], value)
    model.evaluate(x, y, verbose=0)
    assert calls == [0, 1, 2]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("precise_bn") / "stats.npz"
    horovodrun(2, CHECKS, str(out), timeout=300)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def test_two_ranks_equal_the_population_of_the_union(two_ranks):
    assert int(two_ranks["size"]) == 2 and int(two_ranks["used"]) == 3
    model = checks.bn_model()
    union = reference_statistics(model, checks.rank_batches(0) + checks.rank_batches(1))
    assert_statistics(two_ranks, union)
    per_rank = [reference_statistics(model, checks.rank_batches(r)) for r in (0, 1)]
    # not the mean of the ranks' variances: that is off by >= 3000x the tolerance
    for name, off in (("bn1", 0.3), ("bn2", 0.03)):   # bn1 normalises each rank's batches
        averaged = (per_rank[0][name][1] + per_rank[1][name][1]) / 2
        assert np.max(np.abs(averaged / union[name][1] - 1)) > off, name
    for i, w in enumerate(model.weights):         # all else as it was
        if "moving" not in w.path:
            np.testing.assert_array_equal(two_ranks[f"after/{i}"], two_ranks[f"before/{i}"])


def test_training_batches_are_the_epochs_own_and_at_most_one_epoch():
    import tensorflow as tf
    from lbsgd import data

    cfg = config.DataConfig(name="digits", image_size=8, augment="scale_aspect")
    source = data.load_source(cfg)
    switch = data.AugmentSwitch(3)
    switch.set(2, False)
    steps = data.steps_per_epoch(source.num_train, 256)
    stream = list(data.train_dataset(source, 256, 0, 1, 2, 0, 3, switch))
    epoch = tf.Variable(0, dtype=tf.int64)
    batches = precise_bn.training_batches(source, 256, 0, 1, 2, epoch, switch)
    for e in (1, 2):                              # one pipeline, the epoch read per iterator
        epoch.assign(e)
        drawn = list(batches)
        assert len(drawn) == steps
        for (x, y), (xs, ys) in zip(drawn, stream[e * steps:(e + 1) * steps]):
            np.testing.assert_array_equal(x, xs)
            np.testing.assert_array_equal(y, ys)
    first = next(iter(precise_bn.training_batches(source, 256, 0, 1, 2, 1, switch)))
    np.testing.assert_array_equal(first[0], stream[steps][0])     # an int epoch as well


def test_declared_after_sync_model_state():
    from lbsgd import parallel
    from lbsgd.run import trainer

    with pytest.raises(ValueError, match="Callback SyncModelState must come before PreciseBN"):
        trainer.check_callback_order([precise_bn.PreciseBN([], 1), parallel.SyncModelState()])


def test_config_field_is_validated_and_documented():
    assert config.ModelConfig().precise_bn_batches == 0
    with pytest.raises(config.ConfigError) as err:
        config.ModelConfig(precise_bn_batches=-1)
    assert str(err.value) == ("Field `model.precise_bn_batches` must be >= 0. "
                              "Received: model.precise_bn_batches=-1")
    # what `--help` prints (tests/test_help.py checks every field is there)
    assert "precise BN" in config.attribute_docs(config.ModelConfig)["precise_bn_batches"]


# --- a real run: the trajectory is untouched, the statistics are not -------------------------

def checkpoint_arrays(run_dir):
    with np.load(os.path.join(run_dir, ckpt.CHECKPOINT_NAME)) as z:
        return {k: z[k] for k in z.files if k != "state"}


def test_train_run_keeps_the_weights_and_recomputes_the_statistics(short_run, tmp_path):
    baseline_dir, _ = short_run      # conftest: TINY_DIGITS --epochs=2 --schedule.warmup_epochs=1
    run_dir = tmp_path / "precise"
    horovodrun(2, *TINY_DIGITS, "--epochs=2", "--schedule.warmup_epochs=1",
               "--model.precise_bn_batches=2", f"--run_dir={run_dir}")
    base, precise = checkpoint_arrays(baseline_dir), checkpoint_arrays(run_dir)
    assert base.keys() == precise.keys()
    cfg = config.apply_overrides(config.load_config("configs/digits_resnet.py"),
                                 {"model.name": "resnet8", "data.image_size": "16"})
    paths = [v.path for v in models.build_model(cfg.model, (16, 16, 1), 10).variables]
    assert len(paths) == sum(k.startswith("model/") for k in base)
    moving = {f"model/{i}" for i, p in enumerate(paths) if "moving_" in p}
    assert len(moving) == 2 * 9                   # resnet8: 9 BN layers
    for key in base:                              # weights and optimizer state: bit-identical
        if key not in moving:
            np.testing.assert_array_equal(precise[key], base[key], err_msg=key)
    for key in moving:
        assert not np.array_equal(precise[key], base[key]), key
    with open(os.path.join(run_dir, "history.csv")) as f:
        assert [r["precise_bn_batches"] for r in csv.DictReader(f)] == ["2", "2"]
