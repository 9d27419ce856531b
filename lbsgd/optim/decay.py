"""Weight decay and momentum correction inside the optimizer step (Codreanu et al. IV-B, V-B; Goyal et al.).

Caffe-style L2 (g + wd w) on the averaged gradient for the variables
:func:`default_decay_filter` selects (kernels; not biases or BN gamma/beta),
the momentum correction that keeps SGD's update right while the LR
changes (warmup, cycles, batch growth), and SGD's momentum update as one
fused kernel per variable with that correction folded in.
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


def learning_rate_ratio(optimizer, variables):
    """lr_t / lr_{t-1} for the momentum correction (1 at the first step); records lr_t."""
    if not optimizer.built:
        optimizer.build(variables)
    lr = tf.cast(optimizer._get_current_learning_rate(), tf.float32)
    prev = tf.convert_to_tensor(optimizer.previous_learning_rate)
    ratio = tf.where(prev > 0, lr / tf.where(prev > 0, prev, 1.0), 1.0)
    optimizer.previous_learning_rate.assign(lr)
    return ratio


def correct_momentum(optimizer, variables):
    """Momentum correction (Goyal et al.): scale the SGD velocity by lr_t / lr_{t-1}.

    Keras' v <- m v - lr g then updates as u <- m u + g, w <- w - lr u even
    while the LR changes (warmup, cycles, batch growth). A pass over every
    velocity; the fused SGD update folds the ratio into m instead
    (lbsgd.parallel.exchange).
    """
    ratio = learning_rate_ratio(optimizer, variables)
    for m in getattr(optimizer, "momentums", []):
        m.assign(m * tf.cast(ratio, m.dtype))


def fused_momentum_update(variable, velocity, gradient, learning_rate, momentum,
                          velocity_scale=None):
    """Keras' SGD momentum step as one kernel: v <- m' v - lr g; w <- w + v, m' = m * scale.

    `ResourceApplyKerasMomentum` reads w, v and g once, where Keras' ops take
    four passes and the momentum correction's scaling of v a fifth;
    `velocity_scale` (lr_t / lr_{t-1}, or None) is that correction, folded
    into the momentum. The same maths up to float rounding.
    """
    dtype = variable.dtype
    momentum = tf.cast(momentum, dtype)        # as Keras casts it
    if velocity_scale is not None:
        momentum = momentum * tf.cast(velocity_scale, dtype)
    tf.raw_ops.ResourceApplyKerasMomentum(
        var=variable.handle, accum=velocity.handle, lr=tf.cast(learning_rate, dtype),
        grad=tf.cast(gradient, dtype), momentum=momentum,
        use_locking=False, use_nesterov=False)
