"""The scaling model (Codreanu et al. V-A, Tables V, XII): formulas, fit, held-out error."""

import os

import pytest

from conftest import ROOT
from lbsgd import scaling as scaling_command
from lbsgd.report import scaling as S


def test_ring_allreduce_cost():
    # 2(P-1) latency + 2(P-1)/P M/bandwidth: 4 workers, 1 ms latency, 100 MB at 1 GB/s
    assert S.ring_allreduce_seconds(4, 100e6, 1e-3, 1e9) == pytest.approx(6e-3 + 0.15)
    assert S.ring_allreduce_seconds(1, 100e6, 1e-3, 1e9) == 0.0


def test_model_from_machine_numbers():
    m = S.ScalingModel.from_machine(t0=0.01, t_sample=0.3, gradient_bytes=100e6, latency=1e-3,
                                    bandwidth=1e9, overlap=0.5, num_train=1000)
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
    model, check = S.machine_model(_bench_result(), latency=5e-4)
    assert check["t_sample"] == pytest.approx(0.3)
    # 2 ranks: comm = 2 latency + M / bandwidth  ->  bandwidth = M / (0.101 - 0.001)
    assert check["bandwidth"] == pytest.approx(S.RESNET50_GRADIENT_BYTES / 0.1)
    assert model.step_seconds(8, 2) == pytest.approx(2.4 + 0.101)
    assert check["predicted_images_per_second"] == pytest.approx(16 / 2.501)
    assert check["error"] == pytest.approx((16 / 2.501) / (16 / 2.6) - 1)
    with pytest.raises(ValueError, match="latency=0.1"):
        S.machine_model(_bench_result(), latency=0.1)
    with pytest.raises(ValueError, match="grouped-exchange row"):
        S.machine_model({"throughput": [], "exchanges": []})


def test_scaling_cli_with_a_machine(tmp_path, capsys):
    import json
    path = tmp_path / "quick.json"
    path.write_text(json.dumps(_bench_result()))
    assert scaling_command.main(["--machine", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Held-out rows" in out and "predicted 6.40 img/s, measured 6.15" in out


def test_latency_bandwidth_fit_recovers_a_ring_allreduce():
    from benchmarks.allreduce import fit_latency_bandwidth, message_sizes
    sizes = message_sizes(64 << 20)
    assert sizes[:3] == [4, 16, 64] and sizes[-1] == 64 << 20
    for ranks in (2, 4):
        seconds = [S.ring_allreduce_seconds(ranks, n, 3e-4, 1.2e8) for n in sizes]
        fit = fit_latency_bandwidth(sizes, seconds, ranks)
        assert fit["latency"] == pytest.approx(3e-4, rel=1e-6)
        assert fit["bandwidth"] == pytest.approx(1.2e8, rel=1e-6)
        assert fit["max_relative_residual"] < 1e-6
    with pytest.raises(ValueError, match="ranks=1"):
        fit_latency_bandwidth(sizes, seconds, 1)


def test_many_hosts_report_predicts_two_hosts_from_one():
    # one host: 0.5 s per step of 8 images; ResNet-50's gradient; a 1 Gbit/s-like link
    results = {"hosts": 2,
               "single_host": [{"model": "resnet50", "local_batch": 8, "seconds_per_step": 0.5,
                                "images_per_second": 16.0, "gradient_bytes": 1e8}],
               "links": [{"link": "1gbit", "allreduce": {"latency": 5e-4, "bandwidth": 1.25e8},
                          "throughput": [{"model": "resnet50", "images_per_second": 11.0}]}]}
    (row,) = S.many_hosts_report(results)
    step2 = 0.5 + 2 * 5e-4 + 1e8 / 1.25e8                 # 2(P-1) latency + 2(P-1)/P M/bandwidth
    assert row["predicted"] == pytest.approx(16 / step2)
    assert row["error"] == pytest.approx(16 / step2 / 11.0 - 1)
    step64 = 0.5 + 126 * 5e-4 + 2 * 63 / 64 * 1e8 / 1.25e8
    assert row["projection"]["64"]["images_per_second"] == pytest.approx(64 * 8 / step64)
    assert row["projection"]["16"]["efficiency"] == pytest.approx(
        0.5 / (0.5 + 30 * 5e-4 + 2 * 15 / 16 * 0.8))
    table = S.format_many_hosts([row])
    assert "| 1gbit | 500 us | 0.125 GB/s | resnet50 (8) | 16.00 | 11.00 |" in table
    assert "predicted_from_compute_only" not in row and "| - | - |" in table
    # the two hosts computing together without exchange: 0.6 s per step
    results["compute_only"] = [{"model": "resnet50", "seconds_per_step": 0.6}]
    results["links"][0]["throughput"][0]["images_per_second_runs"] = [10.0, 11.0, 12.5]
    (row,) = S.many_hosts_report(results)
    together = 16 / (0.6 + 2 * 5e-4 + 1e8 / 1.25e8)
    assert row["compute_only_images_per_second"] == pytest.approx(16 / 0.6)
    assert row["predicted_from_compute_only"] == pytest.approx(together)
    assert row["error_from_compute_only"] == pytest.approx(together / 11.0 - 1)
    assert row["predicted"] == pytest.approx(16 / step2)            # unchanged
    table = S.format_many_hosts([row])
    assert f"| {together:.2f} | {100 * (together / 11 - 1):+.1f}% |" in table
    assert "| resnet50 (8) | 16.00 | 11.00 (10.00-12.50) |" in table      # median (range)


def test_scaling_cli_with_many_hosts_results(tmp_path, capsys):
    result = os.path.join(ROOT, "benchmarks", "results", "many_hosts.json")   # the committed one
    assert scaling_command.main(["--many_hosts", result]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "bit |" in line]
    assert len(rows) == 4
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    for row in rows:                                   # the README shows this very table
        assert row in readme, row
    for name, text in (("notjson.json", "{"), ("other.json", '{"suite": "quick"}')):
        (tmp_path / name).write_text(text)
        with pytest.raises(SystemExit) as exit_:
            scaling_command.main(["--many_hosts", str(tmp_path / name)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"--many_hosts {tmp_path / name}: not a benchmarks.many_hosts result (" in err
