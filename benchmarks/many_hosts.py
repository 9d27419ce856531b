"""Many hosts on a shaped network: latency and bandwidth of the links and weak scaling at 2 hosts, against lbsgd.scaling's prediction (Codreanu et al. V-A, Tables XII-XIII; Lee et al. IV-B).

    .venv/bin/python -m benchmarks.many_hosts --suite full     # the measurement (root; ~1 h)
    .venv/bin/python -m benchmarks.many_hosts --suite smoke    # checks the command (~10 min)
    .venv/bin/python -m benchmarks.many_hosts --rewrite benchmarks/results/many_hosts.json

Brings up launch/cluster.sh's namespace cluster of 2 hosts, each pinned to its own half of
this machine's cores (--cpus-per-host), and measures, every number in this one run:

  * one host: ResNet-20 and ResNet-50 seconds per step and images/s, 1 rank on lbsgd-h1
    (benchmarks.throughput, lbsgd's stack, synthetic data), and the same with both hosts
    computing and no gradient exchange (what the hosts' shared memory costs);
  * for each link setting (tc tbf, e.g. 10gbit and 1gbit, both directions of each
    host's cable): the allreduce time against message size between the 2 hosts and its
    latency and bandwidth (benchmarks.allreduce), then the 2-host weak-scaling
    throughput of both models at the same local batch;
  * lbsgd.scaling's prediction of each 2-host throughput from the one-host step time,
    the gradient bytes and that link's latency, bandwidth, its error, and its projection to 16 and
    64 hosts (lbsgd.report.scaling.many_hosts_report).

Each measurement is repeated --repeats times and the median kept. Writes
<out>.json and <out>.md (default benchmarks/results/many_hosts) and takes the cluster down
at the end. Measure on a quiet machine: other jobs on these cores change every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
CLUSTER = os.path.join(ROOT, "launch", "cluster.sh")
LAUNCH = os.path.join(ROOT, "launch", "run.sh")
HOSTS = ("lbsgd-h1", "lbsgd-h2")

SUITES = {
    "full": {"models": {"resnet20": dict(image_size=32, num_classes=10, local_batch=64,
                                         steps=20, warmup=3),
                        "resnet50": dict(image_size=224, num_classes=1000, local_batch=8,
                                         steps=6, warmup=2)},
             "allreduce": dict(max_bytes=64 << 20, reps=20, warmup=3), "repeats": 3},
    "smoke": {"models": {"resnet20": dict(image_size=32, num_classes=10, local_batch=16,
                                          steps=3, warmup=2),
                         "resnet50": dict(image_size=64, num_classes=1000, local_batch=2,
                                          steps=2, warmup=1)},
              "allreduce": dict(max_bytes=1 << 20, reps=5, warmup=2), "repeats": 2},
}


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(PY) + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _json_line(stdout: str, marker: str) -> dict:
    decoder = json.JSONDecoder()
    for line in reversed(stdout.splitlines()):
        at = line.find(marker)
        if at >= 0:
            return decoder.raw_decode(line[at:])[0]
    raise RuntimeError(f"no {marker} result in:\n{stdout[-2000:]}")


def _launch(hosts, args, marker, timeout=3600) -> dict:
    """One job of `python args...` on `hosts` (one rank each) through launch/run.sh."""
    cmd = [LAUNCH, "-np", str(len(hosts)), "-H", ",".join(f"{h}:1" for h in hosts), PY, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return _json_line(proc.stdout, marker)


def _cluster(*args) -> None:
    subprocess.run([CLUSTER, *args], check=True, timeout=300)


def throughput(model: str, spec: dict, hosts, exchange: str = "grouped") -> dict:
    args = ["-m", "benchmarks.throughput", f"--model={model}",
            f"--local_batch={spec['local_batch']}", f"--image_size={spec['image_size']}",
            f"--num_classes={spec['num_classes']}", f"--steps={spec['steps']}",
            f"--warmup_steps={spec['warmup']}", f"--exchange={exchange}"]
    return _launch(hosts, args, '{"model"')


def repeated(measure, repeats: int, keys=("images_per_second", "seconds_per_step")) -> dict:
    """The first run's record with `keys` replaced by their median over `repeats` runs
    (each run's values kept under "<key>_runs")."""
    runs = [measure() for _ in range(repeats)]
    out = dict(runs[0])
    for k in keys:
        out[f"{k}_runs"] = [r[k] for r in runs]
        out[k] = statistics.median(out[f"{k}_runs"])
    return out


def allreduce(spec: dict, repeats: int) -> dict:
    """Latency and bandwidth between the 2 hosts: the median time per size over repeats,
    then the fit."""
    from benchmarks.allreduce import fit_latency_bandwidth

    args = ["-m", "benchmarks.allreduce", f"--max_bytes={spec['max_bytes']}",
            f"--reps={spec['reps']}", f"--warmup={spec['warmup']}"]
    runs = [_launch(HOSTS, args, '{"benchmark"') for _ in range(repeats)]
    sizes = runs[0]["bytes"]
    seconds = [statistics.median(r["seconds"][i] for r in runs) for i in range(len(sizes))]
    out = {"bytes": sizes, "seconds": seconds, "seconds_runs": [r["seconds"] for r in runs]}
    out.update(fit_latency_bandwidth(sizes, seconds, len(HOSTS)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.many_hosts",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=tuple(SUITES), default="full")
    parser.add_argument("--links", default="10gbit,1gbit",
                        help="tc rates of the hosts' cables, comma-separated (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per measurement, median kept (default: the suite's)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                      "many_hosts"),
                        help="result path without extension (default %(default)s)")
    parser.add_argument("--rewrite", metavar="JSON",
                        help="measure nothing: recompute the report of a stored result "
                        "(its .json and .md) with the current lbsgd.scaling")
    args = parser.parse_args(argv)
    if args.rewrite:
        if not args.rewrite.endswith(".json") or not os.path.isfile(args.rewrite):
            parser.error(f"argument --rewrite must be a result .json file. "
                         f"Received: --rewrite {args.rewrite}")
        with open(args.rewrite) as f:
            write_report(json.load(f), args.rewrite[:-len(".json")])
        return 0
    links = [x for x in args.links.split(",") if x]
    import re
    bad = [x for x in links if not re.fullmatch(r"[0-9]+[kmg]?bit", x)]
    if not links or bad:
        parser.error(f"argument --links must list rates such as 10gbit,1gbit. "
                     f"Received: --links {args.links}")
    if os.geteuid() != 0:
        parser.error("must run as root: it brings up launch/cluster.sh's namespace hosts")
    suite = SUITES[args.suite]
    repeats = args.repeats or suite["repeats"]
    if repeats < 1:
        parser.error(f"argument --repeats must be >= 1. Received: --repeats {repeats}")
    cores = os.cpu_count() or 1
    cpus = max(1, cores // len(HOSTS))
    command = (f".venv/bin/python -m benchmarks.many_hosts --suite {args.suite} "
               f"--links {args.links} --repeats {repeats}")
    res = {"suite": args.suite, "command": command, "hosts": len(HOSTS), "cores": cores,
           "cpus_per_host": cpus, "repeats": repeats,
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip()}
    t0 = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    _cluster("up", str(len(HOSTS)), "--cpus-per-host", str(cpus))
    try:
        res["single_host"], res["compute_only"] = [], []
        for model, spec in suite["models"].items():
            one = repeated(lambda: throughput(model, spec, HOSTS[:1]), repeats)
            res["single_host"].append(one)
            log(f"{model} b{spec['local_batch']}, 1 host: {one['images_per_second']:.2f} img/s")
            both = repeated(lambda: throughput(model, spec, HOSTS, exchange="none"), repeats)
            res["compute_only"].append(both)
            log(f"{model}, {len(HOSTS)} hosts without exchange: "
                f"{both['images_per_second']:.2f} img/s")
        res["links"] = []
        for link in links:
            _cluster("shape", "--link", link)
            ar = allreduce(suite["allreduce"], repeats)
            log(f"{link}: latency {ar['latency'] * 1e6:.0f} us, "
                f"bandwidth {ar['bandwidth'] / 1e9:.3f} GB/s "
                f"(fit residual <= {100 * ar['max_relative_residual']:.0f}%)")
            entry = {"link": link, "allreduce": ar, "throughput": []}
            for model, spec in suite["models"].items():
                r = repeated(lambda: throughput(model, spec, HOSTS), repeats)
                entry["throughput"].append(r)
                log(f"{link}: {model}, {len(HOSTS)} hosts: {r['images_per_second']:.2f} img/s")
            res["links"].append(entry)
    finally:
        _cluster("down")
    write_report(res, args.out)
    log(f"wrote {args.out}.json and {args.out}.md")
    return 0


def write_report(res: dict, out: str) -> None:
    """lbsgd.scaling's report of the measurements `res` into `out`.json and `out`.md."""
    from lbsgd.report import scaling

    res["report"] = scaling.many_hosts_report(res)
    table = scaling.format_many_hosts(res["report"])
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    hosts, cpus = res["hosts"], res["cpus_per_host"]
    with open(out + ".md", "w") as f:
        f.write(f"# Many hosts on a shaped network ({res['suite']})\n\n`{res['command']}` "
                f"({res['date']}, commit {res['commit']}; {hosts} namespace hosts x "
                f"{cpus} core(s) of a {res['cores']}-core machine, one rank per host; images/s "
                f"as the median (range) of {res['repeats']} runs)\n\n{table}\n\nCompute only ({hosts} hosts, no "
                "exchange): " + ", ".join(f"{r['model']} {r['images_per_second']:.2f} img/s"
                                          for r in res["compute_only"]) + "\n")
    print(table)


if __name__ == "__main__":
    raise SystemExit(main())
