"""Residual networks as the papers train them, with the BN tweaks of Codreanu et al. IV-C.

* `resnet50`: the unmodified ImageNet ResNet-50 (He et al., bottleneck blocks,
  stride in the first 1x1 convolution as in the original Caffe model).
* `resnet8/14/20/32`: the CIFAR-style 6n+2 networks (ResNet-20 is Lee et al.'s
  classification model, Section VI-C).
* `edsr`: an EDSR-style residual restoration network without BN (Lee et al.
  VI-A's modified EDSR for Phantom), with :class:`PSNR` as its metric.

BN tweaks (Codreanu et al. IV-C, after Goyal et al.): gamma = 0 for the last
BN of each residual block, so every block starts as the identity; BN moving
averages S_t = (1 - beta) Y_t + beta S_{t-1} with beta (Caffe's
moving_average_fraction) = 0.95, which is Keras' BN `momentum`.
"""

from __future__ import annotations

import keras
from keras import layers

from lbsgd.config import ModelConfig
from lbsgd.model.batchnorm import FusedBatchNormalization

_CIFAR_DEPTHS = {"resnet8": 1, "resnet14": 2, "resnet20": 3, "resnet32": 5}


def _bn(x, fraction: float, zero_gamma: bool, name: str, fused: bool):
    layer = FusedBatchNormalization if fused else layers.BatchNormalization
    return layer(momentum=fraction, epsilon=1e-5, name=name,
                 gamma_initializer="zeros" if zero_gamma else "ones")(x)


def _conv(x, filters, kernel, stride, name):
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                         kernel_initializer="he_normal", name=name)(x)


def cifar_resnet(input_shape, num_classes: int, blocks_per_stage: int,
                 bn_moving_average_fraction: float = 0.95,
                 zero_gamma_last_bn: bool = True, name: str = "resnet",
                 stem_stride: int = 1, fused_bn: bool = True) -> keras.Model:
    """He et al.'s 6n+2 CIFAR ResNet (n = blocks_per_stage; n=3 is ResNet-20).

    `stem_stride=2` makes the first convolution strided (feature maps of
    half the side everywhere, ~4x fewer FLOPs)."""
    fraction = bn_moving_average_fraction
    inputs = keras.Input(input_shape, name="image")
    x = _conv(inputs, 16, 3, stem_stride, "conv1")
    x = layers.ReLU(name="relu1")(_bn(x, fraction, False, "bn1", fused_bn))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"s{stage + 1}b{block + 1}"
            shortcut = x
            y = _conv(x, filters, 3, stride, f"{p}_conv1")
            y = layers.ReLU(name=f"{p}_relu1")(_bn(y, fraction, False, f"{p}_bn1", fused_bn))
            y = _conv(y, filters, 3, 1, f"{p}_conv2")
            y = _bn(y, fraction, zero_gamma_last_bn, f"{p}_bn2", fused_bn)
            if stride != 1 or shortcut.shape[-1] != filters:
                shortcut = _conv(shortcut, filters, 1, stride, f"{p}_proj")
                shortcut = _bn(shortcut, fraction, False, f"{p}_proj_bn", fused_bn)
            x = layers.ReLU(name=f"{p}_out")(layers.Add(name=f"{p}_add")([y, shortcut]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet50(input_shape=(224, 224, 3), num_classes: int = 1000,
             bn_moving_average_fraction: float = 0.95,
             zero_gamma_last_bn: bool = True, fused_bn: bool = True) -> keras.Model:
    """ResNet-50 v1 (He et al. 2016), unmodified topology."""
    fraction = bn_moving_average_fraction
    inputs = keras.Input(input_shape, name="image")
    x = _conv(inputs, 64, 7, 2, "conv1")
    x = layers.ReLU(name="relu1")(_bn(x, fraction, False, "bn1", fused_bn))
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    for stage, (filters, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"res{stage + 2}{chr(ord('a') + block)}"
            shortcut = x
            y = _conv(x, filters, 1, stride, f"{p}_branch2a")
            y = layers.ReLU(name=f"{p}_relu2a")(_bn(y, fraction, False, f"{p}_bn2a", fused_bn))
            y = _conv(y, filters, 3, 1, f"{p}_branch2b")
            y = layers.ReLU(name=f"{p}_relu2b")(_bn(y, fraction, False, f"{p}_bn2b", fused_bn))
            y = _conv(y, 4 * filters, 1, 1, f"{p}_branch2c")
            y = _bn(y, fraction, zero_gamma_last_bn, f"{p}_bn2c", fused_bn)
            if block == 0:
                shortcut = _conv(shortcut, 4 * filters, 1, stride, f"{p}_branch1")
                shortcut = _bn(shortcut, fraction, False, f"{p}_bn1", fused_bn)
            x = layers.ReLU(name=f"{p}_out")(layers.Add(name=f"{p}_add")([y, shortcut]))
    x = layers.GlobalAveragePooling2D(name="pool5")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32",
                           name="predictions")(x)
    return keras.Model(inputs, outputs, name="resnet50")


def edsr(input_shape, blocks: int = 16, filters: int = 64, res_scale: float = 0.1,
         name: str = "edsr") -> keras.Model:
    """EDSR-style restoration: conv head, `blocks` x (conv-ReLU-conv, scaled by
    `res_scale`, + skip), conv, + head skip, conv tail to the input channels,
    and a global skip from the input (the network predicts the correction)."""
    inputs = keras.Input(input_shape)
    conv = lambda f, n: layers.Conv2D(f, 3, padding="same", name=n)  # noqa: E731
    head = conv(filters, "head")(inputs)
    x = head
    for i in range(blocks):
        r = conv(filters, f"block{i + 1}_conv1")(x)
        r = layers.ReLU(name=f"block{i + 1}_relu")(r)
        r = conv(filters, f"block{i + 1}_conv2")(r)
        r = layers.Rescaling(res_scale, name=f"block{i + 1}_scale")(r)
        x = layers.Add(name=f"block{i + 1}_add")([x, r])
    x = conv(filters, "body_end")(x)
    x = layers.Add(name="body_skip")([head, x])
    x = layers.Conv2D(input_shape[-1], 3, padding="same", name="tail", dtype="float32")(x)
    outputs = layers.Add(name="restored", dtype="float32")([inputs, x])
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="lbsgd")
class PSNR(keras.metrics.Metric):
    """Mean per-image peak signal-to-noise ratio in dB (peak `max_value`).

    Its state is a sum and a count, so lbsgd.parallel.MetricAverage makes
    it exact over ranks.
    """

    def __init__(self, max_value: float = 1.0, name: str = "psnr", **kwargs):
        super().__init__(name=name, **kwargs)
        self.max_value = float(max_value)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "float32")
        y_pred = keras.ops.cast(y_pred, "float32")
        axes = list(range(1, len(y_true.shape)))
        mse = keras.ops.mean(keras.ops.square(y_true - y_pred), axis=axes)
        psnr = 10.0 * keras.ops.log(self.max_value ** 2 / keras.ops.maximum(mse, 1e-12)) / \
            keras.ops.log(10.0)
        self.total.assign_add(keras.ops.sum(psnr))
        self.count.assign_add(keras.ops.cast(keras.ops.shape(psnr)[0], "float32"))

    def result(self):
        return self.total / keras.ops.maximum(self.count, 1.0)

    def get_config(self):
        return {**super().get_config(), "max_value": self.max_value}


def build_model(cfg: ModelConfig, input_shape, num_classes: int) -> keras.Model:
    """The model a config names, under its dtype policy."""
    keras.mixed_precision.set_dtype_policy(cfg.dtype_policy)
    if cfg.name == "edsr":
        return edsr(input_shape, cfg.edsr_blocks, cfg.edsr_filters)
    kwargs = dict(bn_moving_average_fraction=cfg.bn_moving_average_fraction,
                  zero_gamma_last_bn=cfg.zero_gamma_last_bn, fused_bn=cfg.fused_bn)
    if cfg.name == "resnet50":
        return resnet50(input_shape, num_classes, **kwargs)
    return cifar_resnet(input_shape, num_classes, _CIFAR_DEPTHS[cfg.name], name=cfg.name,
                        stem_stride=cfg.stem_stride, **kwargs)


def task_loss(task: str) -> str:
    """The training loss of a task: L1 for restoration (Lee et al. VI-A), else cross-entropy."""
    return "mean_absolute_error" if task == "restoration" else "sparse_categorical_crossentropy"


def task_metrics(task: str) -> list:
    """The metrics of a task: PSNR for restoration, else accuracy."""
    return [PSNR()] if task == "restoration" else ["accuracy"]
