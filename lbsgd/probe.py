"""The maximum-stable-batch probe: gradient l2-norms per candidate batch size (Lee et al. III-D).

Lee et al. pick the starting batch B_s as the largest batch whose averaged
gradient has an l2-norm close to that of small batches: a similar norm means
a similar allowed gradient variance and so a similar convergence property.
:func:`gradient_norms` measures, at the current weights, the norm of the
gradient averaged over a random global batch (several draws per size; in a
Horovod job each rank computes its share and the gradients are averaged with
Horovod); :func:`choose_start_batch` picks the largest batch whose mean norm
stays within `ratio` of the smallest batch's.

    launch/run.sh -np 2 python -m lbsgd.probe --config configs/phantom_adaptive.py \\
        --batches 8,16,32,64,128,256 --draws 5
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def gradient_norms(model, loss_fn, source, batches, draws: int = 5, seed: int = 0,
                   exchange: str = "grouped") -> dict[int, list[float]]:
    """{batch: [l2-norm of the averaged gradient, one per draw]} at the current weights.

    Each draw takes a random global batch of training examples (without
    replacement, unaugmented), every rank its contiguous share; gradients are
    computed in training mode and averaged over ranks. Model state that a
    training-mode call changes (BN moving statistics) is put back.
    """
    import keras
    import tensorflow as tf

    from lbsgd import distributed, runtime

    rt = runtime.current()
    loss_fn = keras.losses.get(loss_fn) if isinstance(loss_fn, str) else loss_fn
    saved = [keras.ops.convert_to_numpy(v.value) for v in model.non_trainable_variables]
    out = {}
    for batch in batches:
        batch = int(batch)
        if batch % rt.size or batch > source.num_train:
            raise ValueError(f"Argument `batches` holds {batch}, which must divide over "
                             f"{rt.size} ranks and be <= {source.num_train} examples. "
                             f"Received: batches={list(batches)}")
        local = batch // rt.size
        norms = []
        for d in range(draws):
            rng = np.random.default_rng([seed, batch, d])
            idx = rng.choice(source.num_train, batch, replace=False)[rt.rank * local:
                                                                      (rt.rank + 1) * local]
            x = tf.stack([source.decode(tf.constant(source.train_items[i]), False,
                                        tf.zeros([2], tf.int32)) for i in idx])
            y = tf.constant(source.train_labels[idx])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(loss_fn(y, model(x, training=True)))
            grads = tape.gradient(loss, model.trainable_variables)
            grads = distributed.average_gradients(grads, exchange)
            norms.append(float(tf.linalg.global_norm([g for g in grads if g is not None])))
        out[batch] = norms
    for v, value in zip(model.non_trainable_variables, saved):
        v.assign(value)
    return out


def choose_start_batch(norms: dict[int, list[float]], ratio: float = 0.9) -> int:
    """The largest batch whose mean norm is >= `ratio` x the smallest batch's mean norm."""
    if not norms:
        raise ValueError("Argument `norms` must hold at least one batch size. Received: {}")
    if not 0 < ratio <= 1:
        raise ValueError(f"Argument `ratio` must be in (0, 1]. Received: ratio={ratio}")
    sizes = sorted(norms)
    ref = float(np.mean(norms[sizes[0]]))
    chosen = sizes[0]
    for b in sizes[1:]:
        if float(np.mean(norms[b])) >= ratio * ref:
            chosen = b
        else:
            break
    return chosen


def format_table(norms: dict[int, list[float]], chosen: int) -> str:
    sizes = sorted(norms)
    ref = float(np.mean(norms[sizes[0]]))
    lines = [f"{'batch':>6} {'mean |g|':>10} {'std':>9} {'/ smallest':>10}"]
    for b in sizes:
        m, s = float(np.mean(norms[b])), float(np.std(norms[b]))
        mark = "  <- B_s" if b == chosen else ""
        lines.append(f"{b:>6} {m:>10.4g} {s:>9.3g} {m / ref:>10.3f}{mark}")
    return "\n".join(lines)


def _parser():
    from lbsgd import cli

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

    from lbsgd import checkpoint as ckpt
    from lbsgd import data, models, runtime
    rt = runtime.init()
    keras.utils.set_random_seed(cfg.seed)
    source = data.load_source(cfg.data, cfg.seed)
    model = models.build_model(cfg.model, source.input_shape, source.num_classes)
    if args.run_dir:
        ckpt.load_model_variables(os.path.join(args.run_dir, ckpt.CHECKPOINT_NAME), model)
    else:  # every rank probes rank 0's initial weights
        from lbsgd import distributed
        distributed.broadcast_variables(model.variables)
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
