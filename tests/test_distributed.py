"""Data-parallel layer under a real `horovodrun -np 2`, with MPI and with Gloo as the
controller: weights, gradients, metrics."""

import json

import pytest

from conftest import horovodrun

pytestmark = pytest.mark.smoke       # part of the other TensorFlow's CI subset (.ci/run)


@pytest.fixture(scope="module", params=["mpi", "gloo"])
def checks(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "checks.json"
    horovodrun(2, "tests/distributed/checks.py", str(out),
               extra=["--gloo"] if request.param == "gloo" else [])
    return {**json.loads(out.read_text()), "asked_controller": request.param}


def test_two_ranks_ran(checks):
    assert checks["size"] == 2
    assert checks["controller"] == checks["asked_controller"]


def test_different_initialisations_end_identical(checks):
    assert checks["initial_max_abs_diff"] > 0.1      # ranks really started apart
    assert checks["trained_change"] > 0.01          # and really trained
    assert checks["final_max_abs_diff"] == 0.0      # every weight, BN stats included


EXCHANGES = ["grouped", "per_tensor", "reducescatter", "overlap", "overlap_reducescatter"]


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_averaged_gradient_equals_concatenated_batch(checks, exchange):
    assert checks[f"grad_max_abs_{exchange}"] > 1e-3
    assert checks[f"grad_max_abs_err_{exchange}"] < 1e-6


@pytest.mark.parametrize("exchange, collectives, overlapped", [
    ("grouped", 1, False), ("reducescatter", 2, False), ("per_tensor", 5, True),
    ("overlap", 5, True), ("overlap_reducescatter", 10, True)])
def test_overlapped_exchanges_do_not_wait_for_the_whole_backprop(checks, exchange, collectives,
                                                                 overlapped):
    """The small model's 5 gradients, each its own bucket: in the compiled step the
    overlapped exchanges' last-layer collectives do not wait for the first layer's kernel
    gradient (the last one backprop makes); grouped and reducescatter's all do."""
    assert checks[f"collectives_{exchange}"] == collectives
    assert checks[f"every_collective_waits_for_first_layer_{exchange}"] is (not overlapped)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_fp16_compressed_average_is_rounded_not_wrong(checks, exchange):
    assert checks[f"fp16_dtypes_{exchange}"] == ["float32"]      # cast back after the exchange
    assert checks[f"fp16_max_abs_err_{exchange}"] > 0.0         # really sent as float16
    assert checks[f"fp16_max_excess_{exchange}"] <= 0.0   # |err| <= 2e-3 mean|g_rank| + 1e-7


def test_logged_metrics_are_global(checks):
    # rank 0: 12 train / 10 val samples all right; rank 1: 3 of 12 train right, 0 of 5 val.
    assert checks["local_val_accuracy"] == [1.0, 0.0]
    assert checks["local_train_accuracy"] == [1.0, 0.25]
    assert checks["logged_val_accuracy"] == pytest.approx(10 / 15, abs=1e-6)
    assert checks["logged_accuracy"] == pytest.approx(15 / 24, abs=1e-6)
    # losses are sample-weighted means over both shards
    lv, lt = checks["local_val_loss"], checks["local_train_loss"]
    assert checks["logged_val_loss"] == pytest.approx((10 * lv[0] + 5 * lv[1]) / 15, rel=1e-5)
    assert checks["logged_loss"] == pytest.approx((12 * lt[0] + 12 * lt[1]) / 24, rel=1e-5)
