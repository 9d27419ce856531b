"""Where the overlapped exchange's step time goes, from Horovod's timeline, and what a host with a spare core would gain (Lee et al. IV-B).

    .venv/bin/python -m benchmarks.overlap_timeline                 # 1gbit, ResNet-50, 2 rounds
    .venv/bin/python -m benchmarks.overlap_timeline --link local --model resnet20 --smoke

On launch/cluster.sh's 2 namespace hosts (one rank and one core each, the
link shaped to --link), each round runs three 2-rank jobs of
benchmarks.throughput in a rotating order: no exchange (the compute-only
step), `grouped` (one allreduce after backprop, with nothing else on the
core: its timeline gives the link's uncontended rate) and `overlap` with
Horovod's timeline and rank 0's step windows (`--step_stamps`). Each timed
step of `overlap` is split into

  exposed = step(overlap) - step(none) = tail + slowdown
  tail     = last bucket's allreduce end - the last gradient ready on both
             ranks (communication the update waits for)
  slowdown = the rest: forward, backprop and update made slower by the
             exchange sharing the core (Horovod's background thread, MPI's
             TCP progress, memcpy into the fusion buffer)

and the buckets' ready times (both ranks' requests seen by the coordinator)
are replayed through a model of a host with a spare core: the exchange runs
on its own core, so the compute is not slowed, and the buckets go over the
link one after another at the uncontended rate measured by `grouped` in the
same round, each starting when it is ready and the link is free. The
model's exposed time is its tail; it is a model from measured inputs, not a
measurement on such a host (this machine has 2 cores).

Writes benchmarks/results/overlap_timeline.{json,md,png}. Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
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
from benchmarks.overlap import MODELS, SMOKE, rotated, step  # noqa: E402
from benchmarks.run import read_timeline, union_seconds  # noqa: E402

JOBS = ("none", "grouped", "overlap")


def collectives(events: list[dict]) -> list[dict]:
    """Every collective in a timeline: bucket key, ready time per rank, activity span.

    Times are microseconds since the epoch (the timeline's start plus its
    offsets). A grouped allreduce's tensors share a bucket key (their name
    without the "_<k>of<n>" suffix). Each tensor's NEGOTIATE_* span begins
    when the coordinator (rank 0) first sees a request for it and ends when
    every rank has requested it (after the first step Horovod's response
    cache drops the per-rank marks inside it): "ready" = {"first": its
    begin, "both": its end}. Its collective activity is the next top-level
    span after the negotiation.
    """
    start = next(e["args"]["start_time_since_epoch_in_micros"] for e in events
                 if e.get("ph") == "M" and "start_time_since_epoch_in_micros" in
                 e.get("args", {}))
    names = {e["pid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name" and "name" in e["args"]}
    stacks, ready, out = {}, {}, []
    for e in events:
        ph, pid = e.get("ph"), e.get("pid")
        if ph == "B":
            stacks.setdefault(pid, []).append((e.get("name", ""), e["ts"]))
        elif ph == "E" and stacks.get(pid):
            name, began = stacks[pid].pop()
            if stacks[pid]:
                continue
            if name.startswith("NEGOTIATE"):
                ready[pid] = {"first": start + began, "both": start + e["ts"]}
                continue
            key = re.sub(r"_\d+of\d+$", "", names.get(pid, str(pid)))
            out.append({"bucket": key, "kind": name, "ready": ready.pop(pid, {}),
                        "begin": start + began, "end": start + e["ts"]})
    return out


def step_buckets(colls: list[dict], begin: float, end: float) -> list[dict]:
    """The buckets of the step [begin, end] in the order they became ready on every rank,
    times in seconds since `begin`: "first" (the coordinator's first request of the
    bucket's last tensor), "ready" (every rank's), "begin"/"end" of its collective."""
    by = {}
    for c in colls:
        if not c["ready"] or not begin <= c["ready"]["both"] <= end:
            continue
        b = by.setdefault(c["bucket"], dict(c["ready"], begin=c["begin"], end=c["end"]))
        b["first"] = max(b["first"], c["ready"]["first"])
        b["both"] = max(b["both"], c["ready"]["both"])
        b["begin"], b["end"] = min(b["begin"], c["begin"]), max(b["end"], c["end"])
    out = [{"bucket": key, "first": (b["first"] - begin) / 1e6,
            "ready": (b["both"] - begin) / 1e6, "begin": (b["begin"] - begin) / 1e6,
            "end": (b["end"] - begin) / 1e6} for key, b in by.items()]
    return sorted(out, key=lambda b: b["ready"])


def spare_core_tail(ready: list[float], seconds: list[float]) -> float:
    """Communication left after the last bucket is ready when the buckets go over the link
    one after another, each when it is ready and the link free, taking `seconds`."""
    free = 0.0
    for t, d in zip(ready, seconds):
        free = max(free, t) + d
    return max(0.0, free - max(ready)) if ready else 0.0


def breakdown(colls: list[dict], stamps: dict, none_step: float, rate: float) -> dict:
    """Each timed step of the overlapped exchange split into tail and slowdown, and the
    spare-core model's tail, from its collectives, rank 0's step windows and bucket bytes,
    the compute-only step (s) and the uncontended link rate (bytes/s)."""
    steps = []
    for begin, end in stamps["steps"][stamps["warmup_steps"]:]:
        bks = step_buckets(colls, begin, end)
        if not bks:
            continue
        step = (end - begin) / 1e6
        last_ready = max(b["ready"] for b in bks)
        comm_end = max(b["end"] for b in bks)
        tail = max(0.0, comm_end - last_ready)
        sizes = stamps["bucket_bytes"]
        seconds = [s / rate for s in sizes] if len(sizes) == len(bks) else \
            [stamps["gradient_bytes"] / len(bks) / rate] * len(bks)
        model_tail = spare_core_tail([b["ready"] for b in bks], seconds)
        steps.append({"seconds": step, "first_ready": min(b["ready"] for b in bks),
                      "last_ready": last_ready,
                      "last_ready_skew": bks[-1]["ready"] - bks[-1]["first"],
                      "comm_end": comm_end,
                      "comm": union_seconds([(b["begin"], b["end"]) for b in bks]),
                      "comm_uncontended": sum(seconds),
                      "queued": sum(max(0.0, b["begin"] - b["ready"]) for b in bks),
                      "tail": tail, "exposed": step - none_step,
                      "slowdown": step - none_step - tail, "spare_core_tail": model_tail,
                      "buckets": bks})
    if not steps:
        raise ValueError("no timed step of the timeline holds a collective")

    def med(k):
        return statistics.median(s[k] for s in steps)
    keys = ("seconds", "first_ready", "last_ready", "last_ready_skew", "comm_end", "comm",
            "comm_uncontended", "queued", "tail", "exposed", "slowdown", "spare_core_tail")
    return {"median": {k: med(k) for k in keys}, "steps": steps,
            "buckets": len(steps[0]["buckets"]), "none_step": none_step, "rate": rate}


def job(model: str, spec: dict, link: str, exchange: str, bucket_mb: float, tmp: str,
        tag: str) -> dict:
    """One 2-rank job (benchmarks.overlap.step); for grouped and overlap its timeline, for
    overlap also its collectives and rank 0's step windows."""
    timeline = os.path.join(tmp, f"tl_{tag}.json") if exchange != "none" else None
    stamps = os.path.join(tmp, f"stamps_{tag}.json")
    out = step(model, spec, link, exchange, bucket_mb, timeline,
               extra_args=(f"--step_stamps={stamps}",) if exchange == "overlap" else ())
    if exchange == "overlap":
        out["events"] = collectives(read_timeline(timeline))
        with open(stamps) as f:
            out["stamps"] = json.load(f)
    return out


def markdown(res: dict) -> str:
    def rng(vals, fmt="{:.3f}"):
        return (f"{fmt.format(statistics.median(vals))} "
                f"[{fmt.format(min(vals))}–{fmt.format(max(vals))}]")
    rounds = res["rounds"]
    lines = [f"# Where the overlapped exchange's time goes ({res['date']})", "",
             f"`{res['command']}` — commit {res['commit']}, {res['link']}, {res['model']} "
             f"(local batch {res['local_batch']}), 2 hosts x 1 rank x 1 core, bucket "
             f"{res['bucket_mb']:g} MiB ({rounds[0]['overlap']['buckets']} buckets), "
             f"{len(rounds)} rounds of none / grouped / overlap in a rotating order, "
             f"{res['minutes']:.0f} min.", "",
             "Per round: the median over the timed steps of `overlap`. Median [min–max] over "
             "the rounds. Seconds per step.", "",
             "| quantity | seconds |", "| --- | --- |"]
    get = lambda k: [r["overlap"]["median"][k] for r in rounds]   # noqa: E731
    slow = [max(r["none_step_ranks"]) for r in rounds if r.get("none_step_ranks")]
    fast = [min(r["none_step_ranks"]) for r in rounds if r.get("none_step_ranks")]
    ranks = [("  its slower rank alone", slow), ("  its faster rank alone", fast)] \
        if slow else []
    rows = [("step, no exchange (mean of the ranks' steps)", [r["none_step"] for r in rounds]),
            *ranks,
            ("step, grouped", [r["grouped_step"] for r in rounds]),
            ("step, overlap", get("seconds")),
            ("allreduce of all gradients, uncontended (grouped's timeline)",
             [r["allreduce"] for r in rounds]),
            ("first bucket ready (from step begin)", get("first_ready")),
            ("last bucket ready on both ranks", get("last_ready")),
            ("  of which the ranks' skew at the last bucket", get("last_ready_skew")),
            ("overlap's collectives active (union)", get("comm")),
            ("  the same bytes at the uncontended rate", get("comm_uncontended")),
            ("  buckets waiting for the link / negotiation", get("queued")),
            ("**exposed** = step(overlap) − step(none)", get("exposed")),
            ("  **tail**: allreduce after the last gradient", get("tail")),
            ("  **slowdown**: compute slowed by the exchange on its core", get("slowdown")),
            ("**spare core (model)**: tail at the uncontended rate, no slowdown",
             get("spare_core_tail"))]
    if slow:
        rows.insert(rows.index(("**spare core (model)**: tail at the uncontended rate, "
                                "no slowdown", get("spare_core_tail"))),
                    ("    of which the slower rank pacing every synchronised step (its "
                     "no-exchange step − the mean)", [s_ - r["none_step"] for s_, r in
                                                      zip(slow, rounds)]))
    for name, vals in rows:
        lines.append(f"| {name} | {rng(vals)} |")
    ar = statistics.median(r["allreduce"] for r in rounds)
    ex = statistics.median(get("exposed"))
    sc = statistics.median(get("spare_core_tail"))
    lines += ["", f"Exposed / allreduce: measured {100 * ex / ar:.0f}%; with a spare core "
              f"(model) {100 * sc / ar:.0f}%.", "",
              "The model replays the measured ready times of the buckets on both ranks "
              "through a link that carries one bucket at a time at the rate of the grouped "
              "allreduce (all gradient bytes / its timeline time, same round). It assumes a "
              "spare core takes the exchange's CPU work off the compute (no slowdown) and "
              "that backprop's ready times stay as measured (they were measured with the "
              "slowdown, so the model is conservative there). It is not a measurement on "
              "such a host."]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: str) -> None:
    """One representative step (the overlap step nearest the median exposed time)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    r = res["rounds"][0]
    steps = r["overlap"]["steps"]
    target = r["overlap"]["median"]["exposed"]
    s = min(steps, key=lambda x: abs(x["exposed"] - target))
    bks = s["buckets"]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(bks) + 1.8))
    for i, b in enumerate(bks):
        y = len(bks) - i
        ax.plot([b["ready"]], [y], "k|", ms=8)
        ax.barh(y, b["end"] - b["begin"], left=b["begin"], height=0.6, color="tab:blue")
    ax.axvline(r["none_step"], color="tab:green", ls="--", label=f"step, no exchange "
               f"({r['none_step']:.2f} s)")
    ax.axvline(s["last_ready"], color="k", ls=":", label="last gradient ready (both ranks)")
    ax.axvline(s["seconds"], color="tab:red", ls="--", label=f"step, overlap ({s['seconds']:.2f} s)")
    ax.set_yticks([])
    ax.set_xlabel("seconds from the step's begin (rank 0)")
    ax.set_ylabel("buckets, in the order they became ready")
    ax.set_title(f"{res['model']}, {res['link']}: each bucket ready (|) and its allreduce "
                 f"(bar); tail {s['tail']:.2f} s, slowdown {s['slowdown']:.2f} s", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overlap_timeline",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--link", default="1gbit",
                        help="'local' (2 ranks here) or a tc rate such as 1gbit (2 namespace "
                             "hosts)")
    parser.add_argument("--model", default="resnet50", choices=tuple(MODELS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bucket_mb", type=float, default=4.0)
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps of a small batch: checks the command, measures nothing")
    parser.add_argument("--plan", action="store_true", help="print the jobs to run, run nothing")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                      "overlap_timeline"))
    args = parser.parse_args(argv)
    if args.link != "local" and not re.fullmatch(r"[0-9]+[kmg]?bit", args.link):
        parser.error(f"argument --link: 'local' or a tc rate such as 1gbit. Received: "
                     f"{args.link!r}")
    if args.rounds < 1:
        parser.error(f"argument --rounds must be >= 1. Received: {args.rounds}")
    if args.link != "local" and os.geteuid() != 0:
        parser.error(f"--link {args.link} needs root: launch/cluster.sh's namespace hosts")
    spec = SMOKE if args.smoke else MODELS[args.model]
    if args.plan:
        print(f"overlap_timeline: {args.link} {args.model} (local batch {spec['local_batch']}), "
              f"{args.rounds} rounds x {len(JOBS)} jobs = {args.rounds * len(JOBS)} jobs: "
              f"{', '.join(JOBS)}")
        return 0
    t0 = time.perf_counter()
    res = {"command": "python -m benchmarks.overlap_timeline " + " ".join(argv or sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d", time.gmtime()), "link": args.link,
           "model": args.model, "local_batch": spec["local_batch"],
           "bucket_mb": args.bucket_mb, "rounds": [],
           "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip()}
    if args.link != "local":
        MH._cluster("up", str(len(MH.HOSTS)), "--cpus-per-host",
                    str(max(1, (os.cpu_count() or 1) // len(MH.HOSTS))))
    try:
        if args.link != "local":
            MH._cluster("shape", "--link", args.link)
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                got = {}
                for ex in rotated(JOBS, r):
                    got[ex] = job(args.model, spec, args.link, ex, args.bucket_mb, tmp,
                                  f"{ex}_{r}")
                    print(f"[{time.perf_counter() - t0:6.0f} s] round {r + 1} {ex}: "
                          f"{got[ex]['seconds_per_step']:.3f} s/step", flush=True)
                g = got["grouped"]
                rate = g["gradient_bytes"] / g["comm_seconds_per_step"]
                o = got["overlap"]
                res["rounds"].append({
                    "none_step": got["none"]["seconds_per_step"],
                    "none_step_ranks": got["none"].get("seconds_per_step_ranks", []),
                    "grouped_step": g["seconds_per_step"],
                    "allreduce": g["comm_seconds_per_step"], "rate": rate,
                    "overlap": breakdown(o["events"], o["stamps"],
                                         got["none"]["seconds_per_step"], rate)})
    finally:
        if args.link != "local":
            MH._cluster("down")
    res["minutes"] = (time.perf_counter() - t0) / 60
    from lbsgd.run import checkpoint as ckpt
    ckpt.atomic_write_json(args.out + ".json", res)
    text = markdown(res)
    ckpt.atomic_write_text(args.out + ".md", text)
    plot(res, args.out + ".png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
