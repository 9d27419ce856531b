"""LARS for Keras 3: You et al. 2017's layer-wise adaptive rate scaling for large batches.

You et al., "Large Batch Training of Convolutional Networks" (2017).
Codreanu et al. cite LARS as the other answer to large batches (next to
their linear scaling, warmup and collapse): every layer gets its own LR,
proportional to ||w|| / ||g||, so no layer's update outgrows its weights.

The update is the Model Garden / You et al. "classic momentum" form, for a
variable w with gradient g, global LR lr (a float or any
LearningRateSchedule), momentum m, trust coefficient eta, weight decay wd::

    adapted:   local_lr = eta * ||w|| / (||g|| + wd * ||w|| + epsilon)
               (1 when ||w|| = 0 or ||g|| = 0)
               u = local_lr * (g + wd * w)
    excluded:  u = g                      (no trust ratio, no weight decay)
    both:      v = m * v + lr * u;  w = w - v

The excluded variables are by default the rank-1 ones (biases, BN gamma and
beta), which lbsgd's Caffe-style L2 does not decay either
(`lbsgd.optim.decay.default_decay_filter`).

LARS owns its weight decay: it sits inside the trust ratio. Its coefficient
is the optimizer variable `l2_weight_decay`, the same name lbsgd's
DistributedOptimizer gives its L2 coefficient: wrapped, LARS's variable *is*
that variable (the wrapper's `weight_decay` goes into it and the wrapper adds
no L2 to the gradient), so lbsgd.recipe.phases.RecipePhases still sets it every
epoch and the final collapse still doubles it. Goyal et al.'s momentum
correction (DistributedOptimizer's `momentum_correction`) scales `v`, which
holds lr * u, by lr_t / lr_{t-1}, exactly as for SGD.
"""

from __future__ import annotations

import keras
from keras import ops

from lbsgd.config import EXCLUSIONS
from lbsgd.optim.decay import default_decay_filter    # lbsgd's one rank rule


def is_excluded(variable, rule) -> bool:
    """Whether `rule` ("rank1", "none" or callable(variable) -> bool) excludes `variable`."""
    if callable(rule):
        return bool(rule(variable))
    if rule == "none":
        return False
    return not default_decay_filter(variable)


@keras.saving.register_keras_serializable(package="lbsgd")
class LARS(keras.optimizers.Optimizer):
    """Momentum SGD with layer-wise adaptive rate scaling (You et al. 2017); see the module.

    Args:
      learning_rate: the global LR: a float or a LearningRateSchedule.
      momentum: m in v = m v + lr u, in [0, 1).
      trust_coefficient: eta, the trust coefficient (You et al.: 0.001).
      l2_weight_decay: wd, the weight decay inside the trust ratio (kept in
        the optimizer variable `l2_weight_decay`).
      epsilon: added to the trust ratio's denominator (the zero-norm guard
        already keeps it finite).
      exclude_from_adaptation: "rank1" (default: biases and BN gamma/beta),
        "none", or callable(variable) -> bool; excluded variables get neither
        the trust ratio nor weight decay. `model.save` needs a string.
      **kwargs: Keras' optimizer arguments (clipnorm, name, ...); not Keras'
        decoupled `weight_decay`, which would be a second decay.
    """

    owns_l2_weight_decay = True    # lbsgd.parallel.exchange adds no L2 of its own

    def __init__(self, learning_rate=0.01, momentum=0.9, trust_coefficient=0.001,
                 l2_weight_decay=0.0, epsilon=0.0, exclude_from_adaptation="rank1",
                 name="lars", **kwargs):
        if kwargs.get("weight_decay") is not None:
            raise ValueError("Argument `weight_decay` would add a second weight decay: LARS "
                             "decays inside its trust ratio; use `l2_weight_decay`. "
                             f"Received: weight_decay={kwargs['weight_decay']}")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        for arg, value, ok, rule in (
                ("momentum", momentum, 0.0 <= momentum < 1.0, "be in [0, 1)"),
                ("trust_coefficient", trust_coefficient, trust_coefficient > 0, "be > 0"),
                ("l2_weight_decay", l2_weight_decay, l2_weight_decay >= 0, "be >= 0"),
                ("epsilon", epsilon, epsilon >= 0, "be >= 0")):
            if not ok:
                raise ValueError(f"Argument `{arg}` must {rule}. Received: {arg}={value}")
        if not callable(exclude_from_adaptation) and exclude_from_adaptation not in EXCLUSIONS:
            raise ValueError(f"Argument `exclude_from_adaptation` must be one of {EXCLUSIONS} "
                             f"or a callable. Received: exclude_from_adaptation="
                             f"{exclude_from_adaptation!r}")
        self.momentum = float(momentum)
        self.trust_coefficient = float(trust_coefficient)
        self.epsilon = float(epsilon)
        self.exclude_from_adaptation = exclude_from_adaptation
        self.l2_weight_decay = keras.Variable(float(l2_weight_decay), dtype="float32",
                                              trainable=False, name="l2_weight_decay")

    def build(self, variables):
        """One velocity `v` per variable (`momentums`, the name momentum correction scales)."""
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        update = ops.cast(gradient, variable.dtype)
        if not is_excluded(variable, self.exclude_from_adaptation):
            wd = ops.cast(self.l2_weight_decay, variable.dtype)
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(update)))
            denominator = g_norm + wd * w_norm + self.epsilon
            both = ops.logical_and(ops.greater(w_norm, 0), ops.greater(g_norm, 0))
            local_lr = ops.where(
                both, self.trust_coefficient * w_norm / ops.where(both, denominator, 1.0), 1.0)
            update = local_lr * (update + wd * variable)
        v = self.momentums[self._get_variable_index(variable)]
        self.assign(v, ops.add(ops.multiply(v, ops.cast(self.momentum, variable.dtype)),
                               ops.multiply(lr, update)))
        self.assign_sub(variable, v)

    def get_config(self):
        config = super().get_config()
        config.update({
            "momentum": self.momentum, "trust_coefficient": self.trust_coefficient,
            "l2_weight_decay": float(ops.convert_to_numpy(self.l2_weight_decay)),
            "epsilon": self.epsilon, "exclude_from_adaptation": self.exclude_from_adaptation})
        return config
