"""Schedule value tables (Codreanu et al. IV-D, Table I) and config round trips."""

import keras
import pytest

from lbsgd.recipe import schedules as S
from lbsgd.config import OptimizerConfig, ScheduleConfig


def lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


@pytest.mark.parametrize("base, batch, ref, cap, expected", [
    (0.1, 256, 256, 0.0, 0.1),
    (0.1, 8192, 256, 0.0, 3.2),     # Table II: batch 8192
    (0.1, 32768, 256, 6.4, 6.4),    # >= 16K held at 6.4 (Section V-C)
    (0.1, 16384, 256, 6.4, 6.4),
    (0.1, 4096, 256, 6.4, 1.6),
])
def test_linear_scaling_rule(base, batch, ref, cap, expected):
    assert S.linear_scaling(base, batch, ref, cap) == pytest.approx(expected)


def test_linear_scaling_names_bad_argument():
    with pytest.raises(ValueError, match=r"global_batch=0"):
        S.linear_scaling(0.1, 0)


def test_warmup_then_linear_decay_to_zero():
    # 90 epochs at batch 8192 (1.28M images: 156 steps/epoch), 5 warmup epochs.
    steps_per_epoch, epochs = 156, 90
    sched = S.build_schedule(OptimizerConfig(base_lr=0.1), ScheduleConfig(warmup_epochs=5),
                             8192, steps_per_epoch, epochs)
    peak, warm, total = 3.2, 5 * 156, 90 * 156
    table = [(0, 0.0), (warm // 2, peak / 2), (warm, peak),
             (warm + (total - warm) // 2, peak / 2), (total, 0.0)]
    for step, expected in table:
        assert lr(sched, step) == pytest.approx(expected, rel=1e-4, abs=1e-5), step


def test_three_step_decay_table_i():
    spe = 100
    sched = S.build_schedule(OptimizerConfig(base_lr=0.1), ScheduleConfig(
        warmup_epochs=5, decay="steps", step_epochs=(30, 60, 80)), 7680, spe, 90)
    peak = 3.0
    for epoch, expected in [(10, peak), (29.99, peak), (30, 0.3), (59, 0.3), (60, 0.03),
                            (80, 0.003), (89, 0.003)]:
        assert lr(sched, int(epoch * spe)) == pytest.approx(expected, rel=1e-5), epoch


@pytest.mark.parametrize("schedule", [
    S.PolynomialDecay(1.0, 100, power=2.0, begin_step=10),
    S.StepDecay(1.0, [10, 20], factor=0.5),
    S.ConstantLR(0.3),
    S.GradualWarmup(S.PolynomialDecay(2.0, 50, begin_step=5), 5, initial_learning_rate=0.1),
])
def test_get_config_round_trip(schedule):
    cfg = schedule.get_config()
    again = type(schedule).from_config(cfg)
    assert again.get_config() == cfg
    for step in (0, 3, 7, 15, 40, 200):
        assert lr(again, step) == pytest.approx(lr(schedule, step))
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule))
    assert restored.get_config() == cfg


# --- Codreanu et al. Section VI / Figure 4: the collapsed-ensemble schedule -----------

SPE = 10  # steps per epoch; the schedule is defined in epochs


def ens_lr(sched, epoch):
    return lr(sched, int(round(epoch * SPE)))


def test_collapsed_ensemble_paper_numbers():
    peak = 1.6  # batch 4096 by the linear scaling rule
    sched = S.CollapsedEnsemble(peak, SPE)
    # the cycle ends come from the one timing the schedule and the epoch plan share
    from lbsgd.config import EnsembleConfig
    assert EnsembleConfig().timing(120).collapse_ends() == [45, 60, 75, 90, 105, 120]
    assert ens_lr(sched, 0) == pytest.approx(peak)
    assert ens_lr(sched, 30) == pytest.approx(peak * (1 - 30 / 90), rel=1e-5)
    assert ens_lr(sched, 45) == pytest.approx(0.22 * peak, rel=1e-5)   # "around 22%"
    for start in (45, 60, 75, 90, 105):
        c = ens_lr(sched, start)
        top = ens_lr(sched, start + 3)
        assert top == pytest.approx(3 * c, rel=1e-5)                    # x3 over 3 epochs
        end = ens_lr(sched, start + 15)
        assert end == pytest.approx(top / 4, rel=1e-5)                  # divided by 4
    # power-2 decay: half-way through a cycle's decay, (1/2)^2 of the way from top to end
    top = ens_lr(sched, 48)
    assert ens_lr(sched, 54) == pytest.approx(top / 4 + (top - top / 4) * 0.25, rel=1e-5)
    # LR at each cycle end is 3/4 of the previous one; held after epoch 120
    ends = [ens_lr(sched, e) for e in (60, 75, 90, 105, 120)]
    for a, b in zip(ends, ends[1:]):
        assert b == pytest.approx(0.75 * a, rel=1e-5)
    assert ens_lr(sched, 130) == pytest.approx(ends[-1], rel=1e-5)


def test_collapsed_ensemble_rejects_bad_argument():
    with pytest.raises(ValueError, match=r"power2_end_fraction=0\.9"):
        S.CollapsedEnsemble(1.0, 10, power2_end_fraction=0.9)


def test_final_collapse_starts_where_main_left_off():
    main = S.PolynomialDecay(2.0, 1000)           # linear 2.0 -> 0 over 1000 steps
    sched = S.FinalCollapse(main, begin_step=940, total_steps=1000)   # last 6%
    left_off = 2.0 * (1 - 940 / 1000)
    assert lr(sched, 500) == pytest.approx(1.0)
    assert lr(sched, 940) == pytest.approx(left_off, rel=1e-5)
    assert lr(sched, 970) == pytest.approx(left_off * 0.25, rel=1e-5)  # power 2, half-way
    assert lr(sched, 1000) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("schedule", [
    S.FinalCollapse(S.PolynomialDecay(2.0, 100), 90, 100),
    S.CollapsedEnsemble(1.6, 10, num_cycles=3),
])
def test_collapse_schedules_round_trip(schedule):
    cfg = schedule.get_config()
    again = type(schedule).from_config(cfg)
    assert again.get_config() == cfg
    for step in (0, 50, 95, 300, 450, 700, 1000):
        assert lr(again, step) == pytest.approx(lr(schedule, step))
