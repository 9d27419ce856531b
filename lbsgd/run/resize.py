"""Resuming a run on another number of ranks (a host lost or added): lbsgd's world-size policy.

Codreanu et al. (Section V-A, Tables XII-XIII) and Lee et al. (Section IV-B) scale one
global batch over P workers; when a host is lost, a long run continues on the ranks
left instead of starting over. The policy, applied by `lbsgd.train --resume` on any
number of ranks:

* the global batch is kept (the config's, or the adaptive batch reached so far), so the
  optimizer step, every schedule and the samples seen (steps x global batch) continue
  unchanged; it must divide evenly over the new ranks, or the resume is refused before
  any rank starts;
* the local batch adapts: global batch / ranks;
* the data order is a function of (seed, epoch) only (`lbsgd.data.epoch_indices`), so the
  epochs ahead see the same global batches as an uninterrupted run at any size; only
  their split over the ranks changes.

What the split changes: the averaged gradient is still the mean over the global batch,
but its float sums are reassociated, and BatchNorm's training statistics are per rank
(the local batch is BN's batch, as in the paper's Caffe/Horovod runs). A BN-free model
thus continues as an uninterrupted run at the new size would, up to rounding; a model
with BN continues with BN batches of the new local size. The change is recorded in the
run's resumes.json ({"world_size": {"before": 2, "after": 1}, "local_batch": ...}).
"""

from __future__ import annotations

from lbsgd.errors import ConfigError
from lbsgd.run.state import RunState


def global_batch(state: RunState, cfg) -> int:
    """The global batch a resumed run continues with (the adaptive batch reached, if any)."""
    adaptive = state.adaptive_batch
    if adaptive:
        return int(adaptive["growth"]["batch"])
    return int(cfg.batch_size)


def samples_seen(state: RunState) -> int:
    """Training samples the checkpointed run has consumed (sum of steps x global batch)."""
    return int(sum(int(r["batch_size"]) * int(r["steps"]) for r in state.history_rows))


def check_resume(state: RunState, cfg, world_size: int) -> None:
    """ConfigError unless the run's global batch divides evenly over `world_size` ranks."""
    batch = global_batch(state, cfg)
    if batch % world_size:
        fits = [p for p in range(1, min(batch, 64) + 1) if batch % p == 0]
        raise ConfigError(
            f"Field `batch_size`: a resumed run keeps its global batch {batch}, which must "
            f"divide evenly over the ranks (e.g. {', '.join(map(str, fits[-6:]))}). "
            f"Received: {world_size} ranks")


def changes(state: RunState, cfg, world_size: int) -> dict:
    """{"world_size": (before, after), "local_batch": (before, after)} if the number of ranks
    changed since the checkpoint, else {} (also for checkpoints that did not record it)."""
    before = state.world_size
    if before is None or int(before) == int(world_size):
        return {}
    batch = global_batch(state, cfg)
    return {"world_size": (int(before), int(world_size)),
            "local_batch": (batch // int(before), batch // int(world_size))}


def describe(state: RunState, cfg, world_size: int) -> str:
    """One line saying what a resume on another number of ranks keeps and changes."""
    change = changes(state, cfg, world_size)
    (p0, p1), (b0, b1) = change["world_size"], change["local_batch"]
    return (f"resuming on {p1} rank{'s' if p1 > 1 else ''} (the checkpoint was written by "
            f"{p0}): global batch {global_batch(state, cfg)} and {samples_seen(state)} samples "
            f"seen kept, local batch {b0} -> {b1}; the data order is a function of (seed, "
            f"epoch), so the epochs ahead see the same global batches")


def record(directory, state: RunState, cfg, world_size: int,
           resume_changes: dict | None) -> None:
    """resumes.json in `directory` (a RunDir): the allowed config changes and a changed
    number of ranks; a resize is also said on stderr."""
    import sys

    resized = changes(state, cfg, world_size)
    if resume_changes or resized:
        directory.record_resume(state.epochs_done, {**(resume_changes or {}), **resized})
    if resized:
        print(f"lbsgd.train: {describe(state, cfg, world_size)}", file=sys.stderr)
