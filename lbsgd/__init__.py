"""lbsgd: large-minibatch SGD on CPU clusters with Horovod and Keras 3 (both papers' techniques).

The public API, by where each technique lives (importing `lbsgd` loads no
TensorFlow; each name loads its module on first use):

* run wiring: `run`, `Trainer`, `fit_segments`, `CALLBACK_ORDER`,
  `check_callback_order` (trainer.py); `RunDir` (rundir.py)
* configs: `TrainConfig` and its sections, `load_config`, `apply_overrides` (config.py)
* gradient exchange: `DistributedOptimizer`, `distributed_callbacks` (distributed.py)
* Codreanu et al.: schedules (`linear_scaling`, `GradualWarmup`,
  `PolynomialDecay`, `FinalCollapse`, `CollapsedEnsemble`, schedules.py), the
  recipe's phases (`build_plan`, `RecipePhases`, `Snapshots`, recipe.py),
  collapsed ensembles (`evaluate_snapshots`, ensemble.py), bookkeeping
  (`RunLogger`, `TimeToAccuracy`, `Checkpointer`, callbacks.py), precise BN
  (`PreciseBN`, `recompute_bn_statistics`, precise_bn.py)
* Lee et al.: `ThetaMonitor`, `BatchGrowth`, `LRControl`, `AdaptiveBatchSize`,
  `ScaledSchedule` (adaptive.py), `ConvergenceStop` (callbacks.py)
* failing loudly: `DivergenceGuard`, `StallWatchdog`, `TrainingDiverged` (faults.py)
"""

import importlib

__version__ = "0.1.0"

_WHERE = {
    "run": "trainer", "Trainer": "trainer", "fit_segments": "trainer",
    "CALLBACK_ORDER": "trainer", "check_callback_order": "trainer",
    "RunDir": "rundir",
    "TrainConfig": "config", "DataConfig": "config", "ModelConfig": "config",
    "OptimizerConfig": "config", "ScheduleConfig": "config", "EnsembleConfig": "config",
    "AdaptiveConfig": "config", "ConfigError": "errors", "load_config": "config",
    "apply_overrides": "config",
    "DistributedOptimizer": "distributed",
    "linear_scaling": "schedules", "GradualWarmup": "schedules",
    "PolynomialDecay": "schedules", "StepDecay": "schedules", "ConstantLR": "schedules",
    "FinalCollapse": "schedules", "CollapsedEnsemble": "schedules",
    "build_schedule": "schedules",
    "build_plan": "recipe", "RecipePhases": "recipe", "Snapshots": "recipe",
    "evaluate_snapshots": "ensemble", "EnsembleEvaluation": "ensemble",
    "RunLogger": "callbacks", "TimeToAccuracy": "callbacks", "Checkpointer": "callbacks",
    "ConvergenceStop": "callbacks",
    "PreciseBN": "precise_bn", "recompute_bn_statistics": "precise_bn",
    "ThetaMonitor": "adaptive", "BatchGrowth": "adaptive", "LRControl": "adaptive",
    "AdaptiveBatchSize": "adaptive", "ScaledSchedule": "adaptive",
    "DivergenceGuard": "faults", "StallWatchdog": "faults", "TrainingDiverged": "faults",
}
_RENAMED = {"distributed_callbacks": ("distributed", "callbacks")}

__all__ = sorted(list(_WHERE) + list(_RENAMED))


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"lbsgd.{_WHERE[name]}"), name)
    if name in _RENAMED:
        module, attr = _RENAMED[name]
        return getattr(importlib.import_module(f"lbsgd.{module}"), attr)
    raise AttributeError(f"module 'lbsgd' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
