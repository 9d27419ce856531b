"""The collapsed ensemble's timing: when each phase begins and ends (Codreanu et al. VI, Figure 4).

The one owner of the cycle timing: the LR schedule
(`lbsgd.recipe.schedules.CollapsedEnsemble`) and the epoch plan
(`lbsgd.recipe.phases.phases`: weight decay, augmentation, snapshots) both read the
:class:`EnsembleTiming` that :func:`derive` makes from a config's
`schedule.ensemble` section and the run's epochs, in the paper's proportions.
"""

from __future__ import annotations

import dataclasses
import math

from lbsgd.config.checks import require


@dataclasses.dataclass(frozen=True)
class EnsembleTiming:
    """When each phase of the collapsed-ensemble schedule begins and ends, in epochs.

    The one place the cycle timing is computed: the LR schedule
    (lbsgd.recipe.schedules.CollapsedEnsemble) and the epoch plan (lbsgd.recipe.phases:
    weight decay, augmentation, snapshots) both read it. Every collapse ends
    on a whole epoch, where its snapshot is taken.
    """

    linear_end_epoch: float
    linear_horizon_epochs: float
    power2_end_epoch: float
    power2_end_fraction: float
    rewarmup_epochs: float
    rise_factor: float
    decay_epochs: float
    decay_divisor: float
    num_cycles: int
    collapse_epochs: int = 0     # 0: the whole power-2 decay

    @property
    def cycle_epochs(self) -> float:
        return self.rewarmup_epochs + self.decay_epochs

    @property
    def end_epoch(self) -> float:
        return self.power2_end_epoch + self.num_cycles * self.cycle_epochs

    def collapse_ends(self) -> list[int]:
        """1-based epochs after which a collapse ends (one snapshot each)."""
        return [int(round(self.power2_end_epoch + k * self.cycle_epochs))
                for k in range(self.num_cycles + 1)]

    def phase(self, epoch: int) -> tuple[str, int, bool]:
        """(phase, cycle, ends a collapse) of 0-based `epoch`: "main", "collapse" or "rewarmup"."""
        ends = self.collapse_ends()
        if epoch < math.floor(self.linear_end_epoch + 1e-9):
            return "main", -1, False
        k = next((i for i, end in enumerate(ends) if epoch < end), len(ends))
        if k == len(ends):
            return "collapse", self.num_cycles, False      # LR held after the last cycle
        if k > 0 and epoch < ends[k - 1] + self.rewarmup_epochs - 1e-9:
            return "rewarmup", k, False
        if self.collapse_epochs and epoch < ends[k] - self.collapse_epochs:
            return "decay", k, False
        return "collapse", k, epoch + 1 == ends[k]


# The paper's 120-epoch run (Figure 4): proportions for other run lengths.
PAPER_ENSEMBLE_EPOCHS = 120


PAPER_CYCLE_FRACTION = 15 / 120          # one re-warmup + decay cycle


PAPER_REWARMUP_FRACTION = 3 / 15         # of a cycle


PAPER_POWER2_END_FRACTION = 45 / 120     # the first collapse ends


PAPER_LINEAR_END_FRACTION = 30 / 45      # of the first collapse's end


PAPER_LINEAR_HORIZON_FACTOR = 90 / 30    # the linear decay's slope reaches 0 at 3x its end


PAPER_NUM_CYCLES = 5


PAPER_COLLAPSE_FRACTION = 3 / 12         # of each power-2 decay: its last 3 epochs collapse


PAPER_ENSEMBLE_SNAPSHOTS = 5             # "when ensembling 5 models"


def derive(ens, epochs: int) -> EnsembleTiming:
    """The timing of a run of `epochs` epochs from a `schedule.ensemble` section (an
    :class:`lbsgd.config.EnsembleConfig`): fields left at None follow the paper's
    proportions; ConfigError if the result is unusable."""
    f = "schedule.ensemble."
    rewarmup, decay = ens.rewarmup_epochs, ens.decay_epochs
    share = PAPER_REWARMUP_FRACTION / (1 - PAPER_REWARMUP_FRACTION)   # 3 : 12
    if rewarmup is None and decay is None:
        cycle = max(2, round(epochs * PAPER_CYCLE_FRACTION))
        rewarmup = cycle * PAPER_REWARMUP_FRACTION
        decay = cycle - rewarmup
    elif rewarmup is None:
        rewarmup = decay * share
    elif decay is None:
        decay = rewarmup / share
    cycle = rewarmup + decay
    num_cycles = ens.num_cycles
    power2_end = ens.power2_end_epoch
    if num_cycles is None:
        first = power2_end if power2_end is not None else round(
            epochs * PAPER_POWER2_END_FRACTION)
        num_cycles = max(0, min(PAPER_NUM_CYCLES, int((epochs - first + 1e-9) // cycle)))
    if power2_end is None:
        power2_end = epochs - num_cycles * cycle
    linear_end = ens.linear_end_epoch or power2_end * PAPER_LINEAR_END_FRACTION
    horizon = ens.linear_horizon_epochs or linear_end * PAPER_LINEAR_HORIZON_FACTOR
    collapse = ens.collapse_epochs
    if collapse is None:
        collapse = max(1, int(round(decay * PAPER_COLLAPSE_FRACTION)))
    t = EnsembleTiming(float(linear_end), float(horizon), float(power2_end),
                       ens.power2_end_fraction, float(rewarmup), ens.rise_factor,
                       float(decay), ens.decay_divisor, int(num_cycles), int(round(collapse)))
    check_timing(t, epochs, f)
    return t


def check_timing(t: EnsembleTiming, epochs: int, f: str) -> None:
    whole = lambda x: abs(x - round(x)) < 1e-6  # noqa: E731
    require(t.linear_end_epoch < t.linear_horizon_epochs, f + "linear_end_epoch",
             t.linear_end_epoch, f"must be < {f}linear_horizon_epochs={t.linear_horizon_epochs:g}")
    require(t.linear_end_epoch < t.power2_end_epoch, f + "power2_end_epoch", t.power2_end_epoch,
             f"must be > {f}linear_end_epoch={t.linear_end_epoch:g}")
    require(0 < t.power2_end_fraction < 1 - t.linear_end_epoch / t.linear_horizon_epochs,
             f + "power2_end_fraction", t.power2_end_fraction,
             "must be in (0, LR fraction left at linear_end_epoch)")
    require(whole(t.power2_end_epoch), f + "power2_end_epoch", t.power2_end_epoch,
             "must be a whole epoch (a collapse ends there, with a snapshot)")
    require(whole(t.cycle_epochs), f + "decay_epochs", t.decay_epochs,
             f"must make rewarmup_epochs + decay_epochs a whole number of epochs (now "
             f"{t.cycle_epochs:g}): each cycle's collapse ends with a snapshot")
    require(t.collapse_epochs <= min(t.decay_epochs, t.power2_end_epoch - t.linear_end_epoch)
             + 1e-9, f + "collapse_epochs", t.collapse_epochs,
             f"must fit in each power-2 decay (decay_epochs={t.decay_epochs:g}, the first "
             f"{t.power2_end_epoch - t.linear_end_epoch:g} epochs)")
    require(t.num_cycles + 1 >= 2, "epochs", epochs,
             f"gives {t.num_cycles + 1} snapshot(s); a collapsed ensemble needs >= 2 "
             f"(lengthen the run or set {f}num_cycles)")
    require(abs(t.end_epoch - epochs) < 1e-6, "epochs", epochs,
             f"must equal the last cycle's end, epoch {t.end_epoch:g} "
             f"({'the run would stop mid-cycle' if epochs < t.end_epoch else 'epochs after it would have no schedule'}; "
             f"leave the {f}* epoch fields unset to derive them from epochs)")
