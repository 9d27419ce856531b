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


def _bench_result(comm=0.101):
    m = "resnet50"
    return {"throughput": [
        {"model": m, "local_batch": 8, "setup": "1 rank x 1 core", "seconds_per_step": 2.4,
         "images_per_second": 8 / 2.4},
        {"model": m, "local_batch": 8, "setup": "2 ranks x 1 core, lbsgd launcher",
         "seconds_per_step": 2.6, "images_per_second": 16 / 2.6}],
        "exchanges": [{"model": m, "local_batch": 8, "ranks": 2, "exchange": "grouped",
                       "compression": "none", "comm_seconds_per_step": comm}]}


def test_machine_model_from_a_benchmark_result():
    model, check = S.machine_model(_bench_result(), alpha=5e-4)
    assert check["t_sample"] == pytest.approx(0.3)
    # 2 ranks: comm = 2 alpha + M / beta  ->  beta = M / (0.101 - 0.001)
    assert check["beta"] == pytest.approx(S.RESNET50_GRADIENT_BYTES / 0.1)
    assert model.step_seconds(8, 2) == pytest.approx(2.4 + 0.101)
    assert check["predicted_images_per_second"] == pytest.approx(16 / 2.501)
    assert check["error"] == pytest.approx((16 / 2.501) / (16 / 2.6) - 1)
    with pytest.raises(ValueError, match="alpha=0.1"):
        S.machine_model(_bench_result(), alpha=0.1)
    with pytest.raises(ValueError, match="grouped-exchange row"):
        S.machine_model({"throughput": [], "exchanges": []})


def test_scaling_cli_with_a_machine(tmp_path, capsys):
    import json
    path = tmp_path / "quick.json"
    path.write_text(json.dumps(_bench_result()))
    assert S.main(["--machine", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Held-out rows" in out and "predicted 6.40 img/s, measured 6.15" in out
