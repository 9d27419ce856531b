"""Codreanu et al.'s large-batch recipe: LR schedules, the phase plan, snapshots and the collapsed ensemble (IV-D, V-B, VI).

* `schedules`: linear scaling, warmup, polynomial and step decay, final
  collapse, collapsed-ensemble cycles (pure functions of the step, serialisable)
* `timing`: when each phase of the collapsed ensemble begins and ends (the one owner)
* `phases`: the per-epoch plan (weight decay doubled and augmentation off in
  a collapse), `RecipePhases`, `Snapshots`
* `ensemble`: snapshot and ensemble evaluation (the command is `python -m lbsgd.ensemble`)

The phase plan's names (`plan_epochs`, `build_plan`, `RecipePhases`,
`Snapshots`, ...) are importable from `lbsgd.recipe` itself.
"""

from lbsgd._exports import lazy

_WHERE = {
    "EpochPlan": "phases", "RecipePhases": "phases", "SNAPSHOT_DIR": "phases",
    "SNAPSHOT_INDEX": "phases", "Snapshots": "phases", "build_plan": "phases",
    "collapse_weight_decay": "phases", "main_weight_decay": "phases", "plan_epochs": "phases",
    "set_augmentation": "phases",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy(__name__, _WHERE)
