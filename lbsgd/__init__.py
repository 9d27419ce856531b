"""lbsgd: large-minibatch SGD on CPU clusters with Horovod and Keras 3 (both papers' techniques).

The house, one package per concern (importing `lbsgd` loads no TensorFlow;
each name loads its module on first use):

* `lbsgd.recipe` - Codreanu et al.: schedules (`linear_scaling`,
  `GradualWarmup`, `PolynomialDecay`, `FinalCollapse`, `CollapsedEnsemble`),
  the collapsed ensemble's timing, the phase plan (`build_plan`,
  `RecipePhases`, `Snapshots`), ensemble evaluation (`evaluate_snapshots`)
* `lbsgd.adaptive` - Lee et al.: `ThetaMonitor`, `BatchGrowth`, `LRControl`,
  `AdaptiveBatchSize`, `ScaledSchedule`, the stable-batch probe
* `lbsgd.parallel` - Horovod start-up, `DistributedOptimizer` and the
  gradient exchange, broadcast and metric averaging (`distributed_callbacks`)
* `lbsgd.optim` - weight decay, momentum correction, LARS
* `lbsgd.model` - the networks with the papers' BN tweaks, precise BN
  (`PreciseBN`, `recompute_bn_statistics`), export to `.keras`
* `lbsgd.data` - per-rank pipelines, augmentation and its switch, sources
* `lbsgd.run` - the run's wiring in one place (`run`, `Trainer`,
  `fit_segments`, `CALLBACK_ORDER`), `RunDir`, checkpoints, bookkeeping
  (`RunLogger`, `TimeToAccuracy`, `Checkpointer`, `ConvergenceStop`), faults
  (`DivergenceGuard`, `StallWatchdog`, `TrainingDiverged`), resize
* `lbsgd.config` - `TrainConfig` and its sections, `load_config`,
  `apply_overrides`, the resume policy, `--help`
* `lbsgd.report` - figures, the scaling model, notebooks
* the commands, each `python -m lbsgd.<name>`: `train`, `ensemble`, `probe`,
  `plots`, `scaling`, `efficiency`, `launch` (and `rankstreams`, the
  launcher's console filter); the papers' experiments as configs: `paper`

The flat module paths of earlier releases (`lbsgd.schedules`,
`lbsgd.distributed`, `lbsgd.trainer`, ...) still import: each is the module
it became (:data:`MOVED`).
"""

import importlib
import importlib.abc
import importlib.util
import sys

from lbsgd._exports import lazy

__version__ = "0.1.0"

_WHERE = {
    "run": "run.trainer", "Trainer": "run.trainer", "fit_segments": "run.trainer",
    "CALLBACK_ORDER": "run.trainer", "check_callback_order": "run.trainer",
    "RunDir": "run.rundir",
    "TrainConfig": "config", "DataConfig": "config", "ModelConfig": "config",
    "OptimizerConfig": "config", "ScheduleConfig": "config", "EnsembleConfig": "config",
    "AdaptiveConfig": "config", "ConfigError": "errors", "load_config": "config",
    "apply_overrides": "config",
    "DistributedOptimizer": "parallel.exchange",
    "linear_scaling": "recipe.schedules", "GradualWarmup": "recipe.schedules",
    "PolynomialDecay": "recipe.schedules", "StepDecay": "recipe.schedules",
    "ConstantLR": "recipe.schedules", "FinalCollapse": "recipe.schedules",
    "CollapsedEnsemble": "recipe.schedules", "build_schedule": "recipe.schedules",
    "build_plan": "recipe.phases", "RecipePhases": "recipe.phases", "Snapshots": "recipe.phases",
    "evaluate_snapshots": "recipe.ensemble", "EnsembleEvaluation": "recipe.ensemble",
    "RunLogger": "run.callbacks", "TimeToAccuracy": "run.callbacks",
    "Checkpointer": "run.callbacks", "ConvergenceStop": "run.callbacks",
    "PreciseBN": "model.precise_bn", "recompute_bn_statistics": "model.precise_bn",
    "ThetaMonitor": "adaptive.growth", "BatchGrowth": "adaptive.growth",
    "LRControl": "adaptive.growth", "AdaptiveBatchSize": "adaptive.growth",
    "ScaledSchedule": "adaptive.growth",
    "DivergenceGuard": "run.faults", "StallWatchdog": "run.faults",
    "TrainingDiverged": "run.faults",
}
_RENAMED = {"distributed_callbacks": ("parallel.sync", "callbacks")}

# Earlier flat modules -> the module each became (a split one -> its package, which
# re-exports every name it had).
MOVED = {
    "lbsgd.callbacks": "lbsgd.run.callbacks", "lbsgd.checkpoint": "lbsgd.run.checkpoint",
    "lbsgd.console": "lbsgd.run.console", "lbsgd.faults": "lbsgd.run.faults",
    "lbsgd.resize": "lbsgd.run.resize", "lbsgd.rundir": "lbsgd.run.rundir",
    "lbsgd.trainer": "lbsgd.run.trainer", "lbsgd.runtime": "lbsgd.parallel.runtime",
    "lbsgd.distributed": "lbsgd.parallel", "lbsgd.schedules": "lbsgd.recipe.schedules",
    "lbsgd.models": "lbsgd.model.networks", "lbsgd.precise_bn": "lbsgd.model.precise_bn",
    "lbsgd.export": "lbsgd.model.export", "lbsgd.lars": "lbsgd.optim.lars",
    "lbsgd.phantom": "lbsgd.data.phantom", "lbsgd.notebook": "lbsgd.report.notebook",
    "lbsgd.cli": "lbsgd.config.help",
}

__all__ = sorted(list(_WHERE) + list(_RENAMED))


_lookup, _ = lazy(__name__, _WHERE)


def __getattr__(name):
    if name in _RENAMED:
        module, attr = _RENAMED[name]
        return getattr(importlib.import_module(f"lbsgd.{module}"), attr)
    if f"lbsgd.{name}" in MOVED:
        return importlib.import_module(MOVED[f"lbsgd.{name}"])
    return _lookup(name)      # a public name, else a submodule, else AttributeError


def __dir__():
    return sorted(list(globals()) + __all__)


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import lbsgd.schedules` gives the module `lbsgd.recipe.schedules` itself (one object)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())
