"""Write a run's figures to PNG: `python -m lbsgd.plot RUN_DIR [--out DIR]`.

For people not in Jupyter (Codreanu et al. Figures 3-4 and Table XI; Lee et
al. Figures 2-3 and 5-6): `curves.png` from history.csv (loss, validation
metric, LR, batch size, theta, phase changes), `schedule.png` from the run's
config (LR, weight decay, collapse phases, snapshots) and, for a collapsed
ensemble, `ensemble.png` from ensemble.json.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    from lbsgd import cli

    parser = cli.command_parser(
        "python -m lbsgd.plot",
        "Write a run's figures as PNG files: curves.png (history.csv), schedule.png\n"
        "(the run's config) and, for a collapsed ensemble, ensemble.png (ensemble.json).",
        examples="""
python -m lbsgd.plot runs/digits_resnet
python -m lbsgd.plot runs/digits_recipe --out figures/""")
    parser.add_argument("run_dir", help="a run directory of lbsgd.train")
    parser.add_argument("--out", default=None, help="output directory (default RUN_DIR)")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.run_dir, "history.csv")):
        print(f"lbsgd.plot: error: Field `run_dir` must hold a history.csv. Received: "
              f"run_dir={args.run_dir!r}", file=sys.stderr)
        return 2
    from lbsgd import config as config_lib
    from lbsgd import plots
    out = args.out or args.run_dir
    os.makedirs(out, exist_ok=True)
    written = []

    def save(fig, name):
        from lbsgd import checkpoint as ckpt
        import io
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        ckpt.atomic_write_bytes(os.path.join(out, name), buf.getvalue())
        written.append(os.path.join(out, name))

    save(plots.run_curves(args.run_dir), "curves.png")
    config_path = os.path.join(args.run_dir, "config.json")
    if os.path.isfile(config_path):
        cfg = config_lib.load_config(config_path)
        try:
            save(plots.schedule_timeline(cfg), "schedule.png")
        except ValueError:
            pass  # data size unknown before loading (image folders)
    if os.path.isfile(os.path.join(args.run_dir, "ensemble.json")):
        save(plots.ensemble_plot(args.run_dir), "ensemble.png")
    for path in written:
        print(f"lbsgd.plot: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
