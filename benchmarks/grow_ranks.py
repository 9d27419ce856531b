"""Workers that grow with the batch against fixed workers: time to accuracy and the restart cost (Lee et al. IV-A).

    .venv/bin/python -m benchmarks.grow_ranks                    # 3 seeds x 2 arms, ~45 min
    .venv/bin/python -m benchmarks.grow_ranks --seeds 0 --task digits --epochs 8  # a check

The reproduction suite's proposed method (Lee et al.: adaptive batch 256 ->
2048 with LR co-scaling, lbsgd.paper.lee_method(task, "adaptive")) trained
twice per seed, in alternating order:

  grow:  launch/run.sh -np 1 -H localhost:2 ... --adaptive.max_ranks=2
         (starts on 1 rank; the first growth checkpoints and the launcher
         resumes the run on 2 ranks)
  fixed: launch/run.sh -np 2 ...

and from each run's history.csv and summary.json: the final test top-1, the
wall time to each target top-1 (restarts included), the whole run's wall
time, the epochs per rank count and the restart seconds. A difference inside
the seeds' spread is inconclusive. A run directory holding a finished run is
reused, so an interrupted invocation continues. Writes
benchmarks/results/grow_ranks.{json,md}. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
sys.path.insert(0, ROOT)

ARMS = {"grow": ["-np", "1", "-H", "localhost:2"], "fixed": ["-np", "2"]}
TARGETS = (0.90, 0.91)
TASKS = ("fashion_mnist", "digits")


def config_file(runs: str, task: str, seed: int) -> str:
    """A config file of the proposed method for `seed` (written once)."""
    path = os.path.join(runs, f"{task}_adaptive_seed{seed}.py")
    if not os.path.exists(path):
        os.makedirs(runs, exist_ok=True)
        with open(path, "w") as f:
            f.write(f'"""Lee et al.\'s proposed method on {task}, seed {seed} '
                    '(benchmarks.grow_ranks)."""\n\nfrom lbsgd.paper import lee_method\n\n\n'
                    f'def get_config():\n    return lee_method("{task}", "adaptive", '
                    f'seed={seed})\n')
    return path


def finished(run_dir: str) -> bool:
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            return json.load(f).get("status") == "completed"
    except (OSError, ValueError):
        return False


def train(arm: str, config: str, run_dir: str, epochs: int = 0) -> None:
    grow = ["--adaptive.max_ranks=2"] if arm == "grow" else []
    grow += [f"--epochs={epochs}"] if epochs else []
    cmd = [os.path.join(ROOT, "launch", "run.sh"), *ARMS[arm], PY, "-m", "lbsgd.train",
           "--config", config, f"--run_dir={run_dir}", "--overwrite", *grow]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=4 * 3600)
    if proc.returncode or not finished(run_dir):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")


def measure(run_dir: str, targets=TARGETS) -> dict:
    """One run's figures from its history.csv and summary.json."""
    with open(os.path.join(run_dir, "history.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    to = {}
    for t in targets:
        hit = next((r for r in rows if float(r["val_accuracy"]) >= t), None)
        to[f"{t:g}"] = float(hit["elapsed_seconds"]) if hit else None
    ranks = {}
    for r in rows:
        ranks[r["ranks"]] = ranks.get(r["ranks"], 0) + 1
    restarts = summary.get("restarts") or {"count": 0, "seconds": 0.0}
    return {"top1": float(rows[-1]["val_accuracy"]),
            "seconds": float(rows[-1]["elapsed_seconds"]),
            "seconds_to": to, "epochs_per_ranks": ranks,
            "final_batch": int(rows[-1]["batch_size"]),
            "restart_seconds": float(restarts["seconds"]), "restarts": int(restarts["count"])}


def spread(values) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals), "n": len(vals),
            "values": vals}


def summarise(per_seed: dict) -> dict:
    """{arm: mean and range over the seeds of each figure}, and the pairwise verdicts:
    'grow slower/faster' only when the arms' ranges do not overlap."""
    out = {}
    for arm in ARMS:
        runs = [per_seed[s][arm] for s in sorted(per_seed) if arm in per_seed[s]]
        out[arm] = {"top1": spread([r["top1"] for r in runs]),
                    "seconds": spread([r["seconds"] for r in runs]),
                    "restart_seconds": spread([r["restart_seconds"] for r in runs]),
                    "seconds_to": {k: spread([r["seconds_to"][k] for r in runs])
                                   for k in (runs[0]["seconds_to"] if runs else {})}}
    verdicts = {}
    g, f = out["grow"], out["fixed"]
    for name, a, b in [("seconds", g["seconds"], f["seconds"]), ("top1", g["top1"], f["top1"])]:
        if not a or not b or min(a["n"], b["n"]) < 2:
            verdicts[name] = "too few seeds"
        elif a["min"] > b["max"]:
            verdicts[name] = "grow higher"
        elif a["max"] < b["min"]:
            verdicts[name] = "grow lower"
        else:
            verdicts[name] = "inconclusive"
    out["verdicts"] = verdicts
    return out


def markdown(res: dict) -> str:
    def pm(st, scale=1.0, fmt="{:.0f}"):
        if not st:
            return "not reached"
        return (f"{fmt.format(scale * st['mean'])} [{fmt.format(scale * st['min'])}–"
                f"{fmt.format(scale * st['max'])}]" + ("" if st["n"] == len(res["seeds"])
                                                      else f" ({st['n']} seeds)"))
    s = res["summary"]
    targets = list(s["fixed"]["seconds_to"])
    lines = [f"# Workers that grow with the batch ({res['task']}, {res['date']})", "",
             f"`{res['command']}` — commit {res['commit']}; seeds "
             f"{', '.join(map(str, res['seeds']))}; the arms alternate in order seed by seed; "
             "mean [min–max] over the seeds; a difference inside the ranges is inconclusive.",
             "", "| arm | test top-1 % | " + " | ".join(f"s to {100 * float(t):g}%"
                                                      for t in targets)
             + " | run s | restart s |",
             "| --- | --- | " + "--- | " * len(targets) + "--- | --- |"]
    for arm in ARMS:
        a = s[arm]
        lines.append(f"| {arm} ({' '.join(ARMS[arm])}) | {pm(a['top1'], 100, '{:.2f}')} | "
                     + " | ".join(pm(a["seconds_to"][t]) for t in targets)
                     + f" | {pm(a['seconds'])} | {pm(a['restart_seconds'], 1, '{:.1f}')} |")
    lines += ["", "Per seed (grow / fixed): " + "; ".join(
        f"seed {sd}: {100 * r['grow']['top1']:.2f} / {100 * r['fixed']['top1']:.2f}%, "
        f"{r['grow']['seconds']:.0f} / {r['fixed']['seconds']:.0f} s, grow's epochs per rank "
        f"count {r['grow']['epochs_per_ranks']}"
        for sd, r in sorted(res["per_seed"].items()) if {"grow", "fixed"} <= set(r)),
        "", f"Verdicts: run time {s['verdicts']['seconds']}, top-1 {s['verdicts']['top1']}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grow_ranks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=TASKS, default="fashion_mnist")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=0,
                        help="override the method's epochs (0: its own; fewer only to check "
                             "the command)")
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "grow_ranks"))
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                      "grow_ranks"))
    parser.add_argument("--plan", action="store_true", help="print the runs to do, run nothing")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        parser.error(f"argument --seeds must list seeds >= 0. Received: --seeds {args.seeds}")
    if args.plan:
        todo = [(s, arm) for s in seeds for arm in ARMS
                if not finished(os.path.join(args.runs, f"{args.task}_{arm}_seed{s}"))]
        print(f"grow_ranks: {args.task}, {len(todo)} runs to do")
        for s, arm in todo:
            print(f"  seed {s} {arm}: launch/run.sh {' '.join(ARMS[arm])} python -m lbsgd.train")
        return 0
    res = {"command": "python -m benchmarks.grow_ranks " + " ".join(argv or sys.argv[1:]),
           "task": args.task, "seeds": seeds, "date": time.strftime("%Y-%m-%d", time.gmtime()),
           "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip(),
           "per_seed": {}}
    t0 = time.perf_counter()
    for seed in seeds:
        config = config_file(args.runs, args.task, seed)
        res["per_seed"][seed] = {}
        for arm in (("grow", "fixed") if seed % 2 == 0 else ("fixed", "grow")):
            run_dir = os.path.join(args.runs, f"{args.task}_{arm}_seed{seed}")
            if not finished(run_dir):
                train(arm, config, run_dir, args.epochs)
            m = measure(run_dir)
            res["per_seed"][seed][arm] = m
            print(f"[{time.perf_counter() - t0:6.0f} s] seed {seed} {arm}: top-1 "
                  f"{100 * m['top1']:.2f}%, {m['seconds']:.0f} s, restarts {m['restarts']} "
                  f"({m['restart_seconds']:.1f} s), epochs per rank count "
                  f"{m['epochs_per_ranks']}", flush=True)
    res["summary"] = summarise(res["per_seed"])
    from lbsgd.run import checkpoint as ckpt
    ckpt.atomic_write_json(args.out + ".json", res)
    text = markdown(res)
    ckpt.atomic_write_text(args.out + ".md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
