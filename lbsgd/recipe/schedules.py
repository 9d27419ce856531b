"""Learning-rate schedules as pure functions of the optimizer step (Codreanu et al. IV-D, V-B, VI).

Linear scaling rule, gradual warmup (Goyal et al.) that wraps any schedule,
polynomial decay to 0 over the run (power 1 is the paper's default), the
3-step x0.1 decay it replaced (Table I), the final collapse (power-2 decay
from where the main schedule left off, V-B) and the semi-cyclic
collapsed-ensemble schedule (Section VI, Figure 4). Every schedule is a serialisable
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


@keras.saving.register_keras_serializable(package="lbsgd")
class FinalCollapse(LearningRateSchedule):
    """`main` until `begin_step`, then power-2 decay to 0 from where `main` left off.

    Codreanu et al. V-B/VI: the last epochs of a run (3-10; 5-7% by default)
    "collapse" the LR with a power-2 polynomial that starts from the value the
    main schedule had reached, ending at 0 at `total_steps`.
    """

    def __init__(self, main, begin_step: int, total_steps: int, power: float = 2.0):
        if isinstance(main, dict):
            main = keras.saving.deserialize_keras_object(main)
        if not isinstance(main, LearningRateSchedule):
            raise ValueError(f"Argument `main` must be a LearningRateSchedule. Received: main={main!r}")
        if not 0 <= begin_step < total_steps:
            raise ValueError("Argument `begin_step` must be in [0, total_steps). "
                             f"Received: begin_step={begin_step}, total_steps={total_steps}")
        if power <= 0:
            raise ValueError(f"Argument `power` must be > 0. Received: power={power}")
        self.main = main
        self.begin_step = int(begin_step)
        self.total_steps = int(total_steps)
        self.power = float(power)

    def __call__(self, step):
        s = _f(step)
        start = ops.cast(self.main(self.begin_step), "float32")
        progress = ops.clip((s - self.begin_step) / (self.total_steps - self.begin_step), 0.0, 1.0)
        collapse = start * ops.power(1.0 - progress, self.power)
        return ops.where(s < self.begin_step, ops.cast(self.main(step), "float32"), collapse)

    def get_config(self):
        return dict(main=keras.saving.serialize_keras_object(self.main),
                    begin_step=self.begin_step, total_steps=self.total_steps, power=self.power)


@keras.saving.register_keras_serializable(package="lbsgd")
class CollapsedEnsemble(LearningRateSchedule):
    """The semi-cyclic schedule of Codreanu et al. Section VI / Figure 4, in epochs.

    * epochs [0, linear_end_epoch): linear decay from the peak, at the slope
      that would reach 0 at `linear_horizon_epochs` (the paper's 90-epoch
      linear decay; the paper gives the shape, not this slope);
    * [linear_end_epoch, power2_end_epoch): power-2 decay from there to
      `power2_end_fraction` x peak (the paper: epochs 30-45, ~22% of peak);
    * then `num_cycles` cycles: `rewarmup_epochs` of linear increase to
      `rise_factor` x the LR at the cycle's start, then `decay_epochs` of
      power-2 decay that divides the cycle's top by `decay_divisor`. With the
      defaults cycles end at epochs 60, 75, 90, 105, 120 and every cycle ends
      at 3/4 of the LR it started from. The LR is held after the last cycle.

    Compose with GradualWarmup for the first epochs.
    """

    def __init__(self, peak_learning_rate: float, steps_per_epoch: int,
                 linear_end_epoch: float = 30.0, linear_horizon_epochs: float = 90.0,
                 power2_end_epoch: float = 45.0, power2_end_fraction: float = 0.22,
                 rewarmup_epochs: float = 3.0, rise_factor: float = 3.0,
                 decay_epochs: float = 12.0, decay_divisor: float = 4.0, num_cycles: int = 5):
        checks = (("peak_learning_rate", peak_learning_rate > 0),
                  ("steps_per_epoch", steps_per_epoch >= 1),
                  ("linear_end_epoch", 0 < linear_end_epoch < linear_horizon_epochs),
                  ("power2_end_epoch", power2_end_epoch > linear_end_epoch),
                  ("power2_end_fraction",
                   0 < power2_end_fraction < 1 - linear_end_epoch / linear_horizon_epochs),
                  ("rewarmup_epochs", rewarmup_epochs > 0), ("rise_factor", rise_factor > 0),
                  ("decay_epochs", decay_epochs > 0), ("decay_divisor", decay_divisor > 0),
                  ("num_cycles", num_cycles >= 0))
        for name, ok in checks:
            if not ok:
                raise ValueError(f"Argument `{name}` is out of range. "
                                 f"Received: {name}={locals()[name]}")
        self.peak_learning_rate = float(peak_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.linear_end_epoch = float(linear_end_epoch)
        self.linear_horizon_epochs = float(linear_horizon_epochs)
        self.power2_end_epoch = float(power2_end_epoch)
        self.power2_end_fraction = float(power2_end_fraction)
        self.rewarmup_epochs = float(rewarmup_epochs)
        self.rise_factor = float(rise_factor)
        self.decay_epochs = float(decay_epochs)
        self.decay_divisor = float(decay_divisor)
        self.num_cycles = int(num_cycles)

    @property
    def cycle_epochs(self) -> float:
        return self.rewarmup_epochs + self.decay_epochs

    def __call__(self, step):
        peak = self.peak_learning_rate
        e = _f(step) / self.steps_per_epoch
        # linear part
        linear = peak * (1.0 - e / self.linear_horizon_epochs)
        # power-2 part
        lr_lin_end = peak * (1.0 - self.linear_end_epoch / self.linear_horizon_epochs)
        low = peak * self.power2_end_fraction
        p = ops.clip((e - self.linear_end_epoch) /
                     (self.power2_end_epoch - self.linear_end_epoch), 0.0, 1.0)
        power2 = low + (lr_lin_end - low) * ops.square(1.0 - p)
        # cycles
        ratio = self.rise_factor / self.decay_divisor  # cycle end / cycle start
        since = ops.maximum(e - self.power2_end_epoch, 0.0)
        k = ops.minimum(ops.floor(since / self.cycle_epochs), max(self.num_cycles - 1, 0))
        t = ops.minimum(since - k * self.cycle_epochs, self.cycle_epochs)
        start = low * ops.power(ratio, k)
        top = start * self.rise_factor
        rise = start + (top - start) * t / self.rewarmup_epochs
        q = ops.clip((t - self.rewarmup_epochs) / self.decay_epochs, 0.0, 1.0)
        bottom = top / self.decay_divisor
        fall = bottom + (top - bottom) * ops.square(1.0 - q)
        cycle = ops.where(t < self.rewarmup_epochs, rise, fall)
        if self.num_cycles == 0:
            cycle = low + 0.0 * e
        return ops.where(e < self.linear_end_epoch, linear,
                         ops.where(e < self.power2_end_epoch, power2, cycle))

    def get_config(self):
        return dict(peak_learning_rate=self.peak_learning_rate,
                    steps_per_epoch=self.steps_per_epoch,
                    linear_end_epoch=self.linear_end_epoch,
                    linear_horizon_epochs=self.linear_horizon_epochs,
                    power2_end_epoch=self.power2_end_epoch,
                    power2_end_fraction=self.power2_end_fraction,
                    rewarmup_epochs=self.rewarmup_epochs, rise_factor=self.rise_factor,
                    decay_epochs=self.decay_epochs, decay_divisor=self.decay_divisor,
                    num_cycles=self.num_cycles)


def build_schedule(opt: OptimizerConfig, sched: ScheduleConfig, global_batch: int,
                   steps_per_epoch: int, epochs: int) -> LearningRateSchedule:
    """The LR schedule a config describes, in optimizer steps.

    kind="standard": warmup, then poly/steps/constant decay over the run, and
    a FinalCollapse over the last `collapse_epochs` when set.
    kind="collapsed_ensemble": warmup, then CollapsedEnsemble (Figure 4).
    """
    peak = linear_scaling(opt.base_lr, global_batch, opt.reference_batch, opt.max_lr)
    total = steps_per_epoch * epochs
    warmup = min(int(round(sched.warmup_epochs * steps_per_epoch)), total)
    if sched.kind == "collapsed_ensemble":
        e = sched.ensemble.timing(epochs)   # the same timing as recipe.build_plan's
        main = CollapsedEnsemble(
            peak, steps_per_epoch, linear_end_epoch=e.linear_end_epoch,
            linear_horizon_epochs=e.linear_horizon_epochs, power2_end_epoch=e.power2_end_epoch,
            power2_end_fraction=e.power2_end_fraction, rewarmup_epochs=e.rewarmup_epochs,
            rise_factor=e.rise_factor, decay_epochs=e.decay_epochs,
            decay_divisor=e.decay_divisor, num_cycles=e.num_cycles)
        return GradualWarmup(main, warmup) if warmup else main
    if sched.decay == "poly":
        main = PolynomialDecay(peak, max(1, total - warmup), sched.power, begin_step=warmup)
    elif sched.decay == "steps":
        main = StepDecay(peak, [int(e * steps_per_epoch) for e in sched.step_epochs])
    else:
        main = ConstantLR(peak)
    schedule = GradualWarmup(main, warmup) if warmup else main
    collapse = sched.collapse_epochs_for(epochs)
    if collapse:
        schedule = FinalCollapse(schedule, (epochs - collapse) * steps_per_epoch, total)
    return schedule
