"""Fused BN (lbsgd.model.batchnorm) against Keras' own BatchNormalization: outputs, gradients and
moving statistics in training and inference, float32 and mixed_bfloat16, the inputs it leaves to
Keras, the config field, and the export that names Keras' own layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lbsgd import config
from lbsgd.model import batchnorm
from lbsgd.model import export
from lbsgd.model import networks as models

SHAPE = (8, 5, 5, 3)      # n = 8 * 5 * 5 = 200 values per channel
WEIGHTS = tf.constant(np.random.default_rng(9).normal(size=SHAPE).astype(np.float32))


@pytest.fixture(autouse=True)
def _float32_policy():
    keras.mixed_precision.set_dtype_policy("float32")
    yield
    keras.mixed_precision.set_dtype_policy("float32")


def pair(momentum=0.9):
    """A fused layer and Keras' layer with the same random gamma, beta and moving statistics."""
    rng = np.random.default_rng(0)
    kwargs = dict(momentum=momentum, epsilon=1e-5)
    fused, plain = batchnorm.FusedBatchNormalization(**kwargs), \
        keras.layers.BatchNormalization(**kwargs)
    for layer in (fused, plain):
        layer.build(SHAPE)
    values = [rng.normal(size=3).astype(np.float32), rng.normal(size=3).astype(np.float32),
              rng.normal(size=3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)]
    fused.set_weights(values)
    plain.set_weights(values)
    return fused, plain


def batch(seed=1):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.normal(3.0, 2.0, SHAPE).astype(np.float32))


def forward_backward(layer, x, training):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * WEIGHTS)   # a gradient of y that is not uniform
    dx, dgamma, dbeta = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [keras.ops.convert_to_numpy(t) for t in (y, dx, dgamma, dbeta)]


@pytest.mark.parametrize("training", [True, False])
def test_fused_bn_computes_keras_bn(training):
    fused, plain = pair()
    x = batch()
    got, want = forward_backward(fused, x, training), forward_backward(plain, x, training)
    for name, g, w in zip(("output", "d/dx", "d/dgamma", "d/dbeta"), got, want):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4, err_msg=name)
    for g, w in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_moving_variance_is_the_population_variance():
    """momentum 0: the moving statistics become the batch's mean and biased variance (the
    fused kernel's own variance is n / (n - 1) = 200 / 199 times that, 0.5% more)."""
    fused, _ = pair(momentum=0.0)
    x = batch(seed=2)
    fused(x, training=True)
    values = keras.ops.convert_to_numpy(x).astype(np.float64).reshape(-1, 3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused.moving_mean), values.mean(0),
                               rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused.moving_variance), values.var(0),
                               rtol=1e-5)
    assert not np.allclose(values.var(0), values.var(0, ddof=1), rtol=1e-3)


def test_frozen_fused_bn_keeps_its_statistics():
    fused, plain = pair()
    fused.trainable = plain.trainable = False
    before = fused.get_weights()
    y = fused(batch(), training=True)
    for b, a in zip(before, fused.get_weights()):
        np.testing.assert_array_equal(b, a)
    np.testing.assert_allclose(y, plain(batch(), training=True), rtol=1e-5, atol=1e-5)


def test_fused_bn_under_mixed_bfloat16():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    fused = batchnorm.FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
    plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    x = tf.cast(batch(), tf.bfloat16)
    y_fused, y_plain = fused(x, training=True), plain(x, training=True)
    assert y_fused.dtype == tf.bfloat16 and fused.moving_mean.dtype == "float32"
    np.testing.assert_allclose(tf.cast(y_fused, tf.float32), tf.cast(y_plain, tf.float32),
                               atol=0.05)
    np.testing.assert_allclose(fused.moving_variance, plain.moving_variance, rtol=1e-2)


def test_inputs_the_kernel_does_not_take_run_keras_bn():
    """2-D inputs (and masks, renorm, synchronized BN) take Keras' own computation."""
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(16, 4)).astype(np.float32))
    fused = batchnorm.FusedBatchNormalization(momentum=0.9)
    plain = keras.layers.BatchNormalization(momentum=0.9)
    np.testing.assert_array_equal(fused(x, training=True), plain(x, training=True))
    np.testing.assert_array_equal(fused.moving_variance, plain.moving_variance)
    renorm = batchnorm.FusedBatchNormalization(renorm=True)
    renorm.build(SHAPE)
    assert not renorm._fusable(batch(), None)


@pytest.mark.parametrize("fused_bn,cls", [(True, batchnorm.FusedBatchNormalization),
                                          (False, keras.layers.BatchNormalization)])
def test_model_fused_bn_field(fused_bn, cls):
    model = models.build_model(config.ModelConfig(name="resnet8", fused_bn=fused_bn),
                               (16, 16, 3), 10)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 9 and {type(layer) for layer in bns} == {cls}


def test_fused_bn_field_is_a_bool():
    with pytest.raises(ValueError, match="model.fused_bn"):
        config.ModelConfig(fused_bn="yes")


def test_export_names_keras_bn(tmp_path):
    """The saved network holds Keras' own layer with the same weights and outputs."""
    model = models.build_model(config.ModelConfig(name="resnet8"), (16, 16, 3), 10)
    x = np.random.default_rng(4).random((4, 16, 16, 3)).astype(np.float32)
    model(x, training=True)                       # moving statistics away from 0 / 1
    path = export.save_model(model, str(tmp_path / "model.keras"))
    loaded = keras.saving.load_model(path)
    assert {type(layer) for layer in loaded.layers if "bn" in layer.name} == \
        {keras.layers.BatchNormalization}
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-6)
