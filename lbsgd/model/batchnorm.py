"""Batch normalisation in one fused kernel per direction: the speed of every BN of Codreanu et al. IV-C.

Keras 3's `BatchNormalization` on TensorFlow computes a training step's BN
from separate ops (`tf.nn.moments`: mean, squared difference, mean; then
`tf.nn.batch_normalization`: rsqrt, multiply, add) and their gradients, each
a pass over the activation tensor, with a cast to float32 around it under
`mixed_bfloat16`. :class:`FusedBatchNormalization` is the same layer (same
variables, config, moving-average rule and results up to float rounding)
computed by TensorFlow's fused kernel, `FusedBatchNormV3` forward and
`FusedBatchNormGradV3` backward, which oneDNN runs as one primitive each.

The kernel returns the batch's sample variance (n / (n - 1) times the
population one); the moving variance is updated, as Keras does, with the
population variance (the kernel's value times (n - 1) / n), so a model with
fused BN keeps Keras' statistics, not tf_keras' fused ones.

Inputs the kernel does not take (not 4-D NHWC, masks, renorm, synchronized
BN, another backend) run Keras' own computation. `model.keras` files hold
Keras' own layer (lbsgd.model.export), so they load without lbsgd.
"""

from __future__ import annotations

import copy
import functools

import keras


@keras.saving.register_keras_serializable(package="lbsgd")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by TensorFlow's fused BN kernel.

    Same arguments as Keras' layer. Example::

        y = FusedBatchNormalization(momentum=0.95, epsilon=1e-5)(x)
    """

    def _fusable(self, inputs, mask) -> bool:
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4
                and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # The kernel takes float32 and bfloat16 activations with float32 statistics.
        x = inputs if inputs.dtype in (tf.float32, tf.bfloat16) else tf.cast(inputs, tf.float32)
        depth = x.shape[-1]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([depth])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([depth])
        kernel = functools.partial(tf.raw_ops.FusedBatchNormV3, x=x, scale=gamma, offset=beta,
                                   epsilon=self.epsilon, exponential_avg_factor=1.0,
                                   data_format="NHWC")
        if training and self.trainable:
            empty = tf.constant([], tf.float32)
            y, mean, sample_variance, _, _, _ = kernel(mean=empty, variance=empty,
                                                       is_training=True)
            n = tf.cast(tf.size(x) // depth, tf.float32)
            variance = sample_variance * ((n - 1.0) / tf.maximum(n, 1.0))
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum
                                        + variance * (1.0 - momentum))
        else:
            y = kernel(mean=self.moving_mean.value, variance=self.moving_variance.value,
                       is_training=False)[0]
        return tf.cast(y, self.compute_dtype)


def as_keras_layers(model_config: dict) -> dict:
    """A functional model's config with every FusedBatchNormalization (nested models
    included) named as Keras' own BatchNormalization: same arguments and variables, so
    `keras.Model.from_config` of it builds a model that loads and runs without lbsgd."""
    ours = keras.saving.get_registered_name(FusedBatchNormalization)

    def visit(config):
        for layer in config.get("layers", ()):
            if layer.get("registered_name") == ours:
                layer.update(module="keras.layers", class_name="BatchNormalization",
                             registered_name=None)
            elif isinstance(layer.get("config"), dict):
                visit(layer["config"])
    config = copy.deepcopy(model_config)
    visit(config)
    return config
