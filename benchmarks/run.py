"""lbsgd's benchmark suite: throughput, scaling, overhead, gradient exchanges, bf16 (Codreanu et al.
V-A, Tables V-VII; Lee et al. IV-B, VI-B).

    .venv/bin/python -m benchmarks.run --suite quick     # ~27 min on 2 cores
    .venv/bin/python -m benchmarks.run --suite full

Measures on synthetic data, every number in this one run:
  * dense matmul peak of the machine (GFLOP/s): fp32 on all cores and on one, bf16 on
    all cores (the ceiling of bf16's gain), at the start and the end (the higher kept);
  * ResNet-50 (224^2) and ResNet-20 (32^2) images/s and seconds per step for
    1 rank x all cores, 1 rank x 1 core, N ranks x 1 core through lbsgd's
    launcher (launch/run.sh) and through plain horovodrun, per local batch;
  * weak-scaling efficiency = img/s(N ranks) / (N x img/s(1 rank x 1 core));
  * achieved GFLOP/s (3 x forward FLOPs per image) as a fraction of the peak;
  * lbsgd's stack (DistributedOptimizer + callbacks) against a plain Keras
    fit of the same model in one process (overhead ratio);
  * the three gradient exchanges (grouped, per_tensor, reducescatter), and
    grouped with the fp16 wire format, on N ranks: step time, Horovod-
    timeline communication time, and the exposed (not overlapped) part =
    step time - step time of the same N-rank job without any gradient
    exchange;
  * bf16 mixed precision against fp32 (throughput ratio);
  * the exchange reference's wait for the slower rank (`lockstep_wait`);
  * weak scaling repeated (1 rank x 1 core and N ranks paired, several
    repetitions): each repetition's efficiency, their median and range;
  * input pipeline headroom (benchmarks.pipeline): lbsgd's ImageNet-style and
    in-RAM pipelines alone against what ResNet-50 / ResNet-20 consume;
  * the peers (benchmarks.peers: Horovod's Keras layer through tf_keras,
    Keras-on-JAX DataParallel, MultiWorkerMirroredStrategy) in alternating
    rounds, their images/s ratio to lbsgd, where their environments exist
    (`python -m benchmarks.peers --setup`).

Writes benchmarks/results/<suite>.json, <suite>.md and <suite>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable

SUITES = {
    "quick": {"resnet50": dict(image_size=224, num_classes=1000, batches=[8], steps=6,
                               warmup=2),
              "resnet20": dict(image_size=32, num_classes=10, batches=[64], steps=20,
                               warmup=3),
              "overhead": dict(model="resnet20", batch=64, steps=25, rounds=6),
              "exchange_model": "resnet50", "bf16_model": "resnet50",
              "scaling_repetitions": 3, "pipelines": "full", "peers_rounds": 3},
    "smoke": {"resnet20": dict(image_size=32, num_classes=10, batches=[16], steps=3,
                               warmup=2),
              "overhead": dict(model="resnet20", batch=16, steps=3, rounds=1),
              "exchange_model": "resnet20", "bf16_model": "resnet20",
              "scaling_repetitions": 1, "pipelines": "smoke", "peers_rounds": 0},
    "full": {"resnet50": dict(image_size=224, num_classes=1000, batches=[8, 16, 32], steps=8,
                              warmup=3),
             "resnet20": dict(image_size=32, num_classes=10, batches=[32, 64, 128], steps=30,
                              warmup=3),
             "overhead": dict(model="resnet20", batch=64, steps=40, rounds=7),
             "exchange_model": "resnet50", "bf16_model": "resnet50",
             "scaling_repetitions": 5, "pipelines": "full", "peers_rounds": 3},
}


def _env(threads: int | None = None, launcher_defaults: bool = True, **extra) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(PY) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        env["LBSGD_INTRA_OP_THREADS"] = str(threads)
    if not launcher_defaults:
        env.pop("OMPI_MCA_mpi_yield_when_idle", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _json_line(stdout: str) -> dict:
    """The result object a benchmark printed (horovodrun may glue other output to its line)."""
    decoder = json.JSONDecoder()
    for line in reversed(stdout.splitlines()):
        for marker in ('{"model"', '{"gflops"', '{"flops"'):
            at = line.find(marker)
            if at >= 0:
                return decoder.raw_decode(line[at:])[0]
    raise RuntimeError(f"no JSON result in:\n{stdout[-2000:]}")


def _run(cmd, env, timeout=1800) -> dict:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return _json_line(proc.stdout)


def throughput(model, batch, spec, ranks=1, threads=None, launcher="lbsgd", exchange="grouped",
               mode="lbsgd", dtype="float32", timeline=None, extra_flags=()):
    args = ["-m", "benchmarks.throughput", f"--model={model}", f"--local_batch={batch}",
            f"--image_size={spec['image_size']}", f"--num_classes={spec['num_classes']}",
            f"--steps={spec['steps']}", f"--warmup_steps={spec['warmup']}",
            f"--exchange={exchange}", f"--mode={mode}", f"--dtype_policy={dtype}",
            *extra_flags]
    extra = {"HOROVOD_TIMELINE": timeline} if timeline else {}
    if ranks == 1:
        return _run([PY, *args], _env(threads, **extra))
    if launcher == "lbsgd":
        return _run([os.path.join(ROOT, "launch", "run.sh"), "-np", str(ranks), PY, *args],
                    _env(threads, **extra))
    horovodrun = os.path.join(os.path.dirname(PY), "horovodrun")
    return _run([horovodrun, "-np", str(ranks), PY, *args],
                _env(threads, launcher_defaults=False, **extra))


PEAK_SIZE, PEAK_REPS = 4096, 7      # matmul_peak: the fastest of PEAK_REPS multiplies of this


def matmul_peak(threads: int, dtype: str = "float32", n: int = PEAK_SIZE,
                reps: int = PEAK_REPS) -> float:
    """Dense matmul GFLOP/s of the fastest of `reps` timed multiplies: this shared host slows
    whole seconds at a time, and a peak is what the hardware can do when it is let."""
    code = f"""
import os, time, json
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({threads})
tf.config.threading.set_inter_op_parallelism_threads(1)
a = tf.cast(tf.random.normal([{n}, {n}]), "{dtype}")
b = tf.cast(tf.random.normal([{n}, {n}]), "{dtype}")
f = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), "float32")))
f().numpy()
best = float("inf")
for _ in range({reps}):
    t = time.perf_counter(); f().numpy(); best = min(best, time.perf_counter() - t)
print(json.dumps({{"gflops": 2 * {n} ** 3 / best / 1e9}}))
"""
    return _run([PY, "-c", code], _env())["gflops"]


def matmul_peaks(cores: int) -> dict:
    """fp32 on all cores and on one, bf16 on all cores (the ceiling of a bf16 step's gain)."""
    return {"all_cores": matmul_peak(cores), "one_core": matmul_peak(1),
            "bf16_all_cores": matmul_peak(cores, "bfloat16")}


def model_flops_per_image(model: str, image_size: int, num_classes: int) -> float:
    """Training FLOPs per image: 3 x the forward multiply-adds x 2 (conv and dense layers)."""
    code = f"""
import json, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras
from lbsgd import config
from lbsgd.model import networks as models
m = models.build_model(config.ModelConfig(name="{model}"), ({image_size}, {image_size}, 3),
                       {num_classes})
macs = 0
for layer in m.layers:
    if isinstance(layer, keras.layers.Conv2D):
        k = layer.kernel.shape
        out = layer.output.shape
        macs += out[1] * out[2] * k[0] * k[1] * k[2] * k[3]
    elif isinstance(layer, keras.layers.Dense):
        macs += layer.kernel.shape[0] * layer.kernel.shape[1]
print(json.dumps({{"flops": 3 * 2 * macs}}))
"""
    return _run([PY, "-c", code], _env())["flops"]


def read_timeline(path: str) -> list[dict]:
    """A Horovod timeline's events (a Chrome trace that Horovod may leave unterminated)."""
    with open(path) as f:
        text = f.read().strip()
    if not text.endswith("]"):
        text = text.rstrip(",\n ") + "]"
    return json.loads(text)


def union_seconds(spans) -> float:
    """Length of the union of (begin, end) intervals: overlapping ones counted once."""
    total, cur = 0.0, None
    for b, e in sorted(spans):
        if cur is None or b > cur[1]:
            if cur is not None:
                total += cur[1] - cur[0]
            cur = [b, e]
        else:
            cur[1] = max(cur[1], e)
    return total + (cur[1] - cur[0] if cur else 0.0)


def timeline_comm_seconds(path: str) -> dict:
    """Communication activity in a Horovod timeline (Chrome trace JSON, written by rank 0).

    Each tensor is a trace "process"; its top-level activities after the
    negotiation (ALLREDUCE, REDUCESCATTER, ALLGATHER, ... with their nested
    MPI/memcpy phases) are collected over all tensors and their union is
    summed, so tensors processed together (fused) are counted once.
    """
    events = read_timeline(path)
    stacks, spans, tensors = {}, [], set()
    for e in events:
        ph, pid = e.get("ph"), e.get("pid")
        if ph == "B":
            stacks.setdefault(pid, []).append((e.get("name", ""), e["ts"]))
        elif ph == "E" and stacks.get(pid):
            name, start = stacks[pid].pop()
            if not stacks[pid] and not name.startswith("NEGOTIATE"):
                spans.append((start, e["ts"]))
                tensors.add(pid)
    total = union_seconds(spans)
    return {"comm_seconds": total / 1e6, "tensors": len(tensors), "activities": len(spans)}


def lockstep_wait(step_seconds_each_rank) -> float:
    """Seconds a synchronous step would wait for the slowest rank, from a job whose ranks
    ran free (no exchange): mean over steps of (max over ranks - mean over ranks) of each
    step's time. Zero when every rank's k-th step took as long; it assumes a rank's slow
    steps would not move to line up with the others' (noise of this host, not the model)."""
    import numpy as np
    t = np.asarray(step_seconds_each_rank, dtype=float)
    if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] == 0:
        return 0.0
    return float(np.mean(t.max(axis=0) - t.mean(axis=0)))


def corun_efficiency(res: dict) -> list[float]:
    """Weak-scaling efficiency of the exchange reference (N ranks, no exchange) against the
    1 rank x 1 core row of the same model and local batch, one value per reference run."""
    ref = res.get("exchange_reference")
    if not ref:
        return []
    one = [r for r in res.get("throughput", []) if r["setup"] == "1 rank x 1 core"
           and r["model"] == ref["model"] and r["local_batch"] == ref["local_batch"]]
    if not one:
        return []
    runs = ref.get("seconds_per_step_runs", [ref["seconds_per_step"]])
    return [one[0]["seconds_per_step"] / s for s in runs]


def scaling_rows(pairs) -> tuple[dict, dict]:
    """The 1-rank and N-rank rows from repeated (1 rank x 1 core, N ranks) runs: each the
    median run's images/s and step time, every run kept, and the N-rank row's weak-scaling
    efficiency per repetition (N-rank img/s / (N x the same repetition's 1-rank img/s))
    with their median."""
    import statistics
    one = [p[0] for p in pairs]
    many = [p[1] for p in pairs]
    effs = [m["images_per_second"] / (m["ranks"] * o["images_per_second"])
            for o, m in pairs]
    out = []
    for runs in (one, many):
        row = dict(runs[0])
        for k in ("images_per_second", "seconds_per_step"):
            row[f"{k}_runs"] = [r[k] for r in runs]
            row[k] = statistics.median(row[f"{k}_runs"])
        out.append(row)
    out[1].update(weak_scaling_efficiency=statistics.median(effs),
                  weak_scaling_efficiency_runs=effs)
    return out[0], out[1]


def peers(rounds: int, out: str, log) -> dict:
    """benchmarks.peers over `rounds` alternating rounds (its own files at `out`.json/.md);
    the peers whose environment is missing are skipped there with the reason."""
    proc = subprocess.run([PY, "-m", "benchmarks.peers", "--rounds", str(rounds), "--out", out],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=7200)
    if proc.returncode:
        log(f"peers failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        return {"failed": proc.stderr[-2000:]}
    with open(out + ".json") as f:
        got = json.load(f)
    for line in peer_ratio_lines(got):
        log(line)
    return {"summary": got["summary"], "skipped": got.get("skipped", {}),
            "file": os.path.relpath(out, ROOT) + ".md"}


def peer_ratio_lines(peers_res: dict) -> list[str]:
    """One line per peer: its images/s ratio to lbsgd (median [min-max] over the rounds),
    its failure, or why it was skipped."""
    lines = []
    for name, e in peers_res.get("summary", {}).items():
        if name == "lbsgd":
            continue
        if "fails" in e:
            lines.append(f"peer {name}: fails: {e['fails']}")
        elif "ratio_to_lbsgd" in e:
            r = e["ratio_to_lbsgd"]
            lines.append(f"peer {name} / lbsgd: {r['median']:.2f}x "
                         f"[{r['min']:.2f}-{r['max']:.2f}] over {len(r['values'])} rounds")
    for name, why in peers_res.get("skipped", {}).items():
        lines.append(f"peer {name}: skipped, {why}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--suite", choices=tuple(SUITES), default="quick")
    parser.add_argument("--np", type=int, default=2, dest="np_", help="ranks (one per core)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    args = parser.parse_args(argv)
    suite, n = SUITES[args.suite], args.np_
    cores = os.cpu_count() or 1
    t_start = time.perf_counter()
    res = {"suite": args.suite, "ranks": n, "cores": cores,
           "command": f".venv/bin/python -m benchmarks.run --suite {args.suite} --np {n}"}

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", flush=True)

    # The peaks are measured at the start and again at the end; each is the higher of the
    # two, so a slow spell at either end does not pass for the hardware's peak.
    peaks_runs = [matmul_peaks(cores)]
    log(f"matmul peak: {peaks_runs[0]}")
    res["throughput"] = []
    for model in ("resnet50", "resnet20"):
        if model not in suite:
            continue
        spec = suite[model]
        flops = model_flops_per_image(model, spec["image_size"], spec["num_classes"])
        for batch in spec["batches"]:
            one, ours = "1 rank x 1 core", f"{n} ranks x 1 core, lbsgd launcher"
            rows = {"1 rank x all cores": throughput(model, batch, spec, threads=cores)}
            # Weak scaling, repeated: each repetition pairs a 1-rank x 1-core run with an
            # N-rank run right after it, so a slow spell of this host hits both.
            pairs = []
            for rep in range(suite["scaling_repetitions"]):
                pairs.append((throughput(model, batch, spec, threads=1),
                              throughput(model, batch, spec, ranks=n)))
                log(f"{model} b{batch} scaling repetition {rep + 1}: "
                    f"{pairs[-1][1]['images_per_second']:.2f} / ({n} x "
                    f"{pairs[-1][0]['images_per_second']:.2f}) img/s")
            rows[one], rows[ours] = scaling_rows(pairs)
            rows[f"{n} ranks x 1 core, plain horovodrun"] = throughput(
                model, batch, spec, ranks=n, launcher="horovodrun")
            base = rows[one]["images_per_second"]
            for setup, r in rows.items():
                r.update(setup=setup, train_flops_per_image=flops,
                         gflops=r["images_per_second"] * flops / 1e9)
                if r["ranks"] > 1 and "weak_scaling_efficiency" not in r:
                    r["weak_scaling_efficiency"] = r["images_per_second"] / (r["ranks"] * base)
                res["throughput"].append(r)
                log(f"{model} b{batch} {setup}: {r['images_per_second']:.2f} img/s")

    o = suite["overhead"]
    spec = suite[o["model"]]
    res["overhead"] = throughput(o["model"], o["batch"], dict(spec, steps=o["steps"]),
                                 threads=cores, mode="overhead",
                                 extra_flags=(f"--rounds={o['rounds']}",))
    log(f"overhead lbsgd/plain: {res['overhead']['overhead_ratio']:.4f}")

    em = suite["exchange_model"]
    spec = suite[em]
    batch = spec["batches"][0]
    # The compute-only reference: the same N-rank job with no gradient exchange, so the
    # ranks contend for the cores and memory exactly as in the real job. It runs before
    # and after the exchanges: their difference shows this host's drift between jobs.
    refs = [throughput(em, batch, spec, ranks=n, exchange="none")]
    log(f"exchange none (compute only): {refs[0]['seconds_per_step']:.3f} s/step")
    res["exchanges"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for exchange, compression in (("grouped", "none"), ("per_tensor", "none"),
                                      ("reducescatter", "none"), ("grouped", "fp16")):
            timeline = os.path.join(tmp, f"timeline_{exchange}_{compression}.json")
            r = throughput(em, batch, spec, ranks=n, exchange=exchange, timeline=timeline,
                           extra_flags=(f"--compression={compression}",))
            steps = spec["steps"] + spec["warmup"]
            comm = timeline_comm_seconds(timeline)
            r.update(comm_seconds_per_step=comm["comm_seconds"] / steps,
                     timeline_tensors=comm["tensors"])
            res["exchanges"].append(r)
            log(f"exchange {exchange}/{compression}: {r['seconds_per_step']:.3f} s/step, comm "
                f"{r['comm_seconds_per_step']:.3f} s/step")
    refs.append(throughput(em, batch, spec, ranks=n, exchange="none"))
    log(f"exchange none again: {refs[1]['seconds_per_step']:.3f} s/step")
    ref = dict(refs[0], seconds_per_step=(refs[0]["seconds_per_step"] +
                                          refs[1]["seconds_per_step"]) / 2,
               seconds_per_step_runs=[x["seconds_per_step"] for x in refs])
    ref["lockstep_wait_seconds_runs"] = [lockstep_wait(x.get("step_seconds_each_rank", []))
                                         for x in refs]
    res["exchange_reference"] = ref
    for r in res["exchanges"]:
        r["compute_seconds_per_step"] = ref["seconds_per_step"]
        r["exposed_comm_seconds_per_step"] = max(
            0.0, r["seconds_per_step"] - ref["seconds_per_step"])

    bm = suite["bf16_model"]
    spec = suite[bm]
    batch = spec["batches"][0]
    res["bf16"] = {dtype: throughput(bm, batch, spec, threads=cores, dtype=dtype)
                   for dtype in ("float32", "mixed_bfloat16")}
    res["bf16"]["ratio"] = (res["bf16"]["mixed_bfloat16"]["images_per_second"] /
                            res["bf16"]["float32"]["images_per_second"])
    log(f"bf16/fp32 throughput: {res['bf16']['ratio']:.3f}")

    from benchmarks import pipeline as pipe
    demands = {r["model"]: r["images_per_second"] for r in res["throughput"]
               if r["setup"] == "1 rank x all cores"}
    res["pipelines"] = pipe.measure(suite["pipelines"] == "smoke", log=log, demands=demands)

    if suite["peers_rounds"]:
        res["peers"] = peers(suite["peers_rounds"], os.path.join(args.out,
                                                                 f"{args.suite}_peers"), log)
    else:
        res["peers"] = {"not_run": "not in this suite"}
    peaks_runs.append(matmul_peaks(cores))
    log(f"matmul peak again: {peaks_runs[1]}")
    res["matmul_gflops"] = {k: max(p[k] for p in peaks_runs) for k in peaks_runs[0]}
    res["matmul_gflops_runs"] = peaks_runs
    for r in res["throughput"]:
        r["fraction_of_peak"] = r["gflops"] / res["matmul_gflops"]["all_cores"]
    res["seconds"] = time.perf_counter() - t_start

    sys.path.insert(0, ROOT)
    from lbsgd.run import checkpoint as ckpt
    os.makedirs(args.out, exist_ok=True)
    ckpt.atomic_write_json(os.path.join(args.out, f"{args.suite}.json"), res)
    text = report(res)
    ckpt.atomic_write_text(os.path.join(args.out, f"{args.suite}.md"), text)
    plot(res, os.path.join(args.out, f"{args.suite}.png"))
    print(text)
    return 0


def report(res: dict) -> str:
    n = res["ranks"]
    mm = res["matmul_gflops"]
    bf16_ceiling = mm["bf16_all_cores"] / mm["all_cores"]
    lines = [f"# lbsgd benchmarks, suite `{res['suite']}` ({res['cores']} cores)", "",
             f"Command: `{res['command']}` — {res['seconds'] / 60:.1f} min, every number from "
             "this one run.", "",
             f"Dense matmul peak (the fastest of {PEAK_REPS} multiplies of {PEAK_SIZE}², the "
             f"higher of the suite's start and end): fp32 {mm['all_cores']:.0f} GFLOP/s on all "
             f"cores, {mm['one_core']:.0f} on one; bf16 {mm['bf16_all_cores']:.0f} on all "
             f"cores ({bf16_ceiling:.2f}x fp32).", "",
             "## Throughput and scaling", "",
             "| model | local batch | setup | img/s | s/step | weak-scaling eff. | GFLOP/s | "
             "of peak |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["throughput"]:
        eff = f"{100 * r['weak_scaling_efficiency']:.0f}%" if "weak_scaling_efficiency" in r \
            else ""
        lines.append(f"| {r['model']} | {r['local_batch']} | {r['setup']} | "
                     f"{r['images_per_second']:.2f} | {r['seconds_per_step']:.3f} | {eff} | "
                     f"{r['gflops']:.0f} | {100 * r['fraction_of_peak']:.0f}% |")
    lines += ["", "Ratios (same run):"]
    for model in sorted({r["model"] for r in res["throughput"]}):
        for r in res["throughput"]:
            if r["model"] == model and r["ranks"] > 1:
                runs = r.get("weak_scaling_efficiency_runs")
                spread = (f" (median of {len(runs)} paired repetitions: "
                          f"{', '.join(f'{100 * e:.1f}%' for e in runs)})" if runs else "")
                lines.append(f"* {model} b{r['local_batch']}, {r['setup']}: weak-scaling "
                             f"efficiency {100 * r['weak_scaling_efficiency']:.1f}%{spread}")
    o = res["overhead"]
    med = o.get("overhead_ratio_median", o["overhead_ratio"])
    lines += [f"* lbsgd stack / plain Keras fit ({o['model']}, b{o['local_batch']}, one process, "
              f"{len(o['rounds']['plain'])} alternating rounds): step time ratio "
              f"**{o['overhead_ratio']:.4f}** ({100 * (o['overhead_ratio'] - 1):+.1f}%) at the "
              f"25th-percentile step, {med:.4f} ({100 * (med - 1):+.1f}%) at the median",
              f"* bf16 / fp32 throughput ({res['bf16']['float32']['model']}, 1 rank x all "
              f"cores): **{res['bf16']['ratio']:.3f}** "
              f"({res['bf16']['mixed_bfloat16']['images_per_second']:.2f} vs "
              f"{res['bf16']['float32']['images_per_second']:.2f} img/s); the dense bf16 / "
              f"fp32 matmul ratio on this CPU, the ceiling of that gain: {bf16_ceiling:.2f}",
              "",
              f"## Gradient exchanges ({res['exchanges'][0]['model']}, {n} ranks x 1 core, "
              f"local batch {res['exchanges'][0]['local_batch']})", "",
              "| exchange | s/step | comm s/step (timeline) | exposed comm s/step | overlapped |",
              "| --- | --- | --- | --- | --- |"]
    for r in res["exchanges"]:
        comm, exposed = r["comm_seconds_per_step"], r["exposed_comm_seconds_per_step"]
        hidden = f"{100 * max(0.0, 1 - exposed / comm):.0f}%" if comm > 0 else ""
        name = r["exchange"] + ("" if r.get("compression", "none") == "none"
                                else f" + {r['compression']} wire")
        lines.append(f"| {name} | {r['seconds_per_step']:.3f} | {comm:.3f} | "
                     f"{exposed:.3f} | {hidden} |")
    ref = res["exchange_reference"]
    runs = ref.get("seconds_per_step_runs", [ref["seconds_per_step"]])
    lines += ["", f"Exposed = step time minus the step time of the same {n}-rank job with no "
              f"gradient exchange ({ref['seconds_per_step']:.3f} s/step, the mean of "
              f"{' and '.join(f'{x:.3f}' for x in runs)} measured before and after the "
              "exchanges: same contention, no communication); comm = union of the collective "
              "activities in Horovod's timeline (after negotiation), per step; overlapped = "
              "1 - exposed / comm. Step times are medians of the timed steps; the "
              "reference's drift between its two runs is the error bar of `exposed`."]
    ceiling = corun_efficiency(res)
    if ceiling:
        lines += ["", f"Without any exchange the same {n} ranks reach "
                  f"{' and '.join(f'{100 * e:.1f}%' for e in ceiling)} weak-scaling efficiency "
                  "against the 1 rank x 1 core row (the reference's two runs): the ceiling of "
                  "any exchange on this host, where co-running ranks share caches and memory."]
    if "lockstep_wait_seconds_runs" in ref:
        lines += ["", "Of the exposed time, waiting for the slower rank (each step's time on the "
                  "slowest rank minus the ranks' mean, in the reference's free-running steps; "
                  "`benchmarks.run.lockstep_wait`): "
                  f"{' and '.join(f'{x:.3f}' for x in ref['lockstep_wait_seconds_runs'])} "
                  "s/step."]
    if "pipelines" in res:
        from benchmarks import pipeline as pipe
        lines += ["", "## Input pipeline headroom", "", *pipe.markdown_rows(res["pipelines"])]
    if "peers" in res:
        p = res["peers"]
        lines += ["", "## The peers (images/s ratio to lbsgd, same run)", ""]
        if "not_run" in p or "failed" in p:
            lines.append(f"* {p.get('not_run') or 'failed: ' + p['failed'][-300:]}")
        else:
            lines += [f"* {x}" for x in peer_ratio_lines(p)]
        if "file" in p:
            lines.append(f"* details: `{p['file']}`")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = res["throughput"]
    groups = sorted({(r["model"], r["local_batch"]) for r in rows})
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, (model, batch) in zip(axes[0], groups):
        sel = [r for r in rows if r["model"] == model and r["local_batch"] == batch]
        ax.bar(range(len(sel)), [r["images_per_second"] for r in sel],
               color=["tab:gray", "tab:blue", "tab:green", "tab:red"][:len(sel)])
        ax.set_xticks(range(len(sel)))
        ax.set_xticklabels([r["setup"].replace(", ", "\n") for r in sel], fontsize=7)
        ax.set_ylabel("images/s")
        ax.set_ylim(0, 1.2 * max(r["images_per_second"] for r in sel))   # room for the labels
        ax.set_title(f"{model}, local batch {batch}", fontsize=9)
        for i, r in enumerate(sel):
            label = f"{r['images_per_second']:.1f}"
            if "weak_scaling_efficiency" in r:
                label += f"\n{100 * r['weak_scaling_efficiency']:.0f}%"
            ax.text(i, r["images_per_second"], label, ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
