"""The run-state record: its stored layout, versions, refusals, and a real checkpoint read back."""

import json
import os

import keras
import numpy as np
import pytest

from lbsgd.errors import ConfigError
from lbsgd.run import checkpoint as ckpt
from lbsgd.run.rundir import RunDir, read_run_state
from lbsgd.run.state import VERSION, RunState

ROWS = [{"epoch": 1, "batch_size": 64, "steps": 10}, {"epoch": 2, "batch_size": 128, "steps": 5}]


def test_the_stored_layout_round_trips_and_keeps_the_callbacks_beside_the_run_keys():
    state = RunState(epochs_done=2, world_size=2, config_file="/c.py",
                     callbacks={"run_logger": {"rows": ROWS},
                                "adaptive_batch": {"growth": {"batch": 128}}})
    stored = state.to_dict()
    assert stored == {"version": VERSION, "epochs_done": 2, "world_size": 2,
                      "config_file": "/c.py", "run_logger": {"rows": ROWS},
                      "adaptive_batch": {"growth": {"batch": 128}}}
    again = RunState.from_dict(json.loads(json.dumps(stored)))
    assert again == state
    assert again.history_rows == ROWS and again.adaptive_batch == {"growth": {"batch": 128}}
    assert again.callback("run_logger") == {"rows": ROWS}
    with pytest.raises(KeyError):
        again.callback("theta")


def test_a_checkpoint_from_before_the_version_reads_as_version_1():
    old = RunState.from_dict({"epochs_done": 3, "run_logger": {"rows": ROWS}})
    assert (old.version, old.epochs_done, old.world_size, old.config_file) == (1, 3, None, None)
    assert old.adaptive_batch is None and old.history_rows == ROWS


@pytest.mark.parametrize("record, message", [
    ({"version": VERSION + 1, "epochs_done": 1},
     rf"cannot read \(it reads versions 1-{VERSION}\): 'x.npz'. Received: version={VERSION + 1}"),
    ({"version": "1", "epochs_done": 1}, r"Received: version='1'"),
    ({"world_size": 2}, r"without `epochs_done`: 'x.npz'. Received: epochs_done=None"),
])
def test_a_record_this_version_cannot_read_is_refused_naming_the_file_and_value(record, message):
    with pytest.raises(ConfigError, match=message):
        RunState.from_dict(record, "x.npz")


def test_a_callback_cannot_take_a_run_key():
    with pytest.raises(ValueError, match=r"Received state keys: \['world_size'\]"):
        RunState(epochs_done=1, callbacks={"world_size": {}}).to_dict()


def _tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32), verbose=0)
    return model


def test_a_real_checkpoint_carries_the_versioned_record_and_the_launcher_reads_it(tmp_path):
    run = RunDir(str(tmp_path))
    state = RunState(epochs_done=4, world_size=2, callbacks={"run_logger": {"rows": ROWS}})
    ckpt.save(run.checkpoint, _tiny_model(), state.to_dict())
    assert read_run_state(run.checkpoint, verify=True) == state
    assert ckpt.read_state(run.checkpoint) == state
    with open(run.config, "w") as f:
        f.write("{}")
    assert run.check_can_start(resume=True, overwrite=False) == state
    # a checkpoint from a newer lbsgd: refused in one line before any rank starts
    newer = dict(state.to_dict(), version=VERSION + 1)
    ckpt.save(run.checkpoint, _tiny_model(), newer)
    with pytest.raises(ConfigError, match=rf"run-state version .* Received: version={VERSION + 1}"):
        run.check_can_start(resume=True, overwrite=False)
    assert os.path.isfile(run.checkpoint)          # nothing removed
