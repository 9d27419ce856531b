"""`python -m lbsgd.scaling`: the command line of :mod:`lbsgd.report.scaling`.

The flags, the checks of their values and the printed report; what is computed
lives in :mod:`lbsgd.report.scaling` (its names stay reachable here, as before).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lbsgd.report import scaling as _library  # noqa: E402
from lbsgd.report.scaling import (DEFAULT_LATENCY, EPOCHS_TO_TOP1,  # noqa: E402
                                  format_many_hosts, format_report, holdout_report,
                                  machine_model, many_hosts_report)


def __getattr__(name):          # the library's names, as `lbsgd.scaling.<name>` before
    return getattr(_library, name)


def _print_machine(path: str, latency: float, bandwidth: float | None) -> None:
    import json
    with open(path) as f:
        model, c = machine_model(json.load(f), latency, bandwidth)
    print(f"This machine ({path}): {c['model']}, local batch {c['local_batch']}: "
          f"t_sample = {c['t_sample'] * 1e3:.0f} ms (1 rank x 1 core), latency = "
          f"{c['latency'] * 1e3:.2f} ms, bandwidth = {c['bandwidth'] / 1e9:.2f} GB/s"
          f"{' (given)' if bandwidth else ' (grouped allreduce in the timeline)'}")
    print(f"  {c['workers']} ranks: predicted {c['predicted_images_per_second']:.2f} img/s, "
          f"measured {c['measured_images_per_second']:.2f} ({100 * c['error']:+.1f}%)")
    b = c["local_batch"]
    print(f"  Projection for 1-core workers at this bandwidth (ImageNet epoch, local batch {b}):")
    for workers in (2, 4, 16, 64, 256):
        print(f"  {workers:>5} workers: {model.epoch_seconds(b, workers) / 3600:6.2f} h/epoch, "
              f"weak-scaling efficiency {100 * model.efficiency(b, workers):.0f}%")


def main(argv=None) -> int:
    """Prints the Table V hold-out report and a Table XII-style projection."""
    from lbsgd.config import help as cli
    parser = cli.command_parser(
        "python -m lbsgd.scaling",
        "The latency-bandwidth scaling model against Codreanu et al. Table V (calibrated on 5\n"
        "rows, checked on the other 5) and a Table XII-style projection; with --machine,\n"
        "also the model of the machine a benchmarks.run result measured.",
        examples="""
python -m lbsgd.scaling
python -m lbsgd.scaling --machine benchmarks/results/quick.json --bandwidth 1.25e9""")
    parser.add_argument("--machine", help="a benchmarks/results/<suite>.json")
    parser.add_argument("--latency", type=float, default=DEFAULT_LATENCY,
                        help="per-message latency in seconds (default %(default)s)")
    parser.add_argument("--bandwidth", type=float, default=None,
                        help="bandwidth in bytes/s (default: from the result's timeline)")
    parser.add_argument("--many_hosts", help="a benchmarks/results/many_hosts*.json: its "
                        "measured throughputs against the model's, and 16/64-host projections")
    args = parser.parse_args(argv)
    if args.latency < 0:
        parser.error(f"argument --latency must be >= 0. Received: {args.latency}")
    if args.bandwidth is not None and args.bandwidth <= 0:
        parser.error(f"argument --bandwidth must be > 0. Received: {args.bandwidth}")
    model, report = holdout_report()
    print("Scaling model calibrated on 5 rows of Codreanu et al. Table V (Stampede2):")
    print(f"  t0 = {model.t0 * 1e3:.1f} ms, t_sample = {model.t_sample * 1e3:.2f} ms, "
          f"A = {model.comm_latency * 1e6:.1f} us/worker, B = {model.comm_volume * 1e3:.1f} ms")
    print(format_report(report))
    print("\nProjected time to top-1 (Table XII's epochs) at local batch 32:")
    for workers in (256, 512, 1024, 1536):
        cells = ", ".join(f"{100 * acc:.1f}%: {model.time_to_accuracy(32, workers, e) / 60:.0f} min"
                          for acc, e in EPOCHS_TO_TOP1.items())
        print(f"  {workers:>5} nodes: {cells}")
    if args.machine:
        print()
        try:
            _print_machine(args.machine, args.latency, args.bandwidth)
        except (OSError, ValueError, KeyError) as e:
            parser.error(f"--machine {args.machine}: {e}")
    if args.many_hosts:
        import json
        print()
        try:
            with open(args.many_hosts) as f:
                print(f"Many hosts ({args.many_hosts}): predicted from one host's step "
                      "(and from the hosts' step computing together) with the measured "
                      "latency and bandwidth")
                print(format_many_hosts(many_hosts_report(json.load(f))))
        except OSError as e:
            parser.error(f"--many_hosts {args.many_hosts}: {e}")
        except (ValueError, KeyError) as e:
            parser.error(f"--many_hosts {args.many_hosts}: not a benchmarks.many_hosts "
                         f"result ({type(e).__name__}: {e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
