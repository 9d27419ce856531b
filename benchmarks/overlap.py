"""Exposed communication of each gradient exchange, on one machine and across shaped links (Lee et al. IV-B).

    .venv/bin/python -m benchmarks.overlap --only local:resnet20,local:resnet50,1gbit:resnet50
    .venv/bin/python -m benchmarks.overlap --links local --models resnet20 --rounds 2

For each link ("local": 2 ranks on this machine through launch/run.sh; a tc
rate such as "1gbit": launch/cluster.sh's 2 namespace hosts, one rank and
half the cores each, both directions of each host's cable shaped) and each
model, every exchange runs once per round as its own 2-rank job of
benchmarks.throughput (lbsgd's stack, synthetic data), in an order that
rotates by one every round, next to the same job with no exchange at all
(each rank keeps its own gradient: the compute-only step, the same
contention, no communication). Per round:

  exposed communication = step time (exchange) - step time (no exchange)

and the allreduce time is the communication per step in Horovod's timeline
of the grouped exchange (one allreduce of every gradient after backprop: the
time the overlapped exchanges try to hide). The report gives each exchange's
median over the rounds with its range, and exposed / allreduce time. A
difference inside the rounds' ranges is noise, not a result.

Writes benchmarks/results/overlap.{json,md}. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
sys.path.insert(0, ROOT)

from benchmarks import many_hosts as MH  # noqa: E402
from benchmarks.run import _env, _json_line, timeline_comm_seconds  # noqa: E402

MODELS = {"resnet20": dict(image_size=32, num_classes=10, local_batch=64, steps=20, warmup=3),
          "resnet50": dict(image_size=224, num_classes=1000, local_batch=8, steps=6, warmup=2)}
SMOKE = dict(image_size=32, num_classes=10, local_batch=16, steps=3, warmup=2)   # --smoke
EXCHANGES = ("none", "grouped", "per_tensor", "overlap", "overlap_reducescatter")


def step(model: str, spec: dict, link: str, exchange: str, bucket_mb: float,
         timeline: str | None = None, extra_args=()) -> dict:
    """One 2-rank job's record (seconds per step: the median of its timed steps); with
    `timeline`, Horovod's timeline written there and its communication per step."""
    args = ["-m", "benchmarks.throughput", f"--model={model}",
            f"--local_batch={spec['local_batch']}", f"--image_size={spec['image_size']}",
            f"--num_classes={spec['num_classes']}", f"--steps={spec['steps']}",
            f"--warmup_steps={spec['warmup']}", f"--exchange={exchange}",
            f"--bucket_mb={bucket_mb}", *extra_args]
    hosts = ["-H", ",".join(f"{h}:1" for h in MH.HOSTS)] if link != "local" else []
    env = _env(**({"HOROVOD_TIMELINE": timeline} if timeline else {}))
    cmd = [os.path.join(ROOT, "launch", "run.sh"), "-np", "2", *hosts, PY, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    out = _json_line(proc.stdout)
    if timeline:
        comm = timeline_comm_seconds(timeline)
        out["comm_seconds_per_step"] = comm["comm_seconds"] / (spec["steps"] + spec["warmup"])
    return out


def rotated(items, r: int) -> list:
    """`items` starting at position r (mod its length): round r's order."""
    r %= len(items)
    return list(items[r:]) + list(items[:r])


def summarise(rounds: list[dict]) -> dict:
    """{exchange: step and exposed seconds (median, min, max)} and the allreduce time,
    from per-round {exchange: record}."""
    def stats(values):
        return {"median": statistics.median(values), "min": min(values), "max": max(values),
                "values": values}
    out = {"allreduce_seconds": stats([r["grouped"]["comm_seconds_per_step"] for r in rounds]),
           "exchanges": {}}
    allreduce = out["allreduce_seconds"]["median"]
    for ex in rounds[0]:
        entry = {"seconds_per_step": stats([r[ex]["seconds_per_step"] for r in rounds])}
        if ex != "none":
            exposed = [r[ex]["seconds_per_step"] - r["none"]["seconds_per_step"] for r in rounds]
            entry["exposed_seconds"] = stats(exposed)
            entry["exposed_of_allreduce"] = statistics.median(exposed) / allreduce
        out["exchanges"][ex] = entry
    return out


def markdown(res: dict) -> str:
    lines = [f"# Exposed communication per gradient exchange ({res['date']})", "",
             f"`{res['command']}` — commit {res['commit']}, {res['rounds']} rounds, each "
             "exchange one 2-rank job per round in a rotating order; bucket "
             f"{res['bucket_mb']:g} MiB; {res['minutes']:.0f} min.", "",
             "Exposed = step time − step time of the same job with no exchange, per round; "
             "allreduce time = the grouped exchange's communication per step in Horovod's "
             "timeline. Median [min–max] over the rounds.", "",
             "| link | model (local batch) | exchange | s/step | exposed s/step | "
             "exposed / allreduce |", "| --- | --- | --- | --- | --- | --- |"]

    def rng(st, fmt="{:.3f}"):
        return f"{fmt.format(st['median'])} [{fmt.format(st['min'])}–{fmt.format(st['max'])}]"
    for m in res["measurements"]:
        s = m["summary"]
        ar = s["allreduce_seconds"]
        for ex, e in s["exchanges"].items():
            exposed = rng(e["exposed_seconds"], "{:+.3f}") if "exposed_seconds" in e else "—"
            frac = f"{100 * e['exposed_of_allreduce']:.0f}%" if "exposed_of_allreduce" in e \
                else f"allreduce {rng(ar)} s"
            lines.append(f"| {m['link']} | {m['model']} ({m['local_batch']}) | {ex} | "
                         f"{rng(e['seconds_per_step'])} | {exposed} | {frac} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overlap",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--links", default="local,1gbit",
                        help="'local' and/or tc rates such as 1gbit, comma-separated")
    parser.add_argument("--models", default="resnet20,resnet50")
    parser.add_argument("--only", default="",
                        help="measure only these link:model pairs of the links x models, "
                             "e.g. local:resnet20,local:resnet50,1gbit:resnet50")
    parser.add_argument("--exchanges", default=",".join(EXCHANGES[1:]),
                        help="exchanges next to 'none' (which always runs); grouped is needed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bucket_mb", type=float, default=4.0)
    parser.add_argument("--plan", action="store_true", help="print the jobs to run, run nothing")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps of a small batch: checks the command, measures nothing")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "overlap"))
    args = parser.parse_args(argv)
    links = [x for x in args.links.split(",") if x]
    models = [x for x in args.models.split(",") if x]
    exchanges = ["none"] + [x for x in args.exchanges.split(",") if x and x != "none"]
    from lbsgd.config import EXCHANGES as KNOWN
    for flag, values, ok in (("--links", links,
                              lambda x: x == "local" or re.fullmatch(r"[0-9]+[kmg]?bit", x)),
                             ("--models", models, lambda x: x in MODELS),
                             ("--exchanges", exchanges[1:], lambda x: x in KNOWN)):
        bad = [v for v in values if not ok(v)]
        if not values or bad:
            parser.error(f"argument {flag}: {', '.join(bad) or '(none)'} not allowed "
                         f"(given {','.join(values)!r})")
    only = [tuple(x.split(":", 1)) for x in args.only.split(",") if x]
    bad = [":".join(p) for p in only if len(p) != 2 or p[0] not in links or p[1] not in models]
    if bad:
        parser.error(f"argument --only: {', '.join(bad)} not a link:model of --links and "
                     "--models")
    if "grouped" not in exchanges:
        parser.error("argument --exchanges must include grouped: its allreduce time is the "
                     "reference")
    if args.rounds < 2:
        parser.error(f"argument --rounds must be >= 2 (a spread). Received: {args.rounds}")
    shaped = [x for x in links if x != "local"]
    if shaped and os.geteuid() != 0:
        parser.error(f"links {','.join(shaped)} need root: launch/cluster.sh's namespace hosts")
    pairs = [(link, model) for link in links for model in models
             if not only or (link, model) in only]
    if args.plan:
        print(f"overlap: {len(pairs)} link:model pairs x {args.rounds} rounds x "
              f"{len(exchanges)} exchanges = {len(pairs) * args.rounds * len(exchanges)} jobs")
        for link, model in pairs:
            print(f"  {link}:{model}: {', '.join(exchanges)}")
        return 0
    t0 = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    res = {"command": "python -m benchmarks.overlap " + " ".join(argv or sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d", time.gmtime()), "rounds": args.rounds,
           "bucket_mb": args.bucket_mb, "measurements": [],
           "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip()}
    if shaped:
        MH._cluster("up", str(len(MH.HOSTS)), "--cpus-per-host",
                    str(max(1, (os.cpu_count() or 1) // len(MH.HOSTS))))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for link in links:
                if link != "local" and any(p[0] == link for p in pairs):
                    MH._cluster("shape", "--link", link)
                for model in models:
                    if (link, model) not in pairs:
                        continue
                    spec = SMOKE if args.smoke else MODELS[model]
                    rounds = []
                    for r in range(args.rounds):
                        got = {}
                        for ex in rotated(exchanges, r):
                            tl = os.path.join(tmp, f"tl_{link}_{model}_{r}.json") \
                                if ex == "grouped" else None
                            got[ex] = step(model, spec, link, ex, args.bucket_mb, tl)
                            log(f"{link} {model} round {r + 1} {ex}: "
                                f"{got[ex]['seconds_per_step']:.3f} s/step")
                        rounds.append({ex: got[ex] for ex in exchanges})
                    res["measurements"].append({"link": link, "model": model,
                                                "local_batch": spec["local_batch"],
                                                "rounds": rounds,
                                                "summary": summarise(rounds)})
    finally:
        if shaped:
            MH._cluster("down")
    res["minutes"] = (time.perf_counter() - t0) / 60
    from lbsgd.run import checkpoint as ckpt
    ckpt.atomic_write_json(args.out + ".json", res)
    text = markdown(res)
    ckpt.atomic_write_text(args.out + ".md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
