"""Lee et al.'s adaptive batch size and LR (III-D, III-E, Algorithm 1) in one process:
theta, K detection, batch/LR sequences, LR control, convergence stop, probe, Phantom."""

import math
import os

import keras
import numpy as np
import tensorflow as tf
import pytest

from lbsgd.adaptive import growth as A
from lbsgd import data
from lbsgd.run import callbacks
from lbsgd.model import networks as models
from lbsgd.data import phantom
from lbsgd.adaptive import probe
from lbsgd.config import ConfigError, DataConfig, TrainConfig


# --- theta (Eq. 4) -------------------------------------------------------------------------

def test_theta_formula():
    w0 = [np.array([[1.0, 2.0]]), np.array([0.0])]
    w1 = [np.array([[4.0, 2.0]]), np.array([4.0])]       # moved by (3, 0, 4): distance 5
    assert A.theta(2.5, 1.0, w0, w1) == pytest.approx(1.5 / 5)
    assert math.isnan(A.theta(2.5, 1.0, w0, w0))


def test_theta_monitor_on_a_model_with_known_weights_and_losses():
    # y = x . k with MSE: F(k) = mean over examples of (x.k - y)^2, by hand.
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
    y = np.array([[1.0], [2.0], [3.0]], np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    monitor = A.ThetaMonitor(ds, "mean_squared_error")
    monitor.set_model(model)
    monitor.on_train_begin()
    assert monitor.cost_initial == pytest.approx((1 + 4 + 9) / 3)
    k = np.array([[0.5], [1.5]], np.float32)
    model.layers[0].kernel.assign(k)
    logs = {}
    monitor.on_epoch_end(0, logs)
    cost = float(np.mean((x @ k - y) ** 2))
    assert logs["train_cost"] == pytest.approx(cost, rel=1e-6)
    assert logs["theta"] == pytest.approx((14 / 3 - cost) / np.linalg.norm(k), rel=1e-6)
    assert monitor.history == [logs["theta"]]


# --- Algorithm 1 ----------------------------------------------------------------------------

THETAS = [0.50, 0.80, 1.00, 1.05, 1.20, 1.30, 1.35, 1.40, 1.41, 1.42, 1.43, 1.44]


def run_growth(growth, thetas):
    batches, factors = [], []
    for t in thetas:
        growth.end_epoch(t)
        batches.append(growth.batch)
        factors.append(growth.lr_factor)
    return batches, factors


def test_k_is_the_first_epoch_whose_theta_changes_under_10_percent():
    growth = A.BatchGrowth(32, 256)
    batches, factors = run_growth(growth, THETAS)
    # changes: 60%, 25%, 5% (epoch 4) -> K = 4; growths after epochs 4, 8, 12
    assert growth.k == 4
    assert batches == [32] * 3 + [64] * 4 + [128] * 4 + [256]
    assert factors == [1] * 3 + [2] * 4 + [4] * 4 + [8]


def test_growth_stops_at_max_batch_and_root_scaling():
    growth = A.BatchGrowth(32, 96, lr_scaling="root", k_epochs=2)
    batches, factors = run_growth(growth, [1.0] * 8)
    assert growth.k == 2
    assert batches == [32, 64, 64, 96, 96, 96, 96, 96]        # 128 capped at B_m = 96
    assert factors == pytest.approx([1, 2 ** 0.5, 2 ** 0.5] + [2 ** 0.5 * 1.5 ** 0.5] * 5)


def test_threshold_and_fixed_lr_option():
    growth = A.BatchGrowth(16, 64, threshold=0.3, lr_scaling="none")
    batches, factors = run_growth(growth, [1.0, 1.5, 1.8, 1.9])   # 50%, 20% -> K = 3
    assert growth.k == 3 and batches == [16, 16, 32, 32] and set(factors) == {1.0}


def test_growth_state_round_trip_continues_identically():
    a = A.BatchGrowth(32, 256)
    run_growth(a, THETAS[:6])
    b = A.BatchGrowth(32, 256)
    b.set_state(a.get_state())
    assert run_growth(a, THETAS[6:]) == run_growth(b, THETAS[6:])


@pytest.mark.parametrize("kwargs, name", [
    (dict(start_batch=30, max_batch=64, multiple_of=4), "start_batch"),
    (dict(start_batch=32, max_batch=16), "max_batch"),
    (dict(start_batch=32, max_batch=64, lr_scaling="cube"), "lr_scaling"),
])
def test_growth_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}="):
        A.BatchGrowth(**kwargs)


# --- Section III-E: LR control ---------------------------------------------------------------

def lr_run(control, costs, growth=None, mu0=0.1):
    """Drives AdaptiveBatchSize on a real compiled model; returns the LR of each epoch."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(mu0), loss="mse")
    cb = A.AdaptiveBatchSize(growth or A.BatchGrowth(8, 8), control, mu0, lambda b: 100 // b)
    cb.set_model(model)
    lrs, batches = [], []
    for e, cost in enumerate(costs):
        cb.on_epoch_begin(e)
        lrs.append(float(model.optimizer.learning_rate.numpy()))
        logs = {"loss": cost, "theta": 1.0}
        cb.on_epoch_end(e, logs)
        assert logs["learning_rate"] == pytest.approx(lrs[-1])
        batches.append(logs["batch_size"])
        assert logs["steps"] == 100 // logs["batch_size"]
    return lrs, batches, cb


def test_first_decay_goes_to_mu0_beta_later_ones_multiply_by_beta():
    # batch 8 -> 16 -> 32 (K = 1, linear): LR 0.1 -> 0.2 -> 0.4; cost saturates after
    # epoch 5 (patience 2): first decay to mu0 * beta = 0.01 (effective 0.4 -> 0.01 =
    # B_s/B_m * beta), later ones x beta.
    costs = [1.0, 0.8, 0.6, 0.599, 0.598, 0.597, 0.5, 0.499, 0.498, 0.497]
    control = A.LRControl("saturation", beta=0.1, patience=2, threshold=0.01)
    lrs, batches, cb = lr_run(control, costs, A.BatchGrowth(8, 32, k_epochs=1))
    assert batches == [8, 16, 32, 32, 32, 32, 32, 32, 32, 32]
    assert lrs == pytest.approx([0.1, 0.2, 0.4, 0.4, 0.4, 0.01, 0.01, 0.01, 0.01, 0.001])
    assert [e["event"] for e in cb.events] == ["grow", "grow", "decay", "decay"]
    assert [e["epoch"] for e in cb.events] == [1, 2, 5, 9]


def test_fixed_decay_epochs_like_the_cifar_run():
    control = A.LRControl("fixed", beta=0.1, decay_epochs=(3, 5))
    lrs, _, _ = lr_run(control, [1.0] * 6, A.BatchGrowth(8, 16, k_epochs=2))
    assert lrs == pytest.approx([0.1, 0.1, 0.2, 0.01, 0.01, 0.001])


def test_lr_control_state_round_trip():
    a = A.LRControl("saturation", patience=2)
    for c in (1.0, 0.9, 0.9):
        a.end_epoch(1, c)
    b = A.LRControl("saturation", patience=2)
    b.set_state(a.get_state())
    assert a.end_epoch(4, 0.9) == b.end_epoch(4, 0.9) is True


# --- convergence stop -------------------------------------------------------------------------

def test_convergence_stop_after_patience_without_min_delta_gain():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    stop = callbacks.ConvergenceStop("val_psnr", min_delta=0.1, patience=3)
    stop.set_model(model)
    for e, v in enumerate([20.0, 25.0, 25.05, 25.09, 25.2, 25.25, 25.29, 25.28, 30.0]):
        model.stop_training = False
        stop.on_epoch_end(e, {"val_psnr": v})
        if model.stop_training:
            break
    assert (stop.best, stop.best_epoch, stop.stopped_epoch) == (25.2, 5, 8)


# --- the maximum-stable-batch probe ----------------------------------------------------------

def test_choose_start_batch_table():
    norms = {8: [1.0, 1.0], 16: [0.97, 0.95], 32: [0.92, 0.90], 64: [0.7, 0.72],
             128: [0.95, 0.95]}
    assert probe.choose_start_batch(norms, ratio=0.9) == 32    # stops at the first drop
    assert probe.choose_start_batch(norms, ratio=0.95) == 16
    assert "<- B_s" in probe.format_table(norms, 32)


def test_probe_norm_of_one_full_batch_equals_the_full_gradient():
    src = data.load_source(DataConfig(name="digits", image_size=8), 0)
    keras.utils.set_random_seed(0)
    model = models.build_model(TrainConfig().model.__class__(name="resnet8"), src.input_shape,
                               src.num_classes)
    norms = probe.gradient_norms(model, "sparse_categorical_crossentropy", src, [8, 64],
                                 draws=4)
    assert set(norms) == {8, 64} and all(len(v) == 4 for v in norms.values())
    assert all(n > 0 for v in norms.values() for n in v)
    assert np.std(norms[64]) < np.std(norms[8])   # larger batches: less gradient noise


# --- the Phantom task ---------------------------------------------------------------------------

def test_phantom_images_and_pairs():
    a, b = phantom.phantoms(3, 24, seed=1), phantom.phantoms(3, 24, seed=1)
    np.testing.assert_array_equal(a, b)                     # deterministic
    assert a.shape == (3, 24, 24, 1) and a.min() >= 0 and a.max() <= 1
    assert not np.array_equal(a[0], a[1])                   # randomised ellipses
    assert 0.05 < a.mean() < 0.5                            # a head, not an empty frame
    x, y = phantom.restoration_pairs(2, 24, noise_std=0.1, seed=1)
    np.testing.assert_allclose(np.std(x - y), 0.1, rtol=0.1)


def test_psnr_metric_values():
    m = models.PSNR()
    y = np.zeros((2, 4, 4, 1), np.float32)
    p = np.concatenate([np.full((1, 4, 4, 1), 0.1), np.full((1, 4, 4, 1), 0.01)]).astype(
        np.float32)
    m.update_state(y, p)
    assert float(m.result()) == pytest.approx((20.0 + 40.0) / 2, rel=1e-5)


def test_restoration_config_rules():
    with pytest.raises(ConfigError, match=r"model.name='resnet20'"):
        TrainConfig(data=DataConfig(name="phantom"))
    with pytest.raises(ConfigError, match=r"data.augment='crop'"):
        DataConfig(name="phantom", augment="crop")


def test_cost_jump_after_a_growth_is_not_saturation():
    # K = 3: growth after epoch 3 doubles the LR and the cost jumps for two epochs;
    # saturation (patience 2) is only judged from the new setting on.
    costs = [1.0, 0.9, 0.8, 0.95, 0.93, 0.85, 0.84, 0.84, 0.84]
    control = A.LRControl("saturation", beta=0.1, patience=2, threshold=0.01)
    lrs, batches, cb = lr_run(control, costs, A.BatchGrowth(8, 16, k_epochs=3))
    assert batches == [8, 8, 8] + [16] * 6
    assert [e["event"] for e in cb.events] == ["grow", "decay"]
    assert cb.events[1]["epoch"] == 9      # best 0.84 at epoch 7, flat at 8 and 9


@pytest.mark.parametrize("batch, local, max_ranks, current, ranks", [
    (32, 16, 2, 1, 2),      # the local batch of the start held: 32 / 16
    (64, 16, 2, 2, 2),      # capped at max_ranks
    (512, 32, 16, 8, 16),
    (96, 16, 5, 2, 4),      # 96 / 16 = 6 > 5: the largest divisor of 96 <= 5
    (48, 16, 8, 4, 4),      # 3 is below the 4 ranks the job has: never fewer
    (16, 16, 4, 1, 1),
])
def test_ranks_grow_with_the_batch_holding_the_local_batch(batch, local, max_ranks, current,
                                                          ranks):
    from lbsgd.adaptive.ranks import ranks_for_batch
    assert ranks_for_batch(batch, local, max_ranks, current) == ranks
    assert batch % ranks == 0


def test_rank_growth_requests_only_under_the_launcher(tmp_path, capsys):
    import json

    from lbsgd.adaptive import ranks

    alone = ranks.RankGrowth(max_ranks=2, local_batch=16, world_size=1, env={})
    assert not alone.due(32, is_chief=True) and not alone.due(64, is_chief=True)
    out = capsys.readouterr().out
    assert out.count("only launch/run.sh restarts a job on more ranks; continuing on 1") == 1
    request = tmp_path / "request.json"
    launched = ranks.RankGrowth(2, 16, 1, env={ranks.RELAUNCH_FILE_ENV: str(request)})
    assert not launched.due(16, is_chief=True) and launched.due(32, is_chief=True)
    with pytest.raises(ranks.Relaunch, match="the batch grew to 32 after epoch 2: restart on 2"):
        launched.request(32, 2, True, ["--run_dir=/r", "--resume"])
    asked = json.loads(request.read_text())
    assert (asked["np"], asked["batch"], asked["epoch"], asked["from_ranks"]) == (2, 32, 2, 1)
    assert asked["args"] == ["--run_dir=/r", "--resume"]
    restarted = ranks.RankGrowth(2, 16, 2, env={ranks.RELAUNCHED_ENV: repr(asked["exited_at"])})
    seconds = restarted.resumed(2, 1, now=asked["exited_at"] + 7.5)
    assert seconds == 7.5 and restarted.restart_seconds == 7.5
    assert restarted.get_state()["restarts"] == [{"epoch": 2, "from_ranks": 1, "to_ranks": 2,
                                                  "seconds": 7.5}]
    assert ranks.RankGrowth(2, 16, 2, env={}).resumed(2, 1) == 0.0   # a resume by hand
    assert ranks.resume_args("runs/x", ["--config", "c.py", "--tensorboard=false"]) == [
        f"--run_dir={os.path.abspath('runs/x')}", "--resume", "--tensorboard=false"]
