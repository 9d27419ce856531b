"""Weight decay and momentum correction inside the optimizer step (Codreanu et al. IV-B, V-B; Goyal et al.).

Caffe-style L2 (g + wd w) on the averaged gradient for the variables
:func:`default_decay_filter` selects (kernels; not biases or BN gamma/beta),
and the momentum correction that keeps SGD's update right while the LR
changes (warmup, cycles, batch growth).
"""

from __future__ import annotations

import tensorflow as tf


def default_decay_filter(variable) -> bool:
    """Decay convolution and dense kernels; not biases or BN gamma/beta."""
    return len(variable.shape) > 1


def add_l2_weight_decay(grads, variables, coefficient, decay_filter):
    """Regularisation (Codreanu et al. IV-B, V-B): Caffe-style g + wd * w for decayed variables.

    Added after averaging, so the decay goes through momentum and is scaled
    by the learning rate; `coefficient` is a variable a callback may change.
    """
    return [g if g is None or not decay_filter(v)
            else g + tf.cast(coefficient, g.dtype) * tf.cast(v, g.dtype)
            for g, v in zip(grads, variables)]


def correct_momentum(optimizer, variables):
    """Momentum correction (Goyal et al.): scale the SGD velocity by lr_t / lr_{t-1}.

    Keras' v <- m v - lr g then updates as u <- m u + g, w <- w - lr u even
    while the LR changes (warmup, cycles, batch growth).
    """
    if not optimizer.built:
        optimizer.build(variables)
    lr = tf.cast(optimizer._get_current_learning_rate(), tf.float32)
    prev = tf.convert_to_tensor(optimizer.previous_learning_rate)
    ratio = tf.where(prev > 0, lr / tf.where(prev > 0, prev, 1.0), 1.0)
    for m in getattr(optimizer, "momentums", []):
        m.assign(m * tf.cast(ratio, m.dtype))
    optimizer.previous_learning_rate.assign(lr)
