"""Lee et al.'s four-method comparison (Section VI, Tables II-III, Figures 5 and 10), run here.

Trains `configs/<task>_{best_small,linear_scaling,adaptive_fixed_lr,adaptive}.py`
one after the other under `launch/run.sh -np N` and tabulates, per method:
batch sizes, final and best validation metric, the epoch it converged
(best value before the convergence stop), epochs run, optimizer steps, wall
time, and the gap to the best fixed small batch. The paper's claim to check:
the proposed method comes within ~1% (0.1 dB for PSNR) of the best small
batch, while the fixed large batch falls clearly short.

    .venv/bin/python -m benchmarks.lee_methods --task phantom --np 2
    .venv/bin/python -m benchmarks.lee_methods --task digits --np 2

Writes benchmarks/results/lee_<task>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("best_small", "linear_scaling", "adaptive_fixed_lr", "adaptive")
LABELS = {"best_small": "best fixed small batch", "linear_scaling":
          "fixed large batch, linear scaling + warmup", "adaptive_fixed_lr":
          "adaptive batch, fixed LR", "adaptive": "adaptive batch + adaptive LR (proposed)"}


def run_method(task: str, method: str, np_: int, runs: str) -> dict:
    name = f"{task}_{method}"
    run_dir = os.path.join(runs, name)
    cmd = [os.path.join(ROOT, "launch", "run.sh"), "-np", str(np_), sys.executable, "-m",
           "lbsgd.train", "--config", f"configs/{name}.py", f"--run_dir={run_dir}",
           "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    from lbsgd import efficiency
    run = efficiency.load_run(run_dir)
    return {"method": method, "config": f"configs/{name}.py", "summary": run["summary"],
            "config_json": run["config"], "job_wall_seconds": wall}


def table(task: str, results: list[dict], command: str) -> str:
    metric = "val_psnr" if task == "phantom" else "val_accuracy"
    unit = " dB" if task == "phantom" else ""
    fmt = (lambda v: f"{v:.2f}") if task == "phantom" else (lambda v: f"{100 * v:.2f}%")
    ref = results[0]["summary"]["best"][metric]
    lines = [f"# Lee et al.'s four methods on {task}, measured here", "",
             f"Command: `{command}`", "",
             f"| method | batch | best {metric} | gap to best small | final {metric} | "
             "converged at epoch | epochs run | optimizer steps | train time (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        s = r["summary"]
        best = s["best"][metric]
        conv = s.get("convergence") or {}
        start = s["global_batch"]
        final = (s.get("adaptive") or {}).get("final_batch", start)
        batch = f"{start}" if final == start else f"{start} → {final}"
        gap = best - ref
        gap_s = f"{gap:+.2f}{unit}" if task == "phantom" else f"{100 * gap:+.2f} pts"
        lines.append(
            f"| {LABELS[r['method']]} | {batch} | {fmt(best)} | {gap_s} | "
            f"{fmt(s['final'][metric])} | {conv.get('best_epoch', '')} | {s['epochs']} | "
            f"{s['optimizer_steps']} | {s['total_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lee_methods",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("phantom", "digits"), default="phantom")
    parser.add_argument("--np", type=int, default=2, dest="np_", help="ranks")
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "lee"),
                        help="parent of the four run directories")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="methods to (re)run; the others are taken from the existing "
                             "results file")
    args = parser.parse_args(argv)
    command = f".venv/bin/python -m benchmarks.lee_methods --task {args.task} --np {args.np_}"
    chosen = [m for m in args.methods.split(",") if m]
    bad = [m for m in chosen if m not in METHODS]
    if bad:
        parser.error(f"Field `methods` must name methods of {METHODS}. Received: methods="
                     f"{args.methods!r}")
    previous = {}
    json_path = os.path.join(args.out, f"lee_{args.task}.json")
    if set(chosen) != set(METHODS):
        with open(json_path) as f:
            previous = {r["method"]: r for r in json.load(f)["results"]}
        command += f" (then --methods {args.methods})"
    results = []
    for method in METHODS:
        if method not in chosen:
            results.append(previous[method])
            continue
        print(f"lee_methods: {args.task}_{method} ...", flush=True)
        results.append(run_method(args.task, method, args.np_, args.runs))
        s = results[-1]["summary"]
        print(f"lee_methods: {args.task}_{method}: {s['epochs']} epochs, best {s['best']}, "
              f"{s['total_seconds']:.0f} s", flush=True)
    sys.path.insert(0, ROOT)
    from lbsgd.run import checkpoint as ckpt
    text = table(args.task, results, command)
    ckpt.atomic_write_json(json_path, {"command": command, "results": results})
    ckpt.atomic_write_text(os.path.join(args.out, f"lee_{args.task}.md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
