"""Adaptive batch size and learning rate at run time (Lee et al. III-D, III-E, Algorithm 1).

* :func:`theta` and :class:`ThetaMonitor`: the sharpness estimate of Eq. 4,
  theta_i = (F(w0) - F(wi)) / ||w0 - wi||, with F the training cost on a
  fixed set of training examples (every rank evaluates its share; the sums
  are allreduced, so theta is identical on every rank). Logged as `theta`.
* :class:`BatchGrowth`: Algorithm 1. K is unset until theta changes by less
  than `threshold` (10%) epoch over epoch; then K = n, and after every K-th
  epoch the global batch and the LR are multiplied (x2; the LR by sqrt(2)
  with root scaling) until the maximum batch B_m.
* :class:`LRControl`: Section III-E. When the training cost saturates (or
  at given epochs) the LR drops to mu0 * beta first (an effective first decay
  of B_s/B_m * beta) and is multiplied by beta at later decays.
* :class:`AdaptiveBatchSize`: the Keras callback that runs both policies,
  sets the optimizer's LR every epoch (a plain LR, or a factor on any Keras
  schedule: :class:`ScaledSchedule`), publishes `batch_size`,
  `learning_rate`, `steps` and `K`, and asks the loop to rebuild the input
  pipeline when the batch grows. The loop is lbsgd.run.trainer.fit_segments (a
  sequence of `model.fit` segments, one per batch size), so the batch
  really grows: more samples per optimizer step, fewer steps and fewer
  allreduces per epoch, in one process or under horovodrun.

The policies are pure (no TensorFlow): they take theta and the training
cost per epoch and return decisions, and their state is JSON for exact
resume.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from lbsgd.run import checkpoint as ckpt
from lbsgd import parallel
from lbsgd.parallel import runtime
from lbsgd.config import LR_CONTROLS, LR_SCALINGS, check_argument_choice


def theta(cost_initial: float, cost: float, weights_initial, weights) -> float:
    """Eq. 4: (F(w0) - F(wi)) / ||w0 - wi|| over all the given weight arrays (nan if wi = w0)."""
    sq = sum(float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
             for a, b in zip(weights_initial, weights))
    if sq == 0.0:
        return float("nan")
    return (float(cost_initial) - float(cost)) / math.sqrt(sq)


# --------------------------------------------------------------------------
# Pure policies.
# --------------------------------------------------------------------------

class BatchGrowth:
    """Algorithm 1's batch-size (and LR factor) schedule, driven by theta.

    Call :meth:`end_epoch` after each epoch n = 1, 2, ... with that epoch's
    theta. K is set to n at the first epoch whose theta differs from the
    previous epoch's by at most `threshold` (relative), unless `k_epochs`
    fixes it; at every epoch n with n mod K = 0 the batch is multiplied by
    `growth_factor` (capped at `max_batch`) and the LR factor by the same
    ratio ("linear"), its square root ("root") or not at all ("none").

    Args:
      start_batch: B_s. max_batch: B_m.
      growth_factor: batch multiplier at each growth (paper: 2).
      lr_scaling: "linear" (paper), "root" (sqrt, Hoffer et al.) or "none".
      threshold: relative theta change under which theta is saturated (0.1).
      k_epochs: fixed K (0: detect it from theta).
      multiple_of: every batch is a multiple of this (the number of ranks).
    """

    def __init__(self, start_batch: int, max_batch: int, growth_factor: float = 2.0,
                 lr_scaling: str = "linear", threshold: float = 0.1, k_epochs: int = 0,
                 multiple_of: int = 1):
        checks = (("start_batch", start_batch >= 1 and start_batch % multiple_of == 0),
                  ("max_batch", max_batch >= start_batch),
                  ("growth_factor", growth_factor > 1), ("lr_scaling", lr_scaling in LR_SCALINGS),
                  ("threshold", threshold >= 0), ("k_epochs", k_epochs >= 0))
        for name, ok in checks:
            if not ok:
                raise ValueError(f"Argument `{name}` is invalid. Received: {name}={locals()[name]!r}")
        self.start_batch, self.max_batch = int(start_batch), int(max_batch)
        self.growth_factor, self.lr_scaling = float(growth_factor), lr_scaling
        self.threshold, self.multiple_of = float(threshold), int(multiple_of)
        self.batch = self.start_batch
        self.lr_factor = 1.0
        self.epoch = 0                     # n of the last finished epoch
        self.k = int(k_epochs) or None
        self.last_theta = None

    def end_epoch(self, theta_value: float | None) -> bool:
        """Records epoch n's theta; returns True if the batch grows for epoch n + 1."""
        self.epoch += 1
        n = self.epoch
        if theta_value is not None and math.isfinite(theta_value):
            if (self.k is None and self.last_theta is not None and
                    abs(theta_value - self.last_theta) <= self.threshold * abs(self.last_theta)):
                self.k = n
            self.last_theta = float(theta_value)
        if self.k is None or n % self.k or self.batch >= self.max_batch:
            return False
        new = min(int(round(self.batch * self.growth_factor)), self.max_batch)
        new -= new % self.multiple_of
        if new <= self.batch:
            return False
        ratio = new / self.batch
        self.lr_factor *= {"linear": ratio, "root": math.sqrt(ratio), "none": 1.0}[self.lr_scaling]
        self.batch = new
        return True

    def get_state(self) -> dict:
        return {"batch": self.batch, "lr_factor": self.lr_factor, "epoch": self.epoch,
                "k": self.k, "last_theta": self.last_theta}

    def set_state(self, state: dict) -> None:
        self.batch, self.lr_factor = int(state["batch"]), float(state["lr_factor"])
        self.epoch, self.k, self.last_theta = int(state["epoch"]), state["k"], state["last_theta"]


class LRControl:
    """Section III-E's learning-rate decays.

    mode "saturation": a decay when the training cost has not fallen by more
    than `threshold` (relative) below its best for `patience` epochs, counted
    from the last batch growth or decay (the cost jumps for a few epochs after
    the LR rises; that transient is not saturation).
    mode "fixed": decays after the given epochs (the paper's CIFAR run: 80, 120).
    The first decay sets the LR to mu0 * beta (undoing the batch-growth LR
    increase), later ones multiply it by beta; `reset_to_initial=False` makes
    every decay a plain x beta.
    """

    def __init__(self, mode: str = "none", beta: float = 0.1, decay_epochs=(),
                 patience: int = 5, threshold: float = 0.01, reset_to_initial: bool = True,
                 max_decays: int = 0):
        check_argument_choice("mode", mode, LR_CONTROLS)
        if not 0 < beta < 1:
            raise ValueError(f"Argument `beta` must be in (0, 1). Received: beta={beta}")
        self.mode, self.beta = mode, float(beta)
        self.decay_epochs = sorted(int(e) for e in decay_epochs)
        self.patience, self.threshold = int(patience), float(threshold)
        self.reset_to_initial, self.max_decays = bool(reset_to_initial), int(max_decays)
        self.decays = 0
        self.best = None
        self.wait = 0

    def end_epoch(self, epoch: int, cost: float | None) -> bool:
        """Epoch `epoch` (1-based) ended with training cost `cost`: decay now?"""
        if self.mode == "none" or (self.max_decays and self.decays >= self.max_decays):
            return False
        if self.mode == "fixed":
            decay = epoch in self.decay_epochs
        else:
            if cost is None or not math.isfinite(cost):
                return False
            if self.best is None or cost < self.best * (1 - self.threshold):
                self.best, self.wait = float(cost), 0
                return False
            self.wait += 1
            decay = self.wait >= self.patience
        if decay:
            self.decays += 1
            self.wait = 0
            self.best = None  # measure saturation afresh at the new LR
        return decay

    def restart(self) -> None:
        """Forgets the cost history (after a batch/LR change: its transient is not saturation)."""
        self.best, self.wait = None, 0

    def get_state(self) -> dict:
        return {"decays": self.decays, "best": self.best, "wait": self.wait}

    def set_state(self, state: dict) -> None:
        self.decays, self.best, self.wait = int(state["decays"]), state["best"], int(state["wait"])


# --------------------------------------------------------------------------
# Callbacks.
# --------------------------------------------------------------------------

def _cost(model, dataset, loss_fn) -> float:
    """Mean per-example loss over all ranks' shares of `dataset` (inference mode)."""
    total, count = 0.0, 0.0
    for x, y in dataset:
        pred = model(x, training=False)
        per = keras.ops.convert_to_numpy(loss_fn(y, pred)).astype(np.float64)
        per = per.reshape(per.shape[0], -1).mean(axis=1)
        total += float(per.sum())
        count += per.shape[0]
    total, count = parallel.allreduce_numpy([np.array([total, count])], op="sum",
                                               name="lbsgd.theta")[0]
    return total / max(count, 1.0)


class ThetaMonitor(keras.callbacks.Callback):
    """Logs theta (Eq. 4) and the training cost F every epoch.

    F is the mean loss on a fixed set of training examples (`dataset`, this
    rank's share, no augmentation) in inference mode; w0 and F(w0) are taken
    when training first begins (after the weights are broadcast). With
    `reference_path`, rank 0 keeps w0 in that file so a resumed run measures
    theta from the same w0.

    Args:
      dataset: this rank's batches (x, y) of the fixed training examples.
      loss: a Keras loss (name or callable) giving per-example values.
      reference_path: file for w0 (rank 0), needed for exact resume.
    """

    state_key = "theta"

    def __init__(self, dataset, loss, reference_path: str | None = None):
        super().__init__()
        self.dataset = dataset
        self.loss_fn = keras.losses.get(loss) if isinstance(loss, str) else loss
        if isinstance(self.loss_fn, keras.losses.Loss):
            self.loss_fn = _unreduced(self.loss_fn)
        self.reference_path = reference_path
        self.cost_initial = None
        self.w0 = None
        self.history: list[float] = []
        self._measured = None      # (epoch, theta, cost) of the epoch that just ended

    def get_state(self):
        return {"cost_initial": self.cost_initial, "history": self.history}

    def set_state(self, state):
        self.cost_initial = state["cost_initial"]
        self.history = list(state["history"])

    def _weights(self):
        return [keras.ops.convert_to_numpy(v.value) for v in self.model.trainable_variables]

    def on_train_begin(self, logs=None):
        if self.w0 is not None:
            return
        rt = runtime.current()
        if self.cost_initial is not None:          # resumed: w0 from rank 0's file
            w0 = None
            if rt.is_chief:
                with np.load(self.reference_path) as z:
                    w0 = [z[f"w{i}"] for i in range(len(z.files))]
            self.w0 = parallel.broadcast_object(w0, name="lbsgd.theta.w0")
            return
        self.w0 = self._weights()
        self.cost_initial = _cost(self.model, self.dataset, self.loss_fn)
        if self.reference_path and rt.is_chief:
            ckpt.atomic_write_arrays(self.reference_path,
                                     {f"w{i}": w for i, w in enumerate(self.w0)})

    def measure(self, epoch: int) -> tuple[float, float]:
        """(theta, F) after 0-based `epoch`, computed once per epoch (any caller may ask first)."""
        if self._measured is None or self._measured[0] != epoch:
            cost = _cost(self.model, self.dataset, self.loss_fn)
            value = theta(self.cost_initial, cost, self.w0, self._weights())
            self.history = self.history[:epoch] + [value]
            self._measured = (epoch, value, cost)
        return self._measured[1], self._measured[2]

    def on_epoch_begin(self, epoch, logs=None):
        self._measured = None

    def on_epoch_end(self, epoch, logs=None):
        value, cost = self.measure(epoch)
        if logs is not None:
            logs["theta"] = value
            logs["train_cost"] = cost


def _unreduced(loss: keras.losses.Loss):
    config = loss.get_config()
    config["reduction"] = None
    return type(loss).from_config(config)


@keras.saving.register_keras_serializable(package="lbsgd")
class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A Keras LR schedule times a factor held in a variable (batch growth on any schedule).

    AdaptiveBatchSize sets `factor` every epoch; the compiled train step
    reads the variable, so nothing is retraced.
    """

    def __init__(self, schedule, factor: float = 1.0):
        self.schedule = (keras.optimizers.schedules.deserialize(schedule)
                         if isinstance(schedule, dict) else schedule)
        self.factor = keras.Variable(float(factor), dtype="float32", trainable=False,
                                     name="lbsgd_lr_factor")

    def __call__(self, step):
        return self.schedule(step) * keras.ops.cast(self.factor, "float32")

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "factor": float(keras.ops.convert_to_numpy(self.factor))}


class AdaptiveBatchSize(keras.callbacks.Callback):
    """Runs BatchGrowth and LRControl in `fit`: LR per epoch, batch growth requests.

    At each epoch begin it sets the learning rate to the current mu (mu0 x
    growth factor, or after decays mu0 x beta^k x later growth). A plain LR
    is assigned; a Keras LearningRateSchedule (e.g. a warmup) is wrapped
    once in a ScaledSchedule and multiplied by mu / mu0. At each epoch end it
    takes theta from `theta_monitor` (computed there if that callback has not
    run yet, so the order of the two callbacks does not matter), updates both
    policies, and publishes the epoch's `batch_size`, `learning_rate`, `steps`
    and `K`. When the batch grows it stops this `fit` so the loop
    (lbsgd.run.trainer.fit_segments) rebuilds the pipeline at the new batch
    size; `pending` tells the loop to continue.

    Args:
      growth: a BatchGrowth. lr_control: an LRControl.
      initial_learning_rate: mu0, the LR at the starting batch B_s (with a
        schedule: the value the schedule's LR is measured against, its peak).
      steps_for_batch: callable(batch) -> optimizer steps per epoch.
      theta_monitor: the ThetaMonitor of the same fit (None: read
        `logs["theta"]`, which then must come from a ThetaMonitor earlier in
        the list; without either, a fit whose K is not fixed is refused).
      start: how B_s was chosen (the start-up probe's record, or None: given);
        kept in the state so a resumed run starts from the same B_s.
    """

    state_key = "adaptive_batch"

    def __init__(self, growth: BatchGrowth, lr_control: LRControl,
                 initial_learning_rate: float, steps_for_batch, theta_monitor=None,
                 start: dict | None = None):
        super().__init__()
        self.growth, self.lr_control = growth, lr_control
        self.initial_learning_rate = float(initial_learning_rate)
        self.learning_rate = float(initial_learning_rate)
        self.steps_for_batch = steps_for_batch
        self.theta_monitor = theta_monitor
        self.start = start
        self.pending = False
        self.events: list[dict] = []

    @property
    def batch_size(self) -> int:
        return self.growth.batch

    def get_state(self):
        return {"growth": self.growth.get_state(), "lr_control": self.lr_control.get_state(),
                "learning_rate": self.learning_rate, "events": self.events,
                "start": self.start}

    def set_state(self, state):
        self.growth.set_state(state["growth"])
        self.lr_control.set_state(state["lr_control"])
        self.learning_rate = float(state["learning_rate"])
        self.events = list(state["events"])
        self.start = state.get("start")          # absent in checkpoints before the probe

    def on_train_begin(self, logs=None):
        self.pending = False
        optimizer = self.model.optimizer
        schedule = getattr(optimizer, "_learning_rate", None)
        if (isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
                and not isinstance(schedule, ScaledSchedule)):
            optimizer.learning_rate = ScaledSchedule(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        schedule = getattr(optimizer, "_learning_rate", None)
        self._epoch_batch, self._epoch_lr = self.growth.batch, self.learning_rate
        if isinstance(schedule, ScaledSchedule):
            schedule.factor.assign(self.learning_rate / self.initial_learning_rate)
            self._epoch_lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        else:
            optimizer.learning_rate.assign(self.learning_rate)

    def _theta(self, epoch, logs):
        if self.theta_monitor is not None:
            return self.theta_monitor.measure(epoch)[0]
        if "theta" not in logs and self.growth.k is None:
            raise ValueError(
                "AdaptiveBatchSize found no `theta` in the epoch logs: pass "
                "theta_monitor=<the ThetaMonitor> (any order), put the ThetaMonitor before "
                "it in `callbacks`, or fix K with BatchGrowth(k_epochs=...).")
        return logs.get("theta")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        done = epoch + 1
        factor = self.growth.lr_factor
        grew = self.growth.end_epoch(self._theta(epoch, logs))
        if grew:
            self.learning_rate *= self.growth.lr_factor / factor
            self.lr_control.restart()   # saturation is judged at the new batch and LR
            self.events.append({"epoch": done, "event": "grow", "batch": self.growth.batch,
                                "learning_rate": self.learning_rate})
        judge = not grew or self.lr_control.mode == "fixed"
        if judge and self.lr_control.end_epoch(done, logs.get("loss")):
            first = self.lr_control.decays == 1 and self.lr_control.reset_to_initial
            base = self.initial_learning_rate if first else self.learning_rate
            self.learning_rate = base * self.lr_control.beta
            self.events.append({"epoch": done, "event": "decay",
                                "learning_rate": self.learning_rate})
        logs["batch_size"] = self._epoch_batch
        logs["learning_rate"] = self._epoch_lr
        logs["steps"] = self.steps_for_batch(self._epoch_batch)
        logs["K"] = self.growth.k or 0
        if grew:
            self.pending = True
            self.model.stop_training = True
