"""`python -m lbsgd.probe`: the command line of :mod:`lbsgd.adaptive.probe`.

The flags, the checks of their values and the printed report; what is computed
lives in :mod:`lbsgd.adaptive.probe` (its names stay reachable here, as before).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lbsgd.parallel import runtime as _runtime  # noqa: E402

_runtime.import_tensorflow()   # first, so its start-up lines are quiet

from lbsgd.adaptive import probe as _library  # noqa: E402
from lbsgd.adaptive.probe import choose_start_batch, format_table, gradient_norms  # noqa: E402


def __getattr__(name):          # the library's names, as `lbsgd.probe.<name>` before
    return getattr(_library, name)


def _parser():
    from lbsgd.config import help as cli

    parser = cli.command_parser(
        "python -m lbsgd.probe",
        "Gradient l2-norm per batch size; the largest batch whose norm stays close to\n"
        "the smallest batch's is the maximum stable batch B_s (Lee et al. III-D).",
        examples="""
launch/run.sh -np 2 python -m lbsgd.probe --config configs/phantom_adaptive.py \\
    --batches 8,16,32,64,128,256 --draws 5
python -m lbsgd.probe --config runs/x/config.json --run_dir runs/x --output norms.json""")
    parser.add_argument("--config", required=True, help="configs/<name>.py or a config.json")
    parser.add_argument("--batches", default="8,16,32,64,128,256",
                        help="comma-separated global batch sizes")
    parser.add_argument("--draws", type=int, default=5, help="random batches per size")
    parser.add_argument("--ratio", type=float, default=0.9,
                        help="keep batches whose mean norm is >= ratio x the smallest's "
                             "(0.9: within 10%%, the tolerance Algorithm 1 uses for theta)")
    parser.add_argument("--output", default=None, help="also write the norms to this JSON file")
    parser.add_argument("--run_dir", default=None,
                        help="probe at this run's checkpoint weights (default: initial)")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)

    from lbsgd import config as config_lib

    def error(msg):
        print(f"lbsgd.probe: error: {msg}", file=sys.stderr)
        return 2

    try:
        cfg = config_lib.load_config(args.config)
        batches = sorted({int(b) for b in args.batches.split(",") if b.strip()})
    except (ValueError, config_lib.ConfigError) as err:
        return error(err if "Field" in str(err) else
                     f"Field `batches` must be integers. Received: batches={args.batches!r}")
    if not batches or batches[0] < 1 or args.draws < 1:
        return error(f"Field `batches` must be sizes >= 1 and `draws` >= 1. Received: "
                     f"batches={args.batches!r}, draws={args.draws}")

    import keras

    from lbsgd.run import checkpoint as ckpt
    from lbsgd import data
    from lbsgd.model import networks as models
    from lbsgd.parallel import runtime
    rt = runtime.init()
    keras.utils.set_random_seed(cfg.seed)
    source = data.load_source(cfg.data, cfg.seed)
    model = models.build_model(cfg.model, source.input_shape, source.num_classes)
    if args.run_dir:
        ckpt.load_model_variables(os.path.join(args.run_dir, ckpt.CHECKPOINT_NAME), model)
    else:  # every rank probes rank 0's initial weights
        from lbsgd import parallel
        parallel.broadcast_variables(model.variables)
    try:
        norms = gradient_norms(model, models.task_loss(cfg.task), source, batches, args.draws,
                               cfg.seed)
    except ValueError as err:
        return error(err)
    chosen = choose_start_batch(norms, args.ratio)
    if rt.is_chief:
        print(f"lbsgd.probe: {cfg.name}: l2-norm of the averaged gradient, {args.draws} draws "
              f"per batch size, {rt.size} rank(s)")
        print(format_table(norms, chosen))
        print(f"lbsgd.probe: maximum stable batch B_s = {chosen} (mean norm >= "
              f"{args.ratio:g} x batch {batches[0]}'s)", flush=True)
        if args.output:
            ckpt.atomic_write_json(args.output, {
                "config": cfg.name, "ranks": rt.size, "draws": args.draws, "ratio": args.ratio,
                "norms": {str(b): v for b, v in norms.items()}, "start_batch": chosen})
    return 0


if __name__ == "__main__":
    sys.exit(main())
