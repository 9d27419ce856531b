"""The run-state record a checkpoint carries, versioned, with its one reader (exact resume, both papers).

A checkpoint holds the model and optimizer variables and this record: the
epochs done, the ranks that wrote it, the config file the run started from
and each stateful callback's state by its `state_key` (`run_logger`'s history
rows, `adaptive_batch`'s growth state, ...). The trainer, the world-size
policy (`lbsgd.run.resize`) and the run directory's start/resume decision
read it only through :class:`RunState`, so its layout has one owner. No
TensorFlow here.

Layout (JSON in the checkpoint's `state` entry): ``{"version": 1,
"epochs_done": int, "world_size": int, "config_file": str | null,
<state_key>: {...}, ...}``. Checkpoints written before the record had a
version (no `version` key) are read as version 1: the layout is the same.
"""

from __future__ import annotations

import dataclasses

from lbsgd.errors import ConfigError

VERSION = 1
_RUN_KEYS = ("version", "epochs_done", "world_size", "config_file")


@dataclasses.dataclass(frozen=True)
class RunState:
    """What a checkpoint says about its run, beyond the variables.

    Attributes:
      epochs_done: epochs the checkpointed run has finished.
      world_size: ranks that wrote it (None: a checkpoint that did not record it).
      config_file: the config file the run started from (realpath; None if none).
      callbacks: each stateful callback's state, keyed by its `state_key`.
      version: the record's layout version.
    """

    epochs_done: int
    world_size: int | None = None
    config_file: str | None = None
    callbacks: dict = dataclasses.field(default_factory=dict)
    version: int = VERSION

    @classmethod
    def from_dict(cls, record: dict, source: str = "checkpoint") -> "RunState":
        """The record as stored; ConfigError naming `source` if it is not one this version reads."""
        version = record.get("version", 1)
        if not isinstance(version, int) or version > VERSION or version < 1:
            raise ConfigError(f"Field `run_dir` holds a checkpoint whose run-state version "
                              f"this lbsgd cannot read (it reads versions 1-{VERSION}): "
                              f"{source!r}. Received: version={version!r}")
        if not isinstance(record.get("epochs_done"), int):
            raise ConfigError(f"Field `run_dir` holds a checkpoint without `epochs_done`: "
                              f"{source!r}. Received: epochs_done={record.get('epochs_done')!r}")
        world = record.get("world_size")
        return cls(epochs_done=record["epochs_done"],
                   world_size=None if world is None else int(world),
                   config_file=record.get("config_file"),
                   callbacks={k: v for k, v in record.items() if k not in _RUN_KEYS},
                   version=version)

    def to_dict(self) -> dict:
        """The record as stored (the callbacks' states beside the run's own keys)."""
        clash = sorted(set(self.callbacks) & set(_RUN_KEYS))
        if clash:
            raise ValueError(f"Argument `callbacks` must not use the run's own keys. "
                             f"Received state keys: {clash}")
        return {"version": VERSION, "epochs_done": int(self.epochs_done),
                "world_size": self.world_size, "config_file": self.config_file,
                **self.callbacks}

    def callback(self, key: str):
        """The state the callback with `state_key` `key` saved (KeyError if none)."""
        return self.callbacks[key]

    @property
    def history_rows(self) -> list[dict]:
        """The run logger's per-epoch rows (empty if it saved none)."""
        return list((self.callbacks.get("run_logger") or {}).get("rows", []))

    @property
    def adaptive_batch(self) -> dict | None:
        """Lee et al.'s growth state (None for a fixed-batch run)."""
        return self.callbacks.get("adaptive_batch")
