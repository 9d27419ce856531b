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

    from lbsgd import parallel
    from lbsgd.parallel import runtime

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
            grads = parallel.average_gradients(grads, exchange)
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


def start_record(model, loss_fn, source, adaptive_cfg, batch_size: int, seed: int,
                 verbose: bool = True) -> dict:
    """B_s for a run that starts from the probe (adaptive.start_batch="probe"): every rank
    measures at rank 0's initial weights (broadcast first) the candidates of `adaptive_cfg`
    (an AdaptiveConfig); rank 0 prints the table. Returns the record the run keeps:
    start_batch, ratio, draws, each candidate's mean norm and the probe's seconds."""
    import time

    from lbsgd import parallel
    from lbsgd.parallel import runtime

    started = time.perf_counter()
    parallel.broadcast_variables(model.variables)
    norms = gradient_norms(model, loss_fn, source, adaptive_cfg.probe_candidates(batch_size),
                           adaptive_cfg.probe_draws, seed)
    chosen = choose_start_batch(norms, adaptive_cfg.probe_ratio)
    record = {"start_batch": chosen, "ratio": adaptive_cfg.probe_ratio,
              "draws": adaptive_cfg.probe_draws,
              "mean_norm": {str(b): float(np.mean(v)) for b, v in norms.items()},
              "seconds": time.perf_counter() - started}
    rt = runtime.current()
    if rt.is_chief and verbose:
        print(f"lbsgd.train: start-up probe (Lee et al. III-D), {adaptive_cfg.probe_draws} draws "
              f"per batch, {rt.size} rank(s):\n{format_table(norms, chosen)}\n"
              f"lbsgd.train: starting at B_s = {chosen} ({record['seconds']:.1f} s)", flush=True)
    return record


def resumed_record(adaptive_state: dict) -> dict:
    """The start-up probe's record from a checkpoint's `adaptive_batch` state (a resumed run
    never probes again); ConfigError if the checkpoint's run did not probe."""
    from lbsgd.errors import ConfigError

    if not (adaptive_state or {}).get("start"):
        raise ConfigError("Field `adaptive.start_batch` is 'probe' but the checkpoint's run "
                          "did not probe (no B_s recorded). Received: adaptive.start_batch="
                          "'probe'")
    return adaptive_state["start"]


def format_table(norms: dict[int, list[float]], chosen: int) -> str:
    sizes = sorted(norms)
    ref = float(np.mean(norms[sizes[0]]))
    lines = [f"{'batch':>6} {'mean |g|':>10} {'std':>9} {'/ smallest':>10}"]
    for b in sizes:
        m, s = float(np.mean(norms[b])), float(np.std(norms[b]))
        mark = "  <- B_s" if b == chosen else ""
        lines.append(f"{b:>6} {m:>10.4g} {s:>9.3g} {m / ref:>10.3f}{mark}")
    return "\n".join(lines)
