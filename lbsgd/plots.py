"""`python -m lbsgd.plots`: the command line of :mod:`lbsgd.report.plots`.

The flags, the checks of their values and the printed report; what is computed
lives in :mod:`lbsgd.report.plots` (its names stay reachable here, as before).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lbsgd.report import plots as _library  # noqa: E402
from lbsgd.run.rundir import RunDir  # noqa: E402
from lbsgd.report.plots import ensemble_plot, run_curves, schedule_timeline  # noqa: E402


def __getattr__(name):          # the library's names, as `lbsgd.plots.<name>` before
    return getattr(_library, name)


def main(argv=None) -> int:
    from lbsgd.config import help as cli

    parser = cli.command_parser(
        "python -m lbsgd.plots",
        "Write a run's figures as PNG files: curves.png (history.csv), schedule.png\n"
        "(the run's config) and, for a collapsed ensemble, ensemble.png (ensemble.json).",
        examples="""
python -m lbsgd.plots runs/digits_resnet
python -m lbsgd.plots runs/digits_recipe --out figures/""")
    parser.add_argument("run_dir", help="a run directory of lbsgd.train")
    parser.add_argument("--out", default=None, help="output directory (default RUN_DIR)")
    args = parser.parse_args(argv)
    if not os.path.isfile(RunDir(args.run_dir).history):
        print(f"lbsgd.plots: error: Field `run_dir` must hold a history.csv. Received: "
              f"run_dir={args.run_dir!r}", file=sys.stderr)
        return 2
    from lbsgd import config as config_lib
    out = args.out or args.run_dir
    os.makedirs(out, exist_ok=True)
    written = []

    def save(fig, name):
        from lbsgd.run import checkpoint as ckpt
        import io
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        ckpt.atomic_write_bytes(os.path.join(out, name), buf.getvalue())
        written.append(os.path.join(out, name))

    save(run_curves(args.run_dir), "curves.png")
    config_path = RunDir(args.run_dir).config
    if os.path.isfile(config_path):
        cfg = config_lib.load_config(config_path)
        try:
            save(schedule_timeline(cfg), "schedule.png")
        except ValueError:
            pass  # data size unknown before loading (image folders)
    if os.path.isfile(RunDir(args.run_dir).ensemble):
        save(ensemble_plot(args.run_dir), "ensemble.png")
    for path in written:
        print(f"lbsgd.plots: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
