"""`python -m lbsgd.ensemble`: the command line of :mod:`lbsgd.recipe.ensemble`.

The flags, the checks of their values and the printed report; what is computed
lives in :mod:`lbsgd.recipe.ensemble` (its names stay reachable here, as before).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lbsgd.parallel import runtime as _runtime  # noqa: E402

_runtime.import_tensorflow()   # first, so its start-up lines are quiet

from lbsgd.recipe import ensemble as _library  # noqa: E402
from lbsgd.run.rundir import RunDir  # noqa: E402
from lbsgd.recipe.ensemble import ENSEMBLE_NAME, evaluate_snapshots, format_table  # noqa: E402


def __getattr__(name):          # the library's names, as `lbsgd.ensemble.<name>` before
    return getattr(_library, name)


def _select(index: list[dict], spec: str | None, directory: str) -> list[str]:
    files = [s["file"] for s in index]
    if not spec:
        return [os.path.join(directory, f) for f in files]
    chosen = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item.isdigit():
            match = [s["file"] for s in index if s["epoch"] == int(item)]
            if not match:
                raise ValueError(f"Field `snapshots` names epoch {item}, which has no snapshot "
                                 f"(epochs: {[s['epoch'] for s in index]}). Received: "
                                 f"snapshots={spec!r}")
            chosen.append(os.path.join(directory, match[0]))
        else:
            path = item if os.path.isfile(item) else os.path.join(directory, item)
            if not os.path.isfile(path):
                raise ValueError(f"Field `snapshots` names a file that does not exist: "
                                 f"{item!r}. Received: snapshots={spec!r}")
            chosen.append(path)
    return chosen


def _parser():
    from lbsgd.config import help as cli

    parser = cli.command_parser(
        "python -m lbsgd.ensemble",
        "Evaluate a run's collapse snapshots and their softmax-averaged ensemble\n"
        "(Codreanu et al. Table XI) and print the table. A file is written only when\n"
        f"asked: --output FILE, or --overwrite for the run's own {ENSEMBLE_NAME}.",
        examples="""
launch/run.sh -np 2 python -m lbsgd.ensemble --run_dir runs/digits_recipe
launch/run.sh -np 2 python -m lbsgd.ensemble --run_dir runs/digits_recipe --snapshots 12,16,20 \\
    --output runs/digits_recipe/last3.json""")
    parser.add_argument("--run_dir", required=True, help="run directory of lbsgd.train")
    parser.add_argument("--snapshots", default=None,
                        help="comma-separated snapshot epochs or files (default: all)")
    parser.add_argument("--output", default=None,
                        help="write the result (JSON) to this file (default: print only)")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace RUN_DIR/{ENSEMBLE_NAME}, the result the training run "
                             "wrote, with this one")
    return parser


def main(argv=None) -> int:
    import json

    args = _parser().parse_args(argv)

    from lbsgd import config as config_lib
    from lbsgd.recipe import phases as recipe

    def error(msg):
        print(f"lbsgd.ensemble: error: {msg}", file=sys.stderr)
        return 2

    config_path = RunDir(args.run_dir).config
    index_path = os.path.join(args.run_dir, recipe.SNAPSHOT_DIR, recipe.SNAPSHOT_INDEX)
    if not os.path.isfile(config_path) or not os.path.isfile(index_path):
        return error("Field `run_dir` must hold config.json and snapshots/index.json. "
                     f"Received: run_dir={args.run_dir!r}")
    try:
        cfg = config_lib.load_config(config_path)
        with open(index_path) as f:
            index = json.load(f)["snapshots"]
        paths = _select(index, args.snapshots, os.path.dirname(index_path))
    except (ValueError, config_lib.ConfigError) as err:
        return error(err)

    from lbsgd import data
    from lbsgd.model import networks as models
    from lbsgd.parallel import runtime
    rt = runtime.init()
    source = data.load_source(cfg.data, cfg.seed)
    model = models.build_model(cfg.model, source.input_shape, source.num_classes)
    val = data.val_dataset(source, max(1, cfg.batch_size // rt.size), rt.rank, rt.size)
    result = evaluate_snapshots(model, paths, val)
    if rt.is_chief:
        from lbsgd.run import checkpoint as ckpt
        print(format_table(result))
        output = args.output or (os.path.join(args.run_dir, ENSEMBLE_NAME) if args.overwrite
                                 else None)
        if output:
            ckpt.atomic_write_json(output, result)
            print(f"lbsgd.ensemble: wrote {output}")
        else:
            print(f"lbsgd.ensemble: not saved (--output FILE saves it; --overwrite replaces "
                  f"{os.path.join(args.run_dir, ENSEMBLE_NAME)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
