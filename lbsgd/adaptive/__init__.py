"""Lee et al.'s adaptive batch size: theta, Algorithm 1's growth, LR control, the stable-batch probe, growing ranks (III-D, III-E, IV-A).

* `growth`: theta (Eq. 4), `BatchGrowth` (Algorithm 1), `LRControl` (decay on
  cost saturation), `ThetaMonitor`, `AdaptiveBatchSize`, `ScaledSchedule`
* `probe`: the maximum-stable-batch probe (gradient l2-norms per batch size;
  the command is `python -m lbsgd.probe`; `adaptive.start_batch="probe"` runs
  it at a run's start)
* `ranks`: more workers as the batch grows (IV-A): `ranks_for_batch`,
  `RankGrowth`, the restart request `launch/run.sh` acts on

Every public name is importable from `lbsgd.adaptive` itself.
"""

from lbsgd._exports import lazy

_WHERE = {
    "AdaptiveBatchSize": "growth", "BatchGrowth": "growth", "LRControl": "growth",
    "ScaledSchedule": "growth", "ThetaMonitor": "growth", "theta": "growth",
    "choose_start_batch": "probe", "gradient_norms": "probe", "start_record": "probe",
    "RankGrowth": "ranks", "ranks_for_batch": "ranks",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy(__name__, _WHERE)
