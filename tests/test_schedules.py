"""Schedule value tables (Codreanu et al. IV-D, Table I) and config round trips."""

import keras
import pytest

from lbsgd import schedules as S
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
