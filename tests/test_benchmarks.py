"""Benchmarks: the timeline parser on a known trace, and a smoke run of the suite (a few
steps; speed itself is measured by `python -m benchmarks.run`, never asserted here)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, launch_env
from benchmarks import run as bench


def test_timeline_union_of_collective_activities(tmp_path):
    trace = [
        {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "grad_a"}},
        {"ph": "B", "name": "NEGOTIATE_ALLREDUCE", "ts": 0, "pid": 1},
        {"ph": "X", "name": "0", "ts": 1, "pid": 1, "dur": 0},
        {"ph": "E", "ts": 100, "pid": 1},
        {"ph": "B", "name": "ALLREDUCE", "ts": 100, "pid": 1},
        {"ph": "B", "name": "MPI_ALLREDUCE", "ts": 110, "pid": 1},
        {"ph": "E", "ts": 250, "pid": 1},
        {"ph": "E", "ts": 300, "pid": 1},                      # grad_a: 100-300
        {"ph": "B", "name": "ALLREDUCE", "ts": 200, "pid": 2},
        {"ph": "E", "ts": 400, "pid": 2},                      # grad_b: 200-400 (overlaps)
        {"ph": "B", "name": "ALLREDUCE", "ts": 1000, "pid": 3},
        {"ph": "E", "ts": 1050, "pid": 3},                     # grad_c: 1000-1050
    ]
    path = tmp_path / "timeline.json"
    path.write_text(json.dumps(trace)[:-1] + ",\n")           # as Horovod leaves it: unclosed
    out = bench.timeline_comm_seconds(str(path))
    assert out["comm_seconds"] == pytest.approx((300 + 50) * 1e-6)
    assert out["tensors"] == 3 and out["activities"] == 3


@pytest.mark.parametrize("spans, total", [([], 0.0), ([(0, 1)], 1.0), ([(3, 4), (0, 1)], 2.0),
                                          ([(0, 2), (1, 3), (5, 6)], 4.0),
                                          ([(0, 10), (2, 3)], 10.0), ([(0, 1), (1, 2)], 2.0)])
def test_union_seconds_counts_overlaps_once(spans, total):
    assert bench.union_seconds(spans) == pytest.approx(total)


def test_smoke_suite_runs_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--suite", "smoke",
                           "--out", str(tmp_path)], cwd=ROOT, env=launch_env(),
                          capture_output=True, text=True, timeout=1800)   # a hang guard
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.load(open(tmp_path / "smoke.json"))
    setups = [r["setup"] for r in res["throughput"]]
    assert setups == ["1 rank x all cores", "1 rank x 1 core", "2 ranks x 1 core, lbsgd launcher",
                      "2 ranks x 1 core, plain horovodrun"]
    assert all(r["images_per_second"] > 0 for r in res["throughput"])
    assert [(r["exchange"], r["compression"]) for r in res["exchanges"]] == [
        ("grouped", "none"), ("per_tensor", "none"), ("reducescatter", "none"),
        ("grouped", "fp16")]
    assert all(r["comm_seconds_per_step"] > 0 and r["timeline_tensors"] > 0
               for r in res["exchanges"])
    assert res["exchange_reference"]["exchange"] == "none"
    assert len(res["exchange_reference"]["seconds_per_step_runs"]) == 2   # before and after
    assert all(w >= 0 for w in res["exchange_reference"]["lockstep_wait_seconds_runs"])
    assert len(res["exchange_reference"]["step_seconds_each_rank"]) == 2  # one row per rank
    assert res["overhead"]["overhead_ratio"] > 0 and res["bf16"]["ratio"] > 0
    assert res["matmul_gflops"]["all_cores"] > 0 and res["matmul_gflops"]["bf16_all_cores"] > 0
    runs = res["matmul_gflops_runs"]                             # start and end; the higher kept
    assert len(runs) == 2 and res["matmul_gflops"]["one_core"] == max(r["one_core"] for r in runs)
    for ext in ("md", "png"):
        assert os.path.getsize(tmp_path / f"smoke.{ext}") > 500
    assert "weak-scaling efficiency" in proc.stdout
    (ours,) = [r for r in res["throughput"] if r["setup"] == "2 ranks x 1 core, lbsgd launcher"]
    assert len(ours["weak_scaling_efficiency_runs"]) == 1       # the smoke suite's repetition
    assert set(res["pipelines"]["pipelines"]) == {"imagenet_folder", "cifar_arrays"}
    assert all(p["headroom"] > 0 and p["core_share"] > 0
               for p in res["pipelines"]["pipelines"].values())
    assert res["peers"] == {"not_run": "not in this suite"}
    assert "## Input pipeline headroom" in open(tmp_path / "smoke.md").read()


@pytest.mark.parametrize("steps, wait", [
    ([[1.0, 2.0], [1.0, 2.0]], 0.0),                  # ranks in step: nothing to wait for
    ([[1.0, 1.0], [2.0, 1.0]], 0.25),                 # step 0: max 2, mean 1.5; step 1: 0
    ([[3.0, 1.0], [1.0, 3.0]], 1.0),                  # each rank slow in turn: 1 s each step
    ([[1.0, 1.0], [1.0, 1.0], [4.0, 1.0]], 1.0),      # 3 ranks: step 0 max 4, mean 2
    ([[2.0, 2.0]], 0.0), ([], 0.0)])                  # one rank, no steps
def test_lockstep_wait_value_table(steps, wait):
    assert bench.lockstep_wait(steps) == pytest.approx(wait)


def test_corun_efficiency_of_the_committed_quick_run():
    """The no-exchange ceiling from benchmarks/results/quick.json's own figures (2026-12-04:
    1 rank x 1 core 2.3125 s/step; the 2-rank reference 2.3833 and 2.4745 s/step)."""
    res = json.load(open(os.path.join(ROOT, "benchmarks", "results", "quick.json")))
    assert bench.corun_efficiency(res) == pytest.approx([2.3125 / 2.3833, 2.3125 / 2.4745],
                                                        abs=2e-4)
    assert bench.corun_efficiency({"throughput": []}) == []
    assert "Without any exchange the same 2 ranks reach 97.0% and 93.5%" in bench.report(res)


def test_scaling_rows_pair_each_repetition():
    """Each repetition's efficiency from its own pair; the rows keep the median run."""
    one = [{"ranks": 1, "images_per_second": v, "seconds_per_step": 8 / v} for v in (10, 8, 9)]
    many = [{"ranks": 2, "images_per_second": v, "seconds_per_step": 8 / v} for v in (19, 16, 9)]
    r1, r2 = bench.scaling_rows(list(zip(one, many)))
    assert r2["weak_scaling_efficiency_runs"] == pytest.approx([0.95, 1.0, 0.5])
    assert r2["weak_scaling_efficiency"] == pytest.approx(0.95)
    assert r1["images_per_second"] == 9 and r2["images_per_second"] == 16
    assert r1["images_per_second_runs"] == [10, 8, 9]


def test_peer_ratio_lines_of_a_peers_result():
    res = {"summary": {"lbsgd": {"images_per_second": {}},
                       "jax_dataparallel": {"ratio_to_lbsgd": {"median": 0.61, "min": 0.58,
                                                               "max": 0.64,
                                                               "values": [0.64, 0.58]}},
                       "mwms (.venv)": {"fails": "TypeError: PerReplica", "failed_rounds": 2}},
           "skipped": {"horovod_tf_keras": "no .venv-peers/tf_keras"}}
    assert bench.peer_ratio_lines(res) == [
        "peer jax_dataparallel / lbsgd: 0.61x [0.58-0.64] over 2 rounds",
        "peer mwms (.venv): fails: TypeError: PerReplica",
        "peer horovod_tf_keras: skipped, no .venv-peers/tf_keras"]


def test_overlap_benchmark_exposed_time_per_round():
    """Exposed = exchange step - no-exchange step of the same round; the allreduce time is
    the grouped exchange's timeline communication; medians and ranges over the rounds."""
    from benchmarks import overlap as O
    rounds = [{"none": {"seconds_per_step": 1.0},
               "grouped": {"seconds_per_step": 1.5, "comm_seconds_per_step": 0.6},
               "overlap": {"seconds_per_step": 1.1}},
              {"none": {"seconds_per_step": 1.2},
               "grouped": {"seconds_per_step": 1.6, "comm_seconds_per_step": 0.4},
               "overlap": {"seconds_per_step": 1.5}}]
    s = O.summarise(rounds)
    assert s["allreduce_seconds"]["median"] == pytest.approx(0.5)
    g, o = s["exchanges"]["grouped"], s["exchanges"]["overlap"]
    assert g["exposed_seconds"]["values"] == pytest.approx([0.5, 0.4])
    assert o["exposed_seconds"]["min"] == pytest.approx(0.1)
    assert o["exposed_seconds"]["max"] == pytest.approx(0.3)
    assert o["exposed_of_allreduce"] == pytest.approx(0.2 / 0.5)
    assert "exposed_seconds" not in s["exchanges"]["none"]
    assert O.rotated(["a", "b", "c"], 4) == ["b", "c", "a"]


@pytest.mark.parametrize("flags, message", [
    (["--links", "local,fast"], "--links: fast not allowed"),
    (["--exchanges", "overlap"], "must include grouped"),
    (["--rounds", "1"], "--rounds must be >= 2"),
    (["--models", "vgg"], "--models: vgg not allowed"),
    (["--only", "local:resnet50,2gbit:resnet50"], "--only: 2gbit:resnet50 not a link:model")])
def test_overlap_benchmark_refuses_bad_flags(flags, message, capsys):
    from benchmarks import overlap as O
    with pytest.raises(SystemExit):
        O.main(flags)
    assert message in capsys.readouterr().err


def test_overlap_benchmark_smoke(tmp_path):
    """The README's command on this machine, a few steps: every exchange ran each round."""
    out = tmp_path / "overlap"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.overlap", "--smoke", "--links",
                           "local", "--models", "resnet20", "--rounds", "2", "--exchanges",
                           "grouped,overlap", "--out", str(out)], cwd=ROOT, env=launch_env(),
                          capture_output=True, text=True, timeout=1200)    # a hang guard
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.load(open(f"{out}.json"))
    (m,) = res["measurements"]
    assert [sorted(r) for r in m["rounds"]] == [["grouped", "none", "overlap"]] * 2
    assert m["summary"]["allreduce_seconds"]["median"] > 0
    assert "| local | resnet20 (16) | overlap |" in open(f"{out}.md").read()


def test_update_benchmark_smoke():
    """`python -m benchmarks.update` on ResNet-20: both paths timed every round, and the
    fused update left the same weights and velocities as Keras' ops (float rounding)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.update", "--model=resnet20",
                           "--image_size=32", "--num_classes=10", "--steps=3", "--rounds=2"],
                          cwd=ROOT, env=launch_env(), capture_output=True, text=True,
                          timeout=600)    # a hang guard
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record["variables"] == 65 and record["parameters"] == 272474   # ResNet-20, 10 classes
    assert [len(v) for v in record["ms_per_update"].values()] == [2, 2]
    assert record["max_difference_relative"] < 1e-5


@pytest.mark.parametrize("ready, seconds, tail", [
    ([0.0, 1.0], [0.5, 0.5], 0.5),        # the link is free when each bucket is ready
    ([0.0, 0.1], [1.0, 0.5], 1.4),        # the second waits for the first: 1.5 - 0.1
    ([0.0, 0.2, 0.3], [0.1, 0.1, 0.0], 0.0),
    ([], [], 0.0),
])
def test_spare_core_tail_value_table(ready, seconds, tail):
    from benchmarks import overlap_timeline as T
    assert T.spare_core_tail(ready, seconds) == pytest.approx(tail)


def test_overlap_timeline_breakdown_of_a_known_step():
    """A step of 10 s (t0 = 1e6 us since the epoch): bucket a ready on both ranks at 4 s,
    allreduced 4-5 s; bucket b (tensors b_1of2, b_2of2) ready at 6 and 7 s, allreduced
    7-8.5 s. Compute-only step 8 s, link 1 MB/s, buckets 1 and 0.5 MB."""
    from benchmarks import overlap_timeline as T
    s = 1e6   # a second in microseconds
    ev = [{"name": "process_name", "ph": "M", "pid": 0,
           "args": {"start_time_since_epoch_in_micros": 1_000_000}}]
    for pid, name, neg, act in ((1, "a", (3.5, 4), (4, 5)), (2, "b_1of2", (5.5, 6), (7, 8.5)),
                                (3, "b_2of2", (6.5, 7), (7, 8.5))):
        ev += [{"name": "process_name", "ph": "M", "pid": pid, "args": {"name": name}},
               {"ph": "B", "name": "NEGOTIATE_ALLREDUCE", "ts": neg[0] * s, "pid": pid},
               {"ph": "E", "ts": neg[1] * s, "pid": pid},
               {"ph": "B", "name": "ALLREDUCE", "ts": act[0] * s, "pid": pid},
               {"ph": "B", "name": "MPI_ALLREDUCE", "ts": act[0] * s + 1, "pid": pid},
               {"ph": "E", "ts": act[1] * s - 1, "pid": pid},
               {"ph": "E", "ts": act[1] * s, "pid": pid}]
    colls = T.collectives(ev)
    assert [c["bucket"] for c in colls] == ["a", "b", "b"]
    stamps = {"steps": [[0, 1e6], [1e6, 11e6]], "warmup_steps": 1,
              "bucket_bytes": [1e6, 0.5e6], "gradient_bytes": 1.5e6}
    out = T.breakdown(colls, stamps, none_step=8.0, rate=1e6)
    m = out["median"]
    assert out["buckets"] == 2
    assert m["seconds"] == pytest.approx(10.0) and m["exposed"] == pytest.approx(2.0)
    assert m["first_ready"] == pytest.approx(4.0) and m["last_ready"] == pytest.approx(7.0)
    assert m["last_ready_skew"] == pytest.approx(0.5)          # b's last tensor: 6.5 -> 7
    assert m["comm"] == pytest.approx(2.5) and m["comm_uncontended"] == pytest.approx(1.5)
    assert m["tail"] == pytest.approx(1.5)                     # 8.5 - 7
    assert m["slowdown"] == pytest.approx(0.5)                 # 2 - 1.5
    assert m["spare_core_tail"] == pytest.approx(0.5)          # b: 7 + 0.5 s at 1 MB/s
    assert m["queued"] == pytest.approx(0.0)


def test_overlap_timeline_smoke(tmp_path):
    """The README's command on this machine, a few steps: a real Horovod timeline parsed
    into each timed step's buckets, and the report and figure written."""
    out = tmp_path / "otl"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.overlap_timeline", "--smoke",
                           "--link", "local", "--model", "resnet20", "--rounds", "1",
                           "--bucket_mb", "0.25", "--out", str(out)], cwd=ROOT,
                          env=launch_env(), capture_output=True, text=True,
                          timeout=1200)    # a hang guard
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.load(open(f"{out}.json"))
    (r,) = res["rounds"]
    o = r["overlap"]
    assert o["buckets"] == 6 and len(o["steps"]) == 3      # resnet20 in 0.25 MiB buckets
    for s in o["steps"]:
        assert len(s["buckets"]) == 6
        assert 0 < s["first_ready"] <= s["last_ready"] <= s["comm_end"] <= s["seconds"] + 1e-3
        assert s["tail"] + s["slowdown"] == pytest.approx(s["exposed"])
    assert r["allreduce"] > 0 and r["rate"] > 0
    assert "**spare core (model)**" in open(f"{out}.md").read()
    assert os.path.getsize(f"{out}.png") > 500


def _grow_run(path, rows, restarts=None):
    """A run directory with the history.csv and summary.json columns benchmarks.grow_ranks
    reads."""
    path.mkdir(parents=True)
    head = "epoch,val_accuracy,batch_size,ranks,elapsed_seconds\n"
    (path / "history.csv").write_text(head + "".join(",".join(map(str, r)) + "\n" for r in rows))
    summary = {"status": "completed"}
    if restarts is not None:
        summary["restarts"] = restarts
    (path / "summary.json").write_text(json.dumps(summary))
    return str(path)


def test_grow_ranks_figures_of_a_run(tmp_path):
    """Wall time to each target from history.csv (restarts included), epochs per rank
    count, the restart seconds from summary.json."""
    from benchmarks import grow_ranks as G
    d = _grow_run(tmp_path / "g", [(1, 0.85, 256, 1, 40.0), (2, 0.905, 512, 2, 110.0),
                                   (3, 0.912, 512, 2, 150.0)],
                  {"count": 1, "seconds": 31.5, "each": []})
    m = G.measure(d, targets=(0.90, 0.91, 0.95))
    assert m["seconds_to"] == {"0.9": 110.0, "0.91": 150.0, "0.95": None}
    assert m["top1"] == pytest.approx(0.912) and m["seconds"] == 150.0
    assert m["epochs_per_ranks"] == {"1": 1, "2": 2} and m["final_batch"] == 512
    assert (m["restarts"], m["restart_seconds"]) == (1, 31.5)
    fixed = G.measure(_grow_run(tmp_path / "f", [(1, 0.91, 256, 2, 50.0)]))
    assert (fixed["restarts"], fixed["restart_seconds"]) == (0, 0.0)
    assert G.finished(d) and not G.finished(str(tmp_path / "absent"))


def test_grow_ranks_verdicts_need_separated_ranges():
    from benchmarks import grow_ranks as G

    def run(top1, seconds):
        return {"top1": top1, "seconds": seconds, "restart_seconds": 0.0,
                "seconds_to": {"0.9": seconds}}
    apart = {s: {"grow": run(0.91, 300 + s), "fixed": run(0.91 + s / 1000, 250 + s)}
             for s in range(3)}
    s = G.summarise(apart)
    assert s["verdicts"] == {"seconds": "grow higher", "top1": "inconclusive"}
    assert s["grow"]["seconds"]["mean"] == 301 and s["fixed"]["seconds_to"]["0.9"]["max"] == 252
    assert G.summarise({0: apart[0]})["verdicts"]["seconds"] == "too few seeds"


@pytest.mark.parametrize("op_type, kind", [
    ("_MklNativeConv2D", "conv_forward"),
    ("Conv2D", "conv_forward"),
    ("_MklNativeConv2DBackpropInput", "conv_backward_data"),
    ("_MklNativeConv2DBackpropFilter", "conv_backward_filter"),
    ("Conv2DBackpropFilter", "conv_backward_filter"),
    ("_MklNativeFusedBatchNormV3", "bn_forward"),
    ("_MklNativeFusedBatchNormEx", "bn_forward"),      # BN with ReLU computed inside
    ("_MklNativeFusedBatchNormGradV3", "bn_backward"),
    ("ReluGrad", "elementwise"),
    ("AddN", "elementwise"),
    ("Cast", "elementwise"),
    ("ResourceApplyKerasMomentum", "update"),
    ("_MklMatMul", "other"),
    ("ReadVariableOp", "other"),
])
def test_profile_op_kinds_value_table(op_type, kind):
    from benchmarks import profile as P
    assert P.kind_of(op_type) == kind


@pytest.mark.parametrize("event, op_type", [
    ("StatefulPartitionedCall/resnet50_1/conv1_1/convolution:_MklNativeConv2D",
     "_MklNativeConv2D"),
    ("gradient_tape/resnet20_1/relu_3/ReluGrad:ReluGrad", "ReluGrad"),
    ("ExecutorState::Process", None),      # the executor's own annotations
    ("StartRegion", None),
    ("MemoryAllocation", None),
    (":Relu", None),
])
def test_profile_event_names(event, op_type):
    from benchmarks import profile as P
    assert P.op_type_of(event) == op_type


def test_profile_conv_flops_of_a_known_model():
    """2 x multiply-adds x batch: a 3x3 convolution 3 -> 4 channels on 5x5 ('same'), then
    a 1x1 convolution 4 -> 2 and a dense layer 50 -> 10; backward-data leaves out the stem."""
    import keras
    from benchmarks import profile as P
    x = keras.Input((5, 5, 3))
    y = keras.layers.Conv2D(4, 3, padding="same", name="stem")(x)
    y = keras.layers.Conv2D(2, 1, name="second")(y)
    y = keras.layers.Dense(10)(keras.layers.Flatten()(y))
    stem, second = 2 * 5 * 5 * 3 * 3 * 3 * 4, 2 * 5 * 5 * 4 * 2   # per image
    f = P.conv_flops(keras.Model(x, y), batch=4)
    assert f == {"conv_forward": 4 * (stem + second), "conv_backward_data": 4 * second,
                 "conv_backward_filter": 4 * (stem + second), "conv_layers": 2,
                 "train": 3 * 4 * (stem + second + 2 * 50 * 10),
                 "layers": {"stem": {"shape": "3x3/1 → 5x5", "flops": 4 * stem},
                            "second": {"shape": "1x1/1 → 5x5", "flops": 4 * second}}}


@pytest.mark.parametrize("op_name, layer", [
    ("StatefulPartitionedCall/gradient_tape/resnet50_1/res2a_branch2a_1/convolution/"
     "Conv2DBackpropFilter", "res2a_branch2a"),
    ("StatefulPartitionedCall/resnet50_1/conv1_1/convolution", "conv1"),
    ("resnet50_1/res2a_branch2b/convolution", "res2a_branch2b"),    # no scope suffix
    ("model_1/conv_1/convolution", "conv_1"),      # a layer named conv_1 beats conv
    ("model_1/conv_12/convolution", "conv"),
    ("StatefulPartitionedCall/resnet50_1/res2a_bn2a_1/FusedBatchNormV3", None),
    ("StatefulPartitionedCall/resnet50_1/res2a_branch2/convolution", None),
])
def test_profile_layer_of_op_names(op_name, layer):
    """An op is its layer's by its name's scopes, Keras' `_<n>` suffix allowed."""
    from benchmarks import profile as P
    names = {"res2a_branch2a", "res2a_branch2b", "conv1", "conv", "conv_1"}
    assert P.layer_of(op_name, names) == layer


def test_profile_refuses_exchange_flags():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.profile", "--exchange=per_tensor"],
                          cwd=ROOT, env=launch_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert "Flag `exchange` does not apply to benchmarks.profile" in proc.stderr
    assert "Received: exchange=per_tensor" in proc.stderr


def test_profile_smoke(tmp_path):
    """`python -m benchmarks.profile --compare` on ResNet-20, a few steps: every Conv2D
    layer's three passes, every BN's two and every variable's update are in each dtype's
    profile, once per step, and the kinds add up to the op time."""
    out = tmp_path / "profile"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.profile", "--model=resnet20",
                           "--image_size=32", "--num_classes=10", "--local_batch=16",
                           "--compare", "--rounds=1", "--profile_steps=2", "--steps=2",
                           "--warmup_steps=1", "--nopeak", f"--out={out}"],
                          cwd=ROOT, env=launch_env(), capture_output=True, text=True,
                          timeout=600)    # a hang guard
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.load(open(f"{out}.json"))
    assert list(res["dtypes"]) == ["float32", "mixed_bfloat16"]
    for dtype, d in res["dtypes"].items():
        ops = {k: v["ops"] for k, v in d["kinds"].items()}
        assert d["rounds"][0]["flops"]["conv_layers"] == 21                 # ResNet-20
        assert (ops["conv_forward"], ops["conv_backward_data"],
                ops["conv_backward_filter"]) == (21, 20, 21), dtype
        assert ops["bn_forward"] == ops["bn_backward"] == 21, dtype
        assert ops["update"] == 65, dtype                # one fused kernel per variable
        assert sum(v["seconds"] for v in d["kinds"].values()) == pytest.approx(
            d["op_seconds"])
        assert all(v["gflops"] > 0 for k, v in d["kinds"].items() if k.startswith("conv"))
        # every Conv2D layer's passes found by its ops' names, grouped by shape
        layers = d["rounds"][0]["conv_layer_seconds"]
        assert len(layers) == 21
        assert sum("conv_backward_data" in p for p in layers.values()) == 20   # not the stem
        assert all({"conv_forward", "conv_backward_filter"} <= set(p) for p in layers.values())
        for k in ("conv_forward", "conv_backward_data", "conv_backward_filter"):
            assert sum(p.get(k, 0.0) for p in layers.values()) == pytest.approx(
                d["rounds"][0]["kinds"][k]["seconds"])
        assert {s: g["layers"] for s, g in d["conv_shapes"].items()} == {
            "3x3/1 → 32x32": 7, "3x3/2 → 16x16": 1, "3x3/1 → 16x16": 5, "1x1/2 → 16x16": 1,
            "3x3/2 → 8x8": 1, "3x3/1 → 8x8": 5, "1x1/2 → 8x8": 1}
    assert res["bf16_over_fp32"]["ceiling_rest_free"] > 0
    assert "## bf16 / fp32" in open(f"{out}.md").read()
