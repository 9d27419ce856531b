"""Where a training step's time goes, by kind of op: the convolutions against the matmul peak, and the memory-bound rest (Codreanu et al. V-A).

    python -m benchmarks.profile                          # ResNet-50, 224², batch 8, fp32
    python -m benchmarks.profile --compare --out=benchmarks/results/profile   # fp32 and bf16

Times a plain Keras `fit` in one process (lbsgd's fused BN and fused SGD update, no
exchange), then runs --profile_steps more steps under TensorFlow's profiler and sums
every op's time from the profile (its XSpace, read with the protobuf TensorFlow ships)
by kind: the convolutions' forward, backward-data and backward-filter passes (each with
its GFLOP/s: 2 x the multiply-adds of the model's Conv2D layers x the batch, over its
time), batch norm forward and backward, the elementwise ops (ReLU, adds, casts), the
SGD update, and the rest. The step's training GFLOP/s (3 x the forward FLOPs, as
benchmarks.run counts them) over the summed op time, against the dense matmul peak
measured in the same run, and the same fraction if everything but the convolutions took
no time: what the convolutions alone allow. The convolutions are also grouped by shape
(kernel/stride → output side; each op is its layer's by its name's scopes), each pass
with its time and GFLOP/s, to show which layers fall short of the peak.

--compare profiles float32 and mixed_bfloat16 in alternating rounds (f, b, b, f, ...)
and prints each kind's bf16 / fp32 speed-up, the step's, and the step's ceiling at these
convolutions: fp32's op time over bf16's convolution time alone.

benchmarks.throughput's flags set the job (--model, --local_batch, --image_size,
--num_classes, --dtype_policy, --fused_bn, --fused_update, --warmup_steps, --steps,
--rounds); its exchange flags do not apply (one process, no exchange). Prints a table per
dtype and one JSON line; --out writes <out>.json and <out>.md.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from benchmarks import throughput  # noqa: E402  (its flags: model, batch, dtype, BN, update)

flags.DEFINE_bool("compare", False, "Profile float32 and mixed_bfloat16 in alternating rounds.")
flags.DEFINE_integer("profile_steps", 3, "Steps under the profiler, per round.")
flags.DEFINE_bool("peak", True, "Measure the dense matmul peaks (fp32, and bf16 with "
                  "--compare) in this run; --nopeak leaves the fractions of peak out.")
flags.DEFINE_string("out", "", "Write <out>.json and <out>.md.")
FLAGS = flags.FLAGS

KINDS = ("conv_forward", "conv_backward_data", "conv_backward_filter", "bn_forward",
         "bn_backward", "elementwise", "update", "other")
CONV_KINDS = KINDS[:3]
LABELS = {"conv_forward": "convolution forward", "conv_backward_data":
          "convolution backward-data", "conv_backward_filter": "convolution backward-filter",
          "bn_forward": "batch norm forward", "bn_backward": "batch norm backward",
          "elementwise": "elementwise (ReLU, adds, casts)", "update": "SGD update",
          "other": "other ops"}
_ELEMENTWISE = {"Relu", "ReluGrad", "AddV2", "Add", "AddN", "Sub", "Mul", "Cast",
                "BiasAdd", "BiasAddGrad", "Neg", "Square", "Maximum", "Minimum"}


def kind_of(op_type: str) -> str:
    """The kind (KINDS) of a TensorFlow op type, oneDNN's rewrites (`_MklNative…`,
    `_Mkl…`) counted as the op they replace."""
    base = op_type
    for prefix in ("_MklNative", "_Mkl", "_"):
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    if base.startswith(("Conv2DBackpropFilter", "DepthwiseConv2dNativeBackpropFilter")):
        return "conv_backward_filter"
    if base.startswith(("Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropInput")):
        return "conv_backward_data"
    if base.startswith(("Conv2D", "FusedConv2D", "DepthwiseConv2dNative")):
        return "conv_forward"
    if base.startswith("FusedBatchNormGrad"):
        return "bn_backward"
    if base.startswith("FusedBatchNorm"):
        return "bn_forward"
    if base.startswith("ResourceApply"):
        return "update"
    if base in _ELEMENTWISE:
        return "elementwise"
    return "other"


def op_type_of(event_name: str) -> str | None:
    """The op type of a profiler event named `op name:OpType`; None for the executor's
    own annotations (`ExecutorState::Process`, `StartRegion`, ...)."""
    name, sep, op_type = event_name.rpartition(":")
    if not sep or not name or "::" in event_name or not op_type.isidentifier() \
            or not (op_type[0].isupper() or op_type[0] == "_"):
        return None
    return op_type


def op_events(xspace_path: str) -> dict[str, list]:
    """{op name: [op type, count, seconds]} of the TensorFlow ops run on the executor's
    threads in a profile (op_type_of)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(xspace_path, "rb") as f:
        space.ParseFromString(f.read())
    out: dict[str, list] = {}
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = names[event.metadata_id].name
                op_type = op_type_of(name)
                if op_type is None:
                    continue
                c = out.setdefault(name.rpartition(":")[0], [op_type, 0, 0.0])
                c[1] += 1
                c[2] += event.duration_ps / 1e12
    return out


def op_seconds(events: dict[str, list]) -> dict[str, tuple[int, float]]:
    """{op type: (count, seconds)} of op_events."""
    out: dict[str, list] = {}
    for op_type, n, s in events.values():
        c = out.setdefault(op_type, [0, 0.0])
        c[0] += n
        c[1] += s
    return {k: (n, s) for k, (n, s) in out.items()}


def layer_of(op_name: str, layer_names) -> str | None:
    """The layer of `layer_names` an op belongs to, from its name's scopes (Keras adds
    `_<n>` to a layer's scope: `.../gradient_tape/resnet50_1/res2a_branch2a_1/convolution/
    Conv2DBackpropFilter` is res2a_branch2a's); None if no scope names one."""
    for scope in op_name.split("/"):
        if scope in layer_names:
            return scope
        base, sep, n = scope.rpartition("_")
        if sep and n.isdigit() and base in layer_names:
            return base
    return None


def conv_layer_seconds(events: dict[str, list], layer_names) -> dict[str, dict[str, float]]:
    """{layer: {convolution kind: seconds}} of the convolution passes in op_events."""
    out: dict[str, dict[str, float]] = {}
    for name, (op_type, _, s) in events.items():
        kind = kind_of(op_type)
        layer = layer_of(name, layer_names) if kind in CONV_KINDS else None
        if layer is not None:
            per = out.setdefault(layer, {})
            per[kind] = per.get(kind, 0.0) + s
    return out


def by_kind(ops: dict[str, tuple[int, float]], steps: int) -> dict[str, dict]:
    """Per step: each kind's op count and seconds."""
    res = {k: {"ops": 0, "seconds": 0.0} for k in KINDS}
    for op_type, (n, s) in ops.items():
        r = res[kind_of(op_type)]
        r["ops"] += n / steps
        r["seconds"] += s / steps
    return res


def conv_flops(model, batch: int) -> dict:
    """FLOPs per step of the three convolution passes (2 x multiply-adds; backward-data
    leaves out the stem, whose input is the image), training FLOPs (3 x forward,
    Conv2D and Dense layers, as benchmarks.run counts them), and each Conv2D layer's
    shape (`<kernel>/<stride> → <output side>`) and FLOPs of one pass."""
    import keras
    convs, dense, layers = [], 0, {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k, o = layer.kernel.shape, layer.output.shape
            convs.append(2 * batch * o[1] * o[2] * k[0] * k[1] * k[2] * k[3])
            layers[layer.name] = {"shape": f"{k[0]}x{k[1]}/{layer.strides[0]} → "
                                           f"{o[1]}x{o[2]}", "flops": convs[-1]}
        elif isinstance(layer, keras.layers.Dense):
            dense += 2 * batch * layer.kernel.shape[0] * layer.kernel.shape[1]
    forward = sum(convs)
    return {"conv_forward": forward, "conv_backward_data": forward - convs[0],
            "conv_backward_filter": forward, "conv_layers": len(convs),
            "train": 3 * (forward + dense), "layers": layers}


def _profile_round(dtype: str, batch: int) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    model, _ = throughput.build(False, dtype)
    rng = np.random.default_rng(0)
    x = rng.random((batch, FLAGS.image_size, FLAGS.image_size, 3), np.float32)
    y = rng.integers(0, FLAGS.num_classes, batch)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    step_times = throughput.step_times(model, [], ds, FLAGS.steps, FLAGS.warmup_steps)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            model.fit(ds, steps_per_epoch=FLAGS.profile_steps, epochs=1, verbose=0)
        finally:
            tf.profiler.experimental.stop()
        (path,) = [os.path.join(d, f) for d, _, fs in os.walk(logdir) for f in fs
                   if f.endswith(".xplane.pb")]
        events = op_events(path)
    ops = op_seconds(events)
    kinds = by_kind(ops, FLAGS.profile_steps)
    flops = conv_flops(model, batch)
    layers = {layer: {k: s / FLAGS.profile_steps for k, s in per.items()}
              for layer, per in conv_layer_seconds(events, flops["layers"]).items()}
    keras.backend.clear_session()
    return {"dtype_policy": dtype, "step_seconds": float(np.median(step_times)),
            "op_seconds": sum(k["seconds"] for k in kinds.values()), "kinds": kinds,
            "op_types": {t: [n / FLAGS.profile_steps, s / FLAGS.profile_steps]
                         for t, (n, s) in sorted(ops.items(), key=lambda kv: -kv[1][1])},
            "conv_layer_seconds": layers, "flops": flops}


def summarize(rounds: list[dict], peak: float | None) -> dict:
    """One dtype's rounds: each kind's median seconds per step and ops, the convolutions'
    GFLOP/s, the step's training GFLOP/s over its op time and the fractions of `peak`."""
    flops = rounds[0]["flops"]
    kinds = {}
    for k in KINDS:
        sec = statistics.median(r["kinds"][k]["seconds"] for r in rounds)
        kinds[k] = {"seconds": sec, "ops": rounds[0]["kinds"][k]["ops"]}
        if k in CONV_KINDS and sec > 0:
            kinds[k]["gflops"] = flops[k] / sec / 1e9
    op_s = statistics.median(r["op_seconds"] for r in rounds)
    step_s = statistics.median(r["step_seconds"] for r in rounds)
    conv_s = sum(kinds[k]["seconds"] for k in CONV_KINDS)
    res = {"rounds": rounds, "kinds": kinds, "op_seconds": op_s,
           "op_seconds_each_round": [r["op_seconds"] for r in rounds],
           "step_seconds_each_round": [r["step_seconds"] for r in rounds],
           "conv_seconds": conv_s, "conv_share": conv_s / op_s,
           "step_seconds": step_s, "ops_share_of_step": op_s / step_s,
           "train_gflops": flops["train"] / op_s / 1e9,
           "train_gflops_step": flops["train"] / step_s / 1e9,
           "train_gflops_convs_only": flops["train"] / conv_s / 1e9}
    res["conv_shapes"] = conv_shapes(rounds)
    if peak:
        res["fraction_of_peak"] = res["train_gflops"] / peak
        res["fraction_of_peak_step"] = res["train_gflops_step"] / peak
        res["fraction_of_peak_convs_only"] = res["train_gflops_convs_only"] / peak
        for k in CONV_KINDS:
            if "gflops" in kinds[k]:
                kinds[k]["fraction_of_peak"] = kinds[k]["gflops"] / peak
    return res


def conv_shapes(rounds: list[dict]) -> dict[str, dict]:
    """The convolutions grouped by shape (conv_flops' `<kernel>/<stride> → <output side>`,
    in the model's order): the layers, and each pass's median seconds per step over the
    rounds and GFLOP/s."""
    layers = rounds[0]["flops"]["layers"]
    groups: dict[str, list[str]] = {}
    for name, info in layers.items():
        groups.setdefault(info["shape"], []).append(name)
    out: dict[str, dict] = {}
    for shape, names in groups.items():
        g = out[shape] = {"layers": len(names), "names": names}
        for k in CONV_KINDS:
            sec = statistics.median(sum(r["conv_layer_seconds"].get(n, {}).get(k, 0.0)
                                        for n in names) for r in rounds)
            flops = sum(layers[n]["flops"] for n in names
                        if k in rounds[0]["conv_layer_seconds"].get(n, {}))
            g[k] = {"seconds": sec} | ({"gflops": flops / sec / 1e9} if sec > 0 else {})
    return out


def compare(fp32: dict, bf16: dict) -> dict:
    """bf16 / fp32 speed-ups of each kind, of the convolutions, of the rest and of the step
    (op time), and the step's ceiling at these convolutions (the rest taking no time)."""
    speedup = {k: fp32["kinds"][k]["seconds"] / bf16["kinds"][k]["seconds"]
               for k in KINDS if bf16["kinds"][k]["seconds"] > 0}
    return {"kinds": speedup,
            "convolutions": fp32["conv_seconds"] / bf16["conv_seconds"],
            "rest": (fp32["op_seconds"] - fp32["conv_seconds"])
            / (bf16["op_seconds"] - bf16["conv_seconds"]),
            "step": fp32["op_seconds"] / bf16["op_seconds"],
            "step_unprofiled": fp32["step_seconds"] / bf16["step_seconds"],
            "ceiling_rest_free": fp32["op_seconds"] / bf16["conv_seconds"]}


def markdown(res: dict) -> str:
    lines = [f"# Where a training step's time goes: {res['model']}, {res['image_size']}², "
             f"batch {res['local_batch']}, 1 process × {res['threads']} threads", "",
             f"Command: `{res['command']}` — {res['minutes']:.1f} min, every number from "
             f"this one run ({res['rounds']} round(s) per dtype, "
             f"{res['profile_steps']} profiled steps each; medians over the rounds).", ""]
    peaks = res.get("peaks", {})
    if peaks:
        lines += ["Dense matmul peak measured in the run (the fastest of 7 multiplies of "
                  "4096², the higher of the run's start and end): " + ", ".join(
                      f"{d} {g:.0f} GFLOP/s" for d, g in peaks.items()) + ".", ""]
    for dtype, d in res["dtypes"].items():
        lines += [f"## {dtype}", "", "| kind | ops/step | s/step | share | GFLOP/s | of peak |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for k in KINDS:
            r = d["kinds"][k]
            g = f"{r['gflops']:.0f}" if "gflops" in r else ""
            p = f"{100 * r['fraction_of_peak']:.0f}%" if "fraction_of_peak" in r else ""
            lines.append(f"| {LABELS[k]} | {r['ops']:.0f} | {r['seconds']:.3f} | "
                         f"{100 * r['seconds'] / d['op_seconds']:.0f}% | {g} | {p} |")
        lines.append(f"| **all ops** | | {d['op_seconds']:.3f} | 100% | "
                     f"{d['train_gflops']:.0f} | "
                     + (f"{100 * d['fraction_of_peak']:.0f}% |" if "fraction_of_peak" in d
                        else "|"))
        rounds = ", ".join(f"{s:.3f}" for s in d["op_seconds_each_round"])
        wall = ", ".join(f"{s:.3f}" for s in d["step_seconds_each_round"])
        lines += ["", f"* op time per step in each round: {rounds} s; the same model's "
                  f"step without the profiler (median of {res['steps']} steps before it): "
                  f"{wall} s; the ops sum to {100 * d['ops_share_of_step']:.0f}% of it (the "
                  f"profiler adds to each op's time; under 100%, the rest is the "
                  f"framework's own)",
                  f"* training GFLOP/s by the unprofiled step: {d['train_gflops_step']:.0f}"
                  + (f" ({100 * d['fraction_of_peak_step']:.0f}% of the peak)"
                     if "fraction_of_peak_step" in d else ""),
                  f"* convolutions: {100 * d['conv_share']:.0f}% of the op time; training "
                  f"GFLOP/s if everything else took no time: "
                  f"{d['train_gflops_convs_only']:.0f}"
                  + (f" ({100 * d['fraction_of_peak_convs_only']:.0f}% of the peak)"
                     if "fraction_of_peak_convs_only" in d else ""), ""]
        lines += ["Convolutions by shape (kernel/stride → output side), ms per step and "
                  "GFLOP/s:", "",
                  "| shape | layers | forward | backward-data | backward-filter |",
                  "| --- | --- | --- | --- | --- |"]
        for shape, g in d["conv_shapes"].items():
            cells = [f"{1e3 * g[k]['seconds']:.1f} ms, {g[k]['gflops']:.0f}"
                     if "gflops" in g[k] else "" for k in CONV_KINDS]
            lines.append(f"| {shape} | {g['layers']} | " + " | ".join(cells) + " |")
        lines.append("")
    if "bf16_over_fp32" in res:
        c = res["bf16_over_fp32"]
        lines += ["## bf16 / fp32", "",
                  "| kind | speed-up |", "| --- | --- |"]
        lines += [f"| {LABELS[k]} | {c['kinds'][k]:.2f}x |" for k in KINDS if k in c["kinds"]]
        lines += ["", f"* convolutions {c['convolutions']:.2f}x, everything else "
                  f"{c['rest']:.2f}x; the step {c['step']:.2f}x by op time, "
                  f"{c['step_unprofiled']:.2f}x by unprofiled step time",
                  f"* the step's ceiling at these convolutions (fp32's op time over bf16's "
                  f"convolution time alone, as if everything else took no time): "
                  f"**{c['ceiling_rest_free']:.2f}x**"]
        if "bf16_over_fp32_matmul" in res:
            lines.append(f"* the dense bf16 / fp32 matmul ratio measured in this run: "
                         f"{res['bf16_over_fp32_matmul']:.2f}x")
        lines.append("")
    return "\n".join(lines)


def main(argv):
    del argv
    from benchmarks import run as suite
    from lbsgd.parallel import runtime

    for name in ("exchange", "compression", "mode", "step_stamps", "bucket_mb"):
        if FLAGS[name].present:
            raise app.UsageError(f"Flag `{name}` does not apply to benchmarks.profile (one "
                                 f"process, no exchange). Received: {name}={FLAGS[name].value}")
    for name in ("rounds", "steps", "profile_steps", "local_batch"):
        if getattr(FLAGS, name) < 1:
            raise app.UsageError(f"Flag `{name}` must be >= 1. "
                                 f"Received: {name}={getattr(FLAGS, name)}")
    start = time.time()
    rt = runtime.init()
    dtypes = ("float32", "mixed_bfloat16") if FLAGS.compare else (FLAGS.dtype_policy,)
    peak_dtypes = {"float32": "float32", "mixed_bfloat16": "bfloat16"}
    peaks_runs = []

    def measure_peaks():
        if FLAGS.peak:
            peaks_runs.append({d: suite.matmul_peak(rt.intra_op_threads, peak_dtypes.get(d,
                                                                                        "float32"))
                               for d in dtypes})
    measure_peaks()
    rounds = {d: [] for d in dtypes}
    for r in range(FLAGS.rounds):
        for d in (dtypes if r % 2 == 0 else dtypes[::-1]):
            rounds[d].append(_profile_round(d, FLAGS.local_batch))
            print(f"round {r + 1}/{FLAGS.rounds} {d}: {rounds[d][-1]['op_seconds']:.3f} s of "
                  f"ops per step", flush=True)
    measure_peaks()
    peaks = {d: max(p[d] for p in peaks_runs) for d in dtypes} if peaks_runs else {}
    res = {"model": FLAGS.model, "image_size": FLAGS.image_size,
           "local_batch": FLAGS.local_batch, "threads": rt.intra_op_threads,
           "rounds": FLAGS.rounds, "steps": FLAGS.steps, "profile_steps": FLAGS.profile_steps,
           "fused_bn": FLAGS.fused_bn, "fused_update": FLAGS.fused_update,
           "command": " ".join(["python -m benchmarks.profile", *sys.argv[1:]]),
           "peaks": peaks, "peaks_runs": peaks_runs,
           "dtypes": {d: summarize(rounds[d], peaks.get(d)) for d in dtypes}}
    if FLAGS.compare:
        res["bf16_over_fp32"] = compare(res["dtypes"]["float32"],
                                        res["dtypes"]["mixed_bfloat16"])
        if peaks:
            res["bf16_over_fp32_matmul"] = peaks["mixed_bfloat16"] / peaks["float32"]
    res["minutes"] = (time.time() - start) / 60
    text = markdown(res)
    print(text, flush=True)
    if FLAGS.out:
        from lbsgd.run import checkpoint as ckpt
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        ckpt.atomic_write_json(FLAGS.out + ".json", res)
        ckpt.atomic_write_text(FLAGS.out + ".md", text)
    print(json.dumps({k: v for k, v in res.items() if k != "dtypes"}
                     | {"summary": {d: {k: v for k, v in s.items() if k != "rounds"}
                                    for d, s in res["dtypes"].items()}}), flush=True)


if __name__ == "__main__":
    app.run(main)
