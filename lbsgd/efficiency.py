"""Scaling efficiency across runs of one config at different rank counts (Codreanu et al. V-A,
Figures 1-2).

    python -m lbsgd.efficiency runs/digits_np1 runs/digits_np2

Runs whose config.json match (apart from the name) are grouped; within a
group the run with the fewest ranks is the base, and each run's speedup
(images/s ratio) and scaling efficiency (speedup / rank ratio) are printed
next to its time-to-accuracy. The same global batch on more ranks is strong
scaling, as the paper's Figures 1-2.
"""

from __future__ import annotations

import json
import os
import sys

from lbsgd.run.rundir import RunDir


def load_run(run_dir: str) -> dict:
    with open(RunDir(run_dir).summary) as f:
        summary = json.load(f)
    with open(RunDir(run_dir).config) as f:
        config = json.load(f)
    return {"run_dir": run_dir, "summary": summary, "config": config}


def scaling_table(runs: list[dict]) -> list[dict]:
    """Adds speedup and efficiency to each run, grouped by identical config (name aside)."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        key = json.dumps({k: v for k, v in r["config"].items() if k != "name"}, sort_keys=True)
        groups.setdefault(key, []).append(r)
    rows = []
    for members in groups.values():
        members.sort(key=lambda r: r["summary"]["num_ranks"])
        base = members[0]["summary"]
        for r in members:
            s = r["summary"]
            speedup = (s["images_per_second"] or 0) / (base["images_per_second"] or 1)
            rows.append({"run_dir": r["run_dir"], "config": r["config"]["name"],
                         "ranks": s["num_ranks"], "images_per_second": s["images_per_second"],
                         "speedup": speedup,
                         "efficiency": speedup / (s["num_ranks"] / base["num_ranks"]),
                         "total_seconds": s["total_seconds"],
                         "time_to_accuracy": s.get("time_to_accuracy", {})})
    return rows


def main(argv=None) -> int:
    from lbsgd.config import help as cli

    parser = cli.command_parser(
        "python -m lbsgd.efficiency",
        "Speedup and scaling efficiency across runs of one config at different rank\n"
        "counts (Codreanu et al. V-A); runs whose config.json match, name aside, form a group.",
        examples="python -m lbsgd.efficiency runs/digits_np1 runs/digits_np2")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories of lbsgd.train (summary.json, config.json)")
    args = parser.parse_args(argv).run_dirs
    missing = [a for a in args if not os.path.isfile(RunDir(a).summary)]
    if missing:
        print(f"lbsgd.efficiency: error: Field `run_dir` must hold summary.json and config.json. "
              f"Received: run_dir={missing[0]!r}", file=sys.stderr)
        return 2
    rows = scaling_table([load_run(a) for a in args])
    print(f"{'run':<28} {'ranks':>5} {'img/s':>9} {'speedup':>8} {'efficiency':>10} {'time s':>8}")
    for r in rows:
        print(f"{os.path.basename(os.path.normpath(r['run_dir'])):<28} {r['ranks']:>5} "
              f"{r['images_per_second']:>9.1f} {r['speedup']:>8.2f} "
              f"{100 * r['efficiency']:>9.1f}% {r['total_seconds']:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
