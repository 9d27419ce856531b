"""The Trainer's wiring: the declared callback order, the adaptive callbacks in a script
(either order, on a warmup schedule), and saving a model with lbsgd's optimizer."""

import numpy as np
import pytest
import keras
import tensorflow as tf

from lbsgd.adaptive import growth as A
from lbsgd.run import callbacks
from lbsgd import parallel
from lbsgd.recipe import phases as recipe
from lbsgd.parallel import runtime
from lbsgd.recipe import schedules
from lbsgd.run import trainer
from lbsgd.config import OptimizerConfig, apply_overrides, load_config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A Trainer on digits built up to its callbacks (one process, nothing trained)."""
    runtime.init()
    cfg = apply_overrides(load_config("configs/digits_resnet.py"),
                          {"adaptive.log_theta": "true", "epochs": "3"})
    t = trainer.Trainer(cfg, str(tmp_path_factory.mktemp("order")))
    t.build_data()
    t.build_model()
    t.choose_start_batch()
    t.build_optimizer()
    t.build_callbacks()
    return t


def names(cbs):
    return [type(cb).__name__ for cb in cbs]


def test_trainer_assembles_callbacks_in_the_declared_order(built):
    assert names(built.callbacks) == [
        "BroadcastGlobalVariables", "SyncModelState", "MetricAverage", "DivergenceGuard",
        "StallWatchdog", "RecipePhases", "ThetaMonitor", "Snapshots", "RunLogger",
        "TimeToAccuracy", "Checkpointer", "RunTensorBoard"]
    trainer.check_callback_order(built.callbacks)


@pytest.mark.parametrize("first,second,message", [
    ("RunLogger", "Snapshots",
     "Callback Snapshots must come before RunLogger: Snapshots records the text `phase`"),
    ("Checkpointer", "TimeToAccuracy",
     "Callback TimeToAccuracy must come before Checkpointer: TimeToAccuracy records"),
    ("RunTensorBoard", "Checkpointer",
     "Callback Checkpointer must come before RunTensorBoard: Checkpointer saves the state"),
    ("DivergenceGuard", "MetricAverage",
     "Callback MetricAverage must come before DivergenceGuard: MetricAverage makes"),
])
def test_a_reordered_callback_list_is_refused_naming_both(built, first, second, message):
    cbs = list(built.callbacks)
    i, j = names(cbs).index(first), names(cbs).index(second)
    assert j == i - 1                                 # neighbours: swap them
    cbs[i], cbs[j] = cbs[j], cbs[i]
    with pytest.raises(ValueError, match=message):
        trainer.check_callback_order(cbs)
    # fit_segments checks before any training step
    with pytest.raises(ValueError, match=message):
        trainer.fit_segments(built.model, built.make_dataset, 1, callbacks=cbs, verbose=0)


def test_user_callbacks_may_go_anywhere(built):
    cbs = [keras.callbacks.History()] + list(built.callbacks) + [keras.callbacks.History()]
    trainer.check_callback_order(cbs)


# --- the adaptive callbacks in a user's script ---------------------------------------------

def _script_run(order, learning_rate, with_monitor=True, epochs=6):
    """Algorithm 1 in a plain Keras script: K from theta, batch 8 -> 32, via fit_segments."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ rng.normal(size=(4, 1))).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(parallel.DistributedOptimizer(keras.optimizers.SGD(learning_rate)), "mse")
    probe = tf.data.Dataset.from_tensor_slices((x[:32], y[:32])).batch(16)
    monitor = A.ThetaMonitor(probe, "mse")
    growth = A.BatchGrowth(8, 32, threshold=100.0)        # K = 2: theta always "saturated"
    grow = A.AdaptiveBatchSize(growth, A.LRControl(), 0.01, lambda b: 64 // b,
                               theta_monitor=monitor if with_monitor else None)
    cbs = [monitor, grow] if order == "monitor_first" else [grow, monitor]
    history = keras.callbacks.History()

    def make_dataset(batch, first_epoch):
        batch = batch or 8
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).repeat(), 64 // batch

    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(
        (logs["batch_size"], round(logs["learning_rate"], 6), logs["steps"], logs["K"])))
    trainer.fit_segments(model, make_dataset, epochs, adaptive=grow,
                         callbacks=cbs + [record, history], verbose=0)
    return seen, model.get_weights()


def test_adaptive_callbacks_work_in_either_order():
    a, wa = _script_run("monitor_first", 0.01)
    b, wb = _script_run("adaptive_first", 0.01)
    assert [r[0] for r in a] == [8, 8, 16, 16, 32, 32]
    assert [r[2] for r in a] == [8, 8, 4, 4, 2, 2]
    assert [r[1] for r in a] == pytest.approx([0.01, 0.01, 0.02, 0.02, 0.04, 0.04])
    assert a == b
    for p, q in zip(wa, wb):
        np.testing.assert_array_equal(p, q)


def test_adaptive_without_theta_before_it_is_refused_clearly():
    with pytest.raises(ValueError, match="AdaptiveBatchSize found no `theta`.*theta_monitor="):
        _script_run("adaptive_first", 0.01, with_monitor=False, epochs=2)


def test_adaptive_batch_size_composes_with_a_warmup_schedule():
    # The README's warmup schedule: 4 steps from 0 to the peak 0.01, then constant.
    warm = schedules.GradualWarmup(schedules.ConstantLR(0.01), 4)
    rows, _ = _script_run("monitor_first", warm)
    assert [r[0] for r in rows] == [8, 8, 16, 16, 32, 32]
    # epoch 1 starts at step 0 of the warmup (0 LR); after it the LR is the
    # peak times the batch-growth factor.
    assert [r[1] for r in rows][1:] == pytest.approx([0.01, 0.02, 0.02, 0.04, 0.04])
    assert rows[0][1] == pytest.approx(0.0, abs=1e-6)


# --- the distributed optimizer ---------------------------------------------------------------

def test_model_with_distributed_optimizer_saves_and_loads(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    opt = parallel.DistributedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9),
                                           weight_decay=1e-4, exchange="overlap", bucket_mb=2.5)
    model.compile(opt, "mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer).__name__ == "DistributedSGD"
    assert loaded.optimizer.gradient_exchange == "overlap"
    assert loaded.optimizer.bucket_mb == 2.5
    assert float(loaded.optimizer.l2_weight_decay.numpy()) == pytest.approx(1e-4)
    assert float(loaded.optimizer.momentum) == pytest.approx(0.9)
    for p, q in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(p, q)


def test_a_second_native_weight_decay_is_refused():
    with pytest.raises(ValueError, match="second weight decay.*weight_decay=0.004"):
        parallel.DistributedOptimizer(keras.optimizers.AdamW(1e-3, weight_decay=0.004),
                                         weight_decay=1e-4)


def test_momentum_correction_is_on_by_default_as_in_the_config():
    opt = parallel.DistributedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9))
    assert opt._lbsgd_momentum_correction is True
    assert OptimizerConfig().momentum_correction is True


def test_snapshot_directory_is_the_run_directorys(built):
    assert built.snapshots.directory == built.run_dir.snapshots
    assert recipe.Snapshots is type(built.snapshots)
    assert isinstance(built.checkpointer, callbacks.Checkpointer)


def test_public_api_names_resolve_without_loading_tensorflow_first():
    import subprocess
    import sys
    code = ("import sys, lbsgd; assert 'tensorflow' not in sys.modules; "
            "[getattr(lbsgd, n) for n in lbsgd.__all__]; print(len(lbsgd.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    import lbsgd
    assert int(out.stdout.split()[-1]) == len(lbsgd.__all__) >= 40
    assert lbsgd.Trainer is trainer.Trainer and lbsgd.distributed_callbacks is parallel.callbacks
