"""The scaling model (Codreanu et al. V-A, Tables V, XII): formulas, fit, held-out error."""

import pytest

from lbsgd import scaling as S


def test_ring_allreduce_cost():
    # 2(P-1) alpha + 2(P-1)/P M/beta: 4 workers, 1 ms latency, 100 MB at 1 GB/s
    assert S.ring_allreduce_seconds(4, 100e6, 1e-3, 1e9) == pytest.approx(6e-3 + 0.15)
    assert S.ring_allreduce_seconds(1, 100e6, 1e-3, 1e9) == 0.0


def test_model_from_machine_numbers():
    m = S.ScalingModel.from_machine(t0=0.01, t_sample=0.3, gradient_bytes=100e6, alpha=1e-3,
                                    beta=1e9, overlap=0.5, num_train=1000)
    step = 0.01 + 8 * 0.3 + 0.5 * S.ring_allreduce_seconds(2, 100e6, 1e-3, 1e9)
    assert m.step_seconds(8, 2) == pytest.approx(step)
    assert m.epoch_seconds(8, 2) == pytest.approx(1000 / 16 * step)
    assert m.efficiency(8, 2) == pytest.approx((0.01 + 2.4) / step)
    assert m.time_to_accuracy(8, 2, 3) == pytest.approx(3 * m.epoch_seconds(8, 2))
    with pytest.raises(ValueError, match="overlap=1.5"):
        S.ScalingModel.from_machine(0, 1, 1, 1, 1, overlap=1.5)


def test_fit_recovers_a_known_model():
    truth = S.ScalingModel(t0=0.02, t_sample=0.012, comm_latency=5e-5, comm_volume=0.08)
    rows = [(b, p, truth.epoch_seconds(b, p)) for b in (16, 32) for p in (64, 256, 1024)]
    fitted = S.fit_table(rows)
    for b, p, t in rows:
        assert fitted.epoch_seconds(b, p) == pytest.approx(t, rel=1e-6)


def test_table_v_held_out_rows_within_15_percent():
    model, report = S.holdout_report()
    held = [r for r in report if r["held_out"]]
    assert len(held) == 5 and {(r["local_batch"], r["workers"]) for r in held} == {
        (16, 512), (20, 512), (24, 512), (32, 512), (16, 768)}
    assert max(abs(r["error"]) for r in held) < 0.15
    assert min(model.t_sample, model.comm_latency, model.comm_volume, model.t0) >= 0
    assert "held out" in S.format_report(report)


def test_fit_needs_enough_rows():
    with pytest.raises(ValueError, match="rows"):
        S.fit_table(S.TABLE_V[:2])
