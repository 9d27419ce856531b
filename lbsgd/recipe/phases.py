"""The phases of the large-batch recipe: weight-decay switching, augmentation toggling, snapshots.

Serves Codreanu et al. Sections V-B (smaller weight decay, then a final
collapse: power-2 LR decay, weight decay doubled, scale/aspect augmentation
off), V-C (multi-step weight-decay increase of the 64K run, Figure 3) and VI
(collapsed ensembles: one snapshot at the end of each collapse).

A run's phases are a pure function of its config: :func:`build_plan` gives
one :class:`EpochPlan` per epoch. :class:`RecipePhases` applies it (weight
decay into the optimizer's variable, augmentation into the pipeline's
:class:`~lbsgd.data.AugmentSwitch`) and logs `phase`, `cycle`,
`weight_decay` and `augment` every epoch; :class:`Snapshots` saves rank 0's
weights with their metadata at the end of each collapse. Both work in a
user's own `model.fit` as well as in `lbsgd.train`.
"""

from __future__ import annotations

import dataclasses
import math
import os

import keras

from lbsgd.run import checkpoint as ckpt
from lbsgd.run import rundir
from lbsgd.parallel import runtime
from lbsgd.config import ScheduleConfig, TrainConfig

SNAPSHOT_DIR = rundir.SNAPSHOTS
SNAPSHOT_INDEX = rundir.SNAPSHOT_INDEX


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """What one epoch (0-based `epoch`) runs with.

    Attributes:
      phase: "warmup", "main", "rewarmup" (ensemble cycle rise), "decay" (an
        ensemble cycle's power-2 decay before its collapse) or "collapse".
      cycle: collapse number (0 = the first collapse; -1 before any).
      weight_decay: L2 coefficient of the epoch.
      augment: scale/aspect augmentation on.
      snapshot: a collapse ends with this epoch: save a snapshot after it.
    """

    epoch: int
    phase: str
    cycle: int
    weight_decay: float
    augment: bool
    snapshot: bool


def main_weight_decay(schedule: ScheduleConfig, base: float, epoch: int) -> float:
    """Main-phase weight decay at `epoch`: `base`, stepped up at weight_decay_epochs."""
    wd = base
    for boundary, value in zip(schedule.weight_decay_epochs, schedule.weight_decay_values):
        if epoch >= boundary:
            wd = value
    return wd


def collapse_weight_decay(schedule: ScheduleConfig, base: float) -> float:
    """Weight decay in collapse phases (default: twice the main value, 5e-5 -> 1e-4)."""
    return schedule.collapse_weight_decay or 2.0 * base


def build_plan(cfg: TrainConfig) -> list[EpochPlan]:
    """One EpochPlan per epoch of the run `cfg` describes."""
    return plan_epochs(cfg.schedule, cfg.epochs, cfg.optimizer.weight_decay)


def plan_epochs(schedule: ScheduleConfig, epochs: int, weight_decay: float) -> list[EpochPlan]:
    """One EpochPlan per epoch from the schedule settings alone (for a script's own fit).

    Args:
      schedule: the ScheduleConfig (kind, warmup, collapse, ensemble cycles).
      epochs: the run's length.
      weight_decay: the main-phase L2 coefficient (collapses double it by default).
    """
    sched, base = schedule, float(weight_decay)
    collapse_wd = collapse_weight_decay(sched, base)
    warmup = int(math.ceil(sched.warmup_epochs - 1e-9))
    timing = sched.ensemble.timing(epochs) if sched.kind == "collapsed_ensemble" else None
    begin = epochs - sched.collapse_epochs_for(epochs)
    plan = []
    for e in range(epochs):
        if timing is not None:
            phase, cycle, snapshot = timing.phase(e)
        elif e >= begin:
            phase, cycle, snapshot = "collapse", 0, e == epochs - 1
        else:
            phase, cycle, snapshot = "main", -1, False
        if phase == "main" and e < warmup:
            phase = "warmup"
        collapse = phase == "collapse"
        plan.append(EpochPlan(
            epoch=e, phase=phase, cycle=cycle,
            weight_decay=collapse_wd if collapse else main_weight_decay(sched, base, e),
            augment=not collapse, snapshot=snapshot))
    return plan


def set_augmentation(augment_switch, plan) -> None:
    """Writes the plan's per-epoch augmentation into a pipeline's lbsgd.data.AugmentSwitch."""
    for p in plan[:augment_switch.num_epochs]:
        augment_switch.set(p.epoch, p.augment, p.epoch + 1)


class RecipePhases(keras.callbacks.Callback):
    """Drives the recipe's phases: weight decay and augmentation per epoch, logged.

    At the start of every epoch it sets the optimizer's `l2_weight_decay`
    variable (lbsgd.parallel.DistributedOptimizer; the compiled train step
    reads it, so nothing is recompiled) and, at train begin, writes the whole
    augmentation plan into the pipeline's AugmentSwitch. Every epoch it adds
    `phase` (text), `cycle`, `weight_decay` and `augment` (1/0) to the logs.

    Args:
      plan: list of EpochPlan (see build_plan), one per epoch.
      augment_switch: the pipeline's lbsgd.data.AugmentSwitch (optional).
    """

    def __init__(self, plan, augment_switch=None):
        super().__init__()
        self.plan = list(plan)
        if not self.plan:
            raise ValueError("Argument `plan` must hold at least one epoch. Received: plan=[]")
        self.augment_switch = augment_switch

    def _at(self, epoch: int) -> EpochPlan:
        return self.plan[min(epoch, len(self.plan) - 1)]

    def on_train_begin(self, logs=None):
        if self.augment_switch is not None:
            set_augmentation(self.augment_switch, self.plan)

    def on_epoch_begin(self, epoch, logs=None):
        wd = getattr(self.model.optimizer, "l2_weight_decay", None)
        if wd is None:
            raise ValueError("RecipePhases needs an optimizer made by "
                             "lbsgd.parallel.DistributedOptimizer (it holds the weight "
                             f"decay variable). Received: {type(self.model.optimizer).__name__}")
        wd.assign(self._at(epoch).weight_decay)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        p = self._at(epoch)
        logs["phase"] = p.phase
        logs["cycle"] = p.cycle
        logs["weight_decay"] = float(keras.ops.convert_to_numpy(
            self.model.optimizer.l2_weight_decay))
        switch = self.augment_switch
        on = p.augment if switch is None else switch.values()[min(epoch, switch.num_epochs - 1)]
        logs["augment"] = 1.0 if on else 0.0


class Snapshots(keras.callbacks.Callback):
    """Saves a snapshot of the weights at the end of each collapse (rank 0).

    Each snapshot is `directory/epoch_NNNN.npz` (model variables and
    metadata: epoch, phase, cycle, learning_rate, weight_decay and every
    validation metric in the logs); `directory/index.json` lists them. The
    list is callback state, so a resumed run continues it exactly. Put it
    after RecipePhases and before RunLogger (which takes text such as
    `phase` out of the logs).

    Args:
      directory: where snapshots go.
      epochs: 1-based epochs after which to snapshot (e.g. the cycle ends
        60, 75, 90, 105, 120).
    """

    state_key = "snapshots"

    def __init__(self, directory: str, epochs):
        super().__init__()
        self.directory = directory
        self.epochs = sorted({int(e) for e in epochs})
        self.snapshots: list[dict] = []

    @classmethod
    def from_plan(cls, directory: str, plan) -> "Snapshots":
        return cls(directory, [p.epoch + 1 for p in plan if p.snapshot])

    def get_state(self):
        return {"snapshots": self.snapshots}

    def set_state(self, state):
        self.snapshots = [dict(s) for s in state["snapshots"]]

    @property
    def paths(self) -> list[str]:
        return [os.path.join(self.directory, s["file"]) for s in self.snapshots]

    def on_train_begin(self, logs=None):
        if runtime.current().is_chief:
            ckpt.remove_stale_temporaries(self.directory, bases=None)

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if done not in self.epochs:
            return
        from lbsgd.run.callbacks import current_learning_rate

        logs = logs or {}
        meta = {"epoch": done, "file": f"epoch_{done:04d}.npz",
                "learning_rate": current_learning_rate(self.model.optimizer)}
        for key, value in logs.items():
            if key.startswith("val_") or key in ("phase", "cycle", "weight_decay", "augment",
                                                 "loss", "accuracy"):
                meta[key] = value if isinstance(value, str) else float(value)
        self.snapshots = [s for s in self.snapshots if s["epoch"] != done] + [meta]
        if runtime.current().is_chief:
            ckpt.save_weights(os.path.join(self.directory, meta["file"]), self.model, meta)
            ckpt.atomic_write_json(os.path.join(self.directory, SNAPSHOT_INDEX),
                                   {"snapshots": self.snapshots})
