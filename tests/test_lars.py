"""LARS (lbsgd.optim.lars) and LAMB (keras.optimizers.Lamb) in lbsgd: update values, configs, ranks."""

import copy
import json

import keras
import numpy as np
import pytest

from conftest import horovodrun, run_python
from lbsgd import config
from lbsgd import parallel
from lbsgd.optim import lars
from lbsgd.recipe import schedules
from lbsgd.run import trainer
from lbsgd.run.callbacks import current_weight_decay

STEPS = 3


def tiny_model():
    """A Dense kernel (adapted), its bias and BN gamma/beta (rank 1: excluded by default)."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.BatchNormalization()])
    model.layers[0].bias.assign([0.1, -0.2, 0.3])         # not zero: a real ||w||
    return model


def gradients(model, steps=STEPS):
    rng = np.random.default_rng(0)
    return [[rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables]
            for _ in range(steps)]


def warmup_lr():
    """Warmup then poly: the LR changes every step (momentum correction matters)."""
    return schedules.GradualWarmup(schedules.PolynomialDecay(0.4, 6), warmup_steps=2,
                                   initial_learning_rate=0.1)


def run_steps(opt, model, grads, wd_per_step=None):
    opt.build(model.trainable_variables)
    for t, g in enumerate(grads):
        if wd_per_step is not None:
            opt.l2_weight_decay.assign(wd_per_step[t])
        opt.apply(g, model.trainable_variables)
    return [v.numpy() for v in model.trainable_variables]


def lars_reference(weights, grads, lrs, wds, momentum, eta, excluded, correction, eps=0.0):
    """You et al. / Model Garden LARS in NumPy (float64), with Goyal et al.'s correction."""
    w = [np.array(x, np.float64) for x in weights]
    v = [np.zeros_like(x) for x in w]
    prev = 0.0
    for step_grads, lr, wd in zip(grads, lrs, wds):
        if correction and prev > 0:
            v = [x * (lr / prev) for x in v]
        for i, g in enumerate(step_grads):
            g = np.asarray(g, np.float64)
            if excluded[i]:
                u = g
            else:
                wn, gn = np.linalg.norm(w[i]), np.linalg.norm(g)
                local = eta * wn / (gn + wd * wn + eps) if wn > 0 and gn > 0 else 1.0
                u = local * (g + wd * w[i])
            v[i] = momentum * v[i] + lr * u
            w[i] = w[i] - v[i]
        prev = lr
    return w


def lamb_reference(weights, grads, lrs, wd, decayed, b1=0.9, b2=0.999, eps=1e-7):
    """Keras' Lamb rule in NumPy, on lbsgd's L2 gradient g + wd * w (decayed variables)."""
    w = [np.array(x, np.float64) for x in weights]
    m = [np.zeros_like(x) for x in w]
    s = [np.zeros_like(x) for x in w]
    for t, (step_grads, lr) in enumerate(zip(grads, lrs), start=1):
        for i, g in enumerate(step_grads):
            g = np.asarray(g, np.float64) + (wd * w[i] if decayed[i] else 0.0)
            m[i] = b1 * m[i] + (1 - b1) * g
            s[i] = b2 * s[i] + (1 - b2) * g * g
            r = (m[i] / (1 - b1 ** t)) / (np.sqrt(s[i] / (1 - b2 ** t)) + eps)
            wn, rn = np.linalg.norm(w[i]), np.linalg.norm(r)
            ratio = wn / rn if wn > 0 and rn > 0 else 1.0     # on every variable
            w[i] = w[i] - ratio * lr * r
    return w


def assert_close(actual, expected):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


# -- LARS values -------------------------------------------------------------

@pytest.mark.parametrize("rule", ["rank1", "none"])
def test_lars_matches_numpy_reference_with_recipe_weight_decay(rule):
    model = tiny_model()
    start = [v.numpy() for v in model.trainable_variables]
    grads, sched = gradients(model), warmup_lr()
    opt = parallel.DistributedOptimizer(
        lars.LARS(sched, momentum=0.9, trust_coefficient=0.02, exclude_from_adaptation=rule),
        weight_decay=1e-2, momentum_correction=True)
    wds = [1e-2, 1e-2, 2e-2]                 # the recipe's collapse doubles it
    got = run_steps(opt, model, grads, wds)
    excluded = [rule == "rank1" and v.ndim == 1 for v in start]
    want = lars_reference(start, grads, [float(sched(t)) for t in range(STEPS)], wds, 0.9,
                          0.02, excluded, correction=True)
    assert_close(got, want)
    assert current_weight_decay(opt) == pytest.approx(2e-2)
    if rule == "rank1":      # BN gamma/beta and the bias moved by plain momentum SGD
        plain = lars_reference(start, grads, [float(sched(t)) for t in range(STEPS)],
                               [0.0] * STEPS, 0.9, 0.02, [True] * 4, correction=True)
        assert_close(got[1:], plain[1:])
        assert not np.allclose(got[0], plain[0])


def test_lars_without_wrapper_or_correction_matches_reference():
    model = tiny_model()
    start = [v.numpy() for v in model.trainable_variables]
    grads = gradients(model)
    opt = lars.LARS(0.3, momentum=0.8, trust_coefficient=0.001, l2_weight_decay=5e-4,
                    epsilon=1e-9)
    got = run_steps(opt, model, grads)
    want = lars_reference(start, grads, [0.3] * STEPS, [5e-4] * STEPS, 0.8, 0.001,
                          [v.ndim == 1 for v in start], correction=False, eps=1e-9)
    assert_close(got, want)


def test_lars_momentum_correction_changes_the_update():
    model = tiny_model()
    start = [v.numpy() for v in model.trainable_variables]
    grads, sched = gradients(model), warmup_lr()
    opt = parallel.DistributedOptimizer(lars.LARS(sched, momentum=0.9), weight_decay=1e-4,
                                           momentum_correction=False)
    got = run_steps(opt, model, grads)
    lrs = [float(sched(t)) for t in range(STEPS)]
    excluded = [v.ndim == 1 for v in start]
    assert_close(got, lars_reference(start, grads, lrs, [1e-4] * 3, 0.9, 0.001, excluded, False))
    corrected = lars_reference(start, grads, lrs, [1e-4] * 3, 0.9, 0.001, excluded, True)
    assert not np.allclose(got[0], corrected[0], rtol=1e-4)


def test_lars_trust_ratio_is_one_for_a_zero_weight():
    keras.utils.set_random_seed(0)
    w = keras.Variable(np.zeros((2, 2), "float32"))
    opt = lars.LARS(0.5, momentum=0.0, trust_coefficient=0.001, l2_weight_decay=0.1)
    opt.build([w])
    opt.apply([np.ones((2, 2), "float32")], [w])
    np.testing.assert_allclose(w.numpy(), -0.5)          # local_lr = 1, wd * 0 = 0


# -- LAMB values --------------------------------------------------------------

@pytest.mark.parametrize("rule", ["rank1", "none"])
def test_lamb_matches_numpy_reference_and_plain_keras_lamb(rule):
    model = tiny_model()
    start = [v.numpy() for v in model.trainable_variables]
    grads, sched, wd = gradients(model), warmup_lr(), 1e-2
    cfg = config.OptimizerConfig(name="lamb", excluded_variables=rule)
    opt = trainer.build_distributed_optimizer(cfg, sched, wd)
    assert isinstance(opt, keras.optimizers.Lamb) and opt.weight_decay is None
    got = run_steps(opt, model, grads)
    decayed = [rule == "none" or v.ndim > 1 for v in start]
    lrs = [float(sched(t)) for t in range(STEPS)]
    assert_close(got, lamb_reference(start, grads, lrs, wd, decayed))
    # the same as Keras' own Lamb fed lbsgd's L2 gradient by hand
    ref_model = tiny_model()
    plain = keras.optimizers.Lamb(warmup_lr())
    plain.build(ref_model.trainable_variables)
    for g in grads:
        l2 = [gi + wd * v.numpy() if d else gi
              for gi, v, d in zip(g, ref_model.trainable_variables, decayed)]
        plain.apply(l2, ref_model.trainable_variables)
    for a, b in zip(got, ref_model.trainable_variables):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-7)


# -- configs, serialisation ---------------------------------------------------

def test_lars_get_config_round_trips():
    opt = lars.LARS(warmup_lr(), momentum=0.85, trust_coefficient=0.002, l2_weight_decay=1e-4,
                    epsilon=1e-8, exclude_from_adaptation="none")
    saved = keras.optimizers.serialize(opt)        # the schedule serialised too
    again = keras.optimizers.deserialize(copy.deepcopy(saved))  # from_config edits its input
    assert keras.optimizers.serialize(again) == saved
    cfg = saved["config"]
    assert (cfg["trust_coefficient"], cfg["exclude_from_adaptation"]) == (0.002, "none")
    assert cfg["learning_rate"]["class_name"] == "GradualWarmup"
    wrapped = parallel.DistributedOptimizer(opt, momentum_correction=True)
    wcfg = wrapped.get_config()
    assert wcfg["weight_decay"] == pytest.approx(1e-4)
    assert wcfg["optimizer"]["config"]["l2_weight_decay"] == 0.0     # travels once
    again = type(wrapped).from_config(wcfg)
    assert type(again).__name__ == "DistributedLARS"
    assert keras.optimizers.serialize(again) == keras.optimizers.serialize(wrapped)


@pytest.mark.parametrize("name", ["lars", "lamb"])
def test_model_save_and_load_continue_identically(tmp_path, name):
    model = tiny_model()
    grads = gradients(model, 3)
    cfg = config.OptimizerConfig(name=name, trust_coefficient=0.01)
    opt = trainer.build_distributed_optimizer(cfg, warmup_lr(), 1e-3)
    model.compile(opt, "mse", jit_compile=False)
    run_steps(opt, model, grads[:2])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is type(opt)
    assert current_weight_decay(loaded.optimizer) == pytest.approx(1e-3)
    assert int(loaded.optimizer.iterations.numpy()) == 2
    opt.apply(grads[2], model.trainable_variables)
    loaded.optimizer.apply(grads[2], loaded.trainable_variables)
    for a, b in zip(model.trainable_variables, loaded.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_build_distributed_optimizer_lars_settings():
    cfg = config.OptimizerConfig(name="lars", momentum=0.8, trust_coefficient=0.005,
                                 excluded_variables="none")
    opt = trainer.build_distributed_optimizer(cfg, 0.1, 4e-5)
    assert isinstance(opt, lars.LARS)
    assert (opt.momentum, opt.trust_coefficient, opt.exclude_from_adaptation) == (
        0.8, 0.005, "none")
    assert current_weight_decay(opt) == pytest.approx(4e-5)
    assert opt._lbsgd_momentum_correction


@pytest.mark.parametrize("kwargs, field", [
    ({"trust_coefficient": 0.0}, "optimizer.trust_coefficient"),
    ({"trust_coefficient": float("inf")}, "optimizer.trust_coefficient"),
    ({"excluded_variables": "bias"}, "optimizer.excluded_variables"),
    ({"name": "larc"}, "optimizer.name"),
])
def test_config_refusals_name_the_field(kwargs, field):
    with pytest.raises(config.ConfigError) as err:
        config.OptimizerConfig(**kwargs)
    assert f"`{field}`" in str(err.value) and "\n" not in str(err.value)


def test_lars_and_lamb_are_config_choices():
    cfg = config.apply_overrides(config.TrainConfig(), {"optimizer.name": "lars",
                                                        "optimizer.trust_coefficient": "0.002"})
    assert (cfg.optimizer.name, cfg.optimizer.trust_coefficient) == ("lars", 0.002)
    assert config.OptimizerConfig(name="lamb").name == "lamb"


@pytest.mark.parametrize("make, kwargs, argument", [
    (lambda: lars.LARS(0.1, l2_weight_decay=1e-4), {"weight_decay": 1e-4}, "weight_decay"),
    (lambda: lars.LARS(0.1), {"decay_filter": lambda v: True}, "decay_filter"),
    (lambda: keras.optimizers.Lamb(0.1, weight_decay=0.01), {"weight_decay": 1e-4},
     "weight_decay"),
])
def test_a_second_weight_decay_is_refused(make, kwargs, argument):
    with pytest.raises(ValueError) as err:
        parallel.DistributedOptimizer(make(), **kwargs)
    assert f"Argument `{argument}`" in str(err.value) and "\n" not in str(err.value)


def test_lars_refuses_keras_decoupled_weight_decay_and_bad_arguments():
    with pytest.raises(ValueError, match="Argument `weight_decay` would add a second"):
        lars.LARS(0.1, weight_decay=0.01)
    with pytest.raises(ValueError, match="Argument `trust_coefficient` must be > 0"):
        lars.LARS(0.1, trust_coefficient=0.0)
    with pytest.raises(ValueError, match="Argument `exclude_from_adaptation`"):
        lars.LARS(0.1, exclude_from_adaptation="bias")


# -- 1 rank vs 2 ranks --------------------------------------------------------

def test_one_and_two_ranks_end_with_equal_weights(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    proc = run_python("tests/distributed/lars_checks.py", str(one), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    horovodrun(2, "tests/distributed/lars_checks.py", str(two), timeout=600)
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert (a["size"], b["size"]) == (1, 2)
    for name in ("lars", "lamb"):
        start = [w.numpy() for w in _checks_model().trainable_variables]
        moved = max(np.max(np.abs(np.array(x) - s)) for x, s in zip(a[name], start))
        assert moved > 1e-3, name                             # it really trained
        for x, y in zip(a[name], b[name]):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)


def _checks_model():
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "distributed", "lars_checks.py")
    spec = importlib.util.spec_from_file_location("lars_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tiny_model()
