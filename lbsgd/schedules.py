"""Learning-rate schedules as pure functions of the optimizer step (Codreanu et al. IV-D).

Linear scaling rule, gradual warmup (Goyal et al.) that wraps any schedule,
polynomial decay to 0 over the run (power 1 is the paper's default) and the
3-step x0.1 decay it replaced (Table I). Every schedule is a serialisable
`keras.optimizers.schedules.LearningRateSchedule`: `__call__(step) -> lr`,
each constructor argument returned by `get_config()` under its own name, and
nested schedules serialised with `keras.saving.serialize_keras_object`, so a
resumed run continues the schedule exactly from the restored step.
"""

from __future__ import annotations

import keras
from keras import ops

from lbsgd.config import OptimizerConfig, ScheduleConfig

LearningRateSchedule = keras.optimizers.schedules.LearningRateSchedule


def linear_scaling(base_lr: float, global_batch: int, reference_batch: int = 256,
                   max_lr: float = 0.0) -> float:
    """Peak LR by the linear scaling rule: base_lr x global_batch / reference_batch.

    Capped at `max_lr` when it is > 0 (the paper holds 6.4 for batches >= 16K).
    """
    for name, value in (("base_lr", base_lr), ("global_batch", global_batch),
                        ("reference_batch", reference_batch)):
        if not value > 0:
            raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")
    lr = base_lr * global_batch / reference_batch
    return min(lr, max_lr) if max_lr > 0 else lr


def _f(step):
    return ops.cast(step, "float32")


@keras.saving.register_keras_serializable(package="lbsgd")
class PolynomialDecay(LearningRateSchedule):
    """Holds `initial_learning_rate` until `begin_step`, then decays polynomially.

    lr(s) = end + (initial - end) * (1 - (s - begin) / decay_steps) ** power,
    clipped to `end` after begin + decay_steps.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, power: float = 1.0,
                 end_learning_rate: float = 0.0, begin_step: int = 0):
        if decay_steps <= 0:
            raise ValueError(f"Argument `decay_steps` must be > 0. Received: decay_steps={decay_steps}")
        if power <= 0:
            raise ValueError(f"Argument `power` must be > 0. Received: power={power}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)
        self.begin_step = int(begin_step)

    def __call__(self, step):
        progress = ops.clip((_f(step) - self.begin_step) / self.decay_steps, 0.0, 1.0)
        span = self.initial_learning_rate - self.end_learning_rate
        return self.end_learning_rate + span * ops.power(1.0 - progress, self.power)

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate,
                    decay_steps=self.decay_steps, power=self.power,
                    end_learning_rate=self.end_learning_rate, begin_step=self.begin_step)


@keras.saving.register_keras_serializable(package="lbsgd")
class StepDecay(LearningRateSchedule):
    """initial x factor**k after the k-th boundary step (the classical 3-step decay)."""

    def __init__(self, initial_learning_rate: float, boundaries, factor: float = 0.1):
        boundaries = [int(b) for b in boundaries]
        if boundaries != sorted(boundaries) or any(b <= 0 for b in boundaries):
            raise ValueError("Argument `boundaries` must be increasing positive steps. "
                             f"Received: boundaries={boundaries}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.boundaries = boundaries
        self.factor = float(factor)

    def __call__(self, step):
        s = _f(step)
        k = sum(ops.cast(s >= b, "float32") for b in self.boundaries) if self.boundaries else 0.0
        return self.initial_learning_rate * ops.power(self.factor, k)

    def get_config(self):
        return dict(initial_learning_rate=self.initial_learning_rate,
                    boundaries=list(self.boundaries), factor=self.factor)


@keras.saving.register_keras_serializable(package="lbsgd")
class ConstantLR(LearningRateSchedule):
    """A constant learning rate."""

    def __init__(self, learning_rate: float):
        self.learning_rate = float(learning_rate)

    def __call__(self, step):
        return ops.cast(self.learning_rate, "float32") + 0.0 * _f(step)

    def get_config(self):
        return dict(learning_rate=self.learning_rate)


@keras.saving.register_keras_serializable(package="lbsgd")
class GradualWarmup(LearningRateSchedule):
    """Linear ramp from `initial_learning_rate` to `after(warmup_steps)`, then `after`.

    Wraps any schedule (Goyal et al.'s gradual warmup; Codreanu et al. use 5
    epochs, 7-10 for very large batches).
    """

    def __init__(self, after, warmup_steps: int, initial_learning_rate: float = 0.0):
        if isinstance(after, dict):
            after = keras.saving.deserialize_keras_object(after)
        if not isinstance(after, LearningRateSchedule):
            raise ValueError("Argument `after` must be a LearningRateSchedule. "
                             f"Received: after={after!r}")
        if warmup_steps < 0:
            raise ValueError(f"Argument `warmup_steps` must be >= 0. Received: warmup_steps={warmup_steps}")
        self.after = after
        self.warmup_steps = int(warmup_steps)
        self.initial_learning_rate = float(initial_learning_rate)

    def __call__(self, step):
        if self.warmup_steps == 0:
            return self.after(step)
        s = _f(step)
        target = ops.cast(self.after(self.warmup_steps), "float32")
        frac = ops.minimum(s / self.warmup_steps, 1.0)
        ramp = self.initial_learning_rate + (target - self.initial_learning_rate) * frac
        return ops.where(s < self.warmup_steps, ramp, self.after(step))

    def get_config(self):
        return dict(after=keras.saving.serialize_keras_object(self.after),
                    warmup_steps=self.warmup_steps,
                    initial_learning_rate=self.initial_learning_rate)


def build_schedule(opt: OptimizerConfig, sched: ScheduleConfig, global_batch: int,
                   steps_per_epoch: int, epochs: int) -> LearningRateSchedule:
    """The schedule a config describes, in optimizer steps."""
    peak = linear_scaling(opt.base_lr, global_batch, opt.reference_batch, opt.max_lr)
    total = steps_per_epoch * epochs
    warmup = min(int(round(sched.warmup_epochs * steps_per_epoch)), total)
    if sched.decay == "poly":
        main = PolynomialDecay(peak, max(1, total - warmup), sched.power, begin_step=warmup)
    elif sched.decay == "steps":
        main = StepDecay(peak, [int(e * steps_per_epoch) for e in sched.step_epochs])
    else:
        main = ConstantLR(peak)
    return GradualWarmup(main, warmup) if warmup else main
