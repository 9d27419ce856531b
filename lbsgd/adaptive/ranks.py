"""More workers as the batch grows: the restart-on-more-ranks policy (Lee et al. IV-A).

Lee et al. considered two ways to run a growing batch on a cluster and chose
the second: "increase the number of processes as the batch size increases",
so the small-batch epochs do not hold every worker at a small local batch.
lbsgd does it by restarting, as AdaptDL does, through horovodrun: at a batch
growth that calls for more ranks the run checkpoints (the epoch's checkpoint,
as every epoch), writes a relaunch request and every rank exits 0 (an exit
code would make mpirun abort the job loudly); `launch/run.sh`, finding the
request, then starts `lbsgd.train --resume` on
the new number of ranks (the same -H/--hostfile hosts), and the world-size
policy of `--resume` (`lbsgd.run.resize`) carries the global batch, LR, theta
state and samples seen over exactly. Horovod elastic was not used: its Keras
state object is Keras-2 only, and a restart costs seconds against epochs of
minutes.

The rule (:func:`ranks_for_batch`): the local batch of the start, B_s / P_s,
is held: a batch B runs on B / (B_s / P_s) ranks, at most `adaptive.max_ranks`,
rounded down to a divisor of B, never fewer than the job has. A job started
without the launcher (plain horovodrun, a notebook) keeps its ranks and says
so once. No TensorFlow here.
"""

from __future__ import annotations

import json
import os
import time

RELAUNCH_FILE_ENV = "LBSGD_RELAUNCH_FILE"  # where the launcher wants the request
RELAUNCHED_ENV = "LBSGD_RELAUNCHED"      # set by the launcher in a restarted job: the request's id


def ranks_for_batch(batch: int, local_batch: int, max_ranks: int, current: int) -> int:
    """The ranks global batch `batch` runs on: batch / local_batch capped at `max_ranks`,
    rounded down to a divisor of `batch`, and never below `current` (no shrinking)."""
    for name, value in (("batch", batch), ("local_batch", local_batch),
                        ("max_ranks", max_ranks), ("current", current)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"Argument `{name}` must be an integer >= 1. "
                             f"Received: {name}={value!r}")
    want = min(max_ranks, max(1, batch // local_batch))
    while want > current and batch % want:
        want -= 1
    return max(want, current)


class Relaunch(Exception):
    """Raised by the trainer after the checkpoint of `epoch`: restart on `ranks` ranks."""

    def __init__(self, ranks: int, epoch: int, batch: int):
        super().__init__(f"the batch grew to {batch} after epoch {epoch}: "
                         f"restart on {ranks} ranks")
        self.ranks, self.epoch, self.batch = ranks, epoch, batch


class RankGrowth:
    """The run's part of the policy: the rule's state, the decision, the request, restarts.

    The trainer asks :meth:`due` before training and after each fit segment
    (when the batch has grown its epoch's checkpoint is already written) and
    calls :meth:`request` when it is due. Its state (`state_key`: the local
    batch held and each restart with its seconds) is saved with the checkpoint.

    Args:
      max_ranks: adaptive.max_ranks (0: never restart).
      local_batch: B_s / P_s, the local batch the rule holds.
      world_size: the ranks of this job.
      env: the process environment (the launcher's variables).
    """

    state_key = "rank_growth"

    def __init__(self, max_ranks: int, local_batch: int, world_size: int, env=None):
        self.max_ranks, self.local_batch, self.world_size = max_ranks, local_batch, world_size
        self.env = os.environ if env is None else env
        self.restarts: list[dict] = []
        self.warned = False

    def get_state(self) -> dict:
        return {"local_batch": self.local_batch, "restarts": self.restarts}

    def set_state(self, state: dict) -> None:
        self.local_batch = int(state["local_batch"])
        self.restarts = [dict(r) for r in state["restarts"]]

    @property
    def restart_seconds(self) -> float:
        return float(sum(r["seconds"] for r in self.restarts))

    def resumed(self, epoch: int, from_ranks: int | None, now: float | None = None) -> float:
        """In a job the launcher restarted (LBSGD_RELAUNCHED: the old job's exit time): the
        restart's seconds, from that exit to now, recorded; 0 in any other start or resume."""
        exited = self.env.get(RELAUNCHED_ENV)
        if not exited:
            return 0.0
        seconds = max(0.0, (time.time() if now is None else now) - float(exited))
        self.restarts.append({"epoch": epoch, "from_ranks": from_ranks,
                              "to_ranks": self.world_size, "seconds": seconds})
        return seconds

    def wanted(self, batch: int) -> int:
        """The ranks `batch` calls for (this job's when the policy is off)."""
        if not self.max_ranks:
            return self.world_size
        return ranks_for_batch(batch, self.local_batch, self.max_ranks, self.world_size)

    def due(self, batch: int, is_chief: bool) -> bool:
        """Whether the job must restart for `batch`: it calls for more ranks and the launcher
        listens (without it the job keeps its ranks and rank 0 says so once)."""
        ranks = self.wanted(batch)
        if ranks <= self.world_size:
            return False
        if self.env.get(RELAUNCH_FILE_ENV):
            return True
        if is_chief and not self.warned:
            print(f"lbsgd.train: the batch grew to {batch}, which adaptive.max_ranks runs on "
                  f"{ranks} ranks, but only launch/run.sh restarts a job on more ranks; "
                  f"continuing on {self.world_size}", flush=True)
        self.warned = True
        return False

    def request(self, batch: int, epoch: int, is_chief: bool, args) -> None:
        """Rank 0 writes the launcher's request (the ranks, lbsgd.train's `args`, the exit
        time); every rank then raises Relaunch."""
        ranks = self.wanted(batch)
        if is_chief:
            from lbsgd.run.rundir import atomic_write_json
            atomic_write_json(self.env[RELAUNCH_FILE_ENV],
                         {"np": ranks, "args": list(args), "epoch": epoch, "batch": batch,
                          "from_ranks": self.world_size, "exited_at": time.time()})
        raise Relaunch(ranks, epoch, batch)


def read_request(path: str) -> dict | None:
    """The relaunch request at `path` (None when there is none)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def resume_args(run_dir: str, argv) -> list:
    """lbsgd.train's arguments that resume `run_dir` (flags outside the config kept)."""
    kept = [a for a in argv if a.split("=", 1)[0] in ("--tensorboard", "--notensorboard")]
    return [f"--run_dir={os.path.abspath(run_dir)}", "--resume", *kept]
