"""Train a config data-parallel with Horovod: `python -m lbsgd.train --config configs/<name>.py`.

Serves Codreanu et al. Sections IV-V (large-minibatch synchronous SGD with
linear LR scaling and warmup, time-to-accuracy reporting) as a command-line
job. Run it under `launch/run.sh -np N` (horovodrun) or as a single process.

A run directory holds:
  config.json   the fully resolved config, written before the first step
  history.csv   one row per epoch (metrics, LR, weight decay, batch, phase, time)
  checkpoint.npz  exact-resume checkpoint, rewritten atomically every epoch
  summary.json  final metrics, wall time, images/s, ranks, time-to-accuracy
  snapshots/    weights at the end of each collapse (+ index.json)
  theta_reference.npz  w0 of the theta metric (adaptive batch runs)
  ensemble.json snapshots' and their softmax-averaged ensemble's accuracy

Any config leaf is a flag: `--epochs=4 --optimizer.base_lr=0.2`.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lbsgd import config as config_lib  # noqa: E402  (no TensorFlow import)


def run(cfg: "config_lib.TrainConfig", run_dir: str, resume: bool = False,
        overwrite: bool = False, verbose: int | str = "auto", extra_callbacks=(),
        resume_changes: dict | None = None, config_file: str | None = None) -> dict:
    """Trains `cfg` in this process (one rank of the job); returns the summary.

    Args:
      cfg: the validated run config.
      run_dir: directory for config.json, history.csv, checkpoint.npz, summary.json.
      resume: continue from the run directory's checkpoint (if any).
      overwrite: discard an earlier run in `run_dir` instead of refusing it.
      verbose: Keras verbosity on rank 0 ("auto": a progress bar in a single
        process on a terminal, one line per epoch otherwise); other ranks are silent.
      extra_callbacks: more Keras callbacks, run after lbsgd's bookkeeping.
      resume_changes: {field: (before, after)} allowed with --allow_change;
        recorded in the run directory's resumes.json.
      config_file: the config file the run starts from (kept in the
        checkpoint, so `--resume --config <the same file>` is recognised).
    """
    from lbsgd import checkpoint as ckpt
    from lbsgd import distributed, ensemble, recipe, rundir, runtime

    rt = runtime.init()
    cfg.validate_for(rt.size)
    paths = {k: os.path.join(run_dir, f) for k, f in (
        ("config", "config.json"), ("history", "history.csv"),
        ("checkpoint", ckpt.CHECKPOINT_NAME), ("summary", "summary.json"),
        ("ensemble", ensemble.ENSEMBLE_NAME))}
    snapshot_dir = os.path.join(run_dir, recipe.SNAPSHOT_DIR)

    # Rank 0 takes the run directory's lock and decides what happens to it; every
    # rank learns the decision. Nothing is written before the lock is held.
    decision = None
    run_lock = rundir.RunDir(run_dir)
    if rt.is_chief:
        try:
            note = run_lock.lock()
        except config_lib.ConfigError as err:
            decision = {"error": str(err)}
        else:
            if note:
                print(f"lbsgd.train: {run_dir}: {note}", file=sys.stderr)
            decision = _decide(run_dir, paths, snapshot_dir, resume, overwrite, resume_changes,
                               cfg)
    decision = distributed.broadcast_object(decision, name="lbsgd.run_dir")
    try:
        if "error" in decision:
            raise config_lib.ConfigError(decision["error"])
        return _train(cfg, run_dir, paths, snapshot_dir, decision["state"], rt, verbose,
                      extra_callbacks, config_file)
    finally:
        run_lock.unlock()


def _decide(run_dir, paths, snapshot_dir, resume, overwrite, resume_changes, cfg) -> dict:
    """Rank 0's decision on the run directory (it holds the lock): {"state"} or {"error"}."""
    from lbsgd import checkpoint as ckpt
    from lbsgd import rundir

    ckpt.remove_stale_temporaries(run_dir)
    has_ckpt = os.path.isfile(paths["checkpoint"])
    if has_ckpt and not (resume or overwrite):
        return {"error": f"Run directory {run_dir!r} already holds a run: pass --resume to "
                         "continue it or --overwrite to replace it."}
    if resume and not has_ckpt:
        return {"error": f"Field `run_dir` must hold a run to resume (config.json and "
                         f"checkpoint.npz). Received: run_dir={run_dir!r}"}
    if resume:
        state = ckpt.read_state(paths["checkpoint"])
        _note_world_size_change(run_dir, state, cfg, resume_changes)
        if resume_changes:
            ckpt.atomic_write_text(paths["config"], cfg.to_json() + "\n")
        return {"state": state}
    for name in rundir.RUN_FILES:
        if os.path.exists(os.path.join(run_dir, name)):
            os.unlink(os.path.join(run_dir, name))
    if os.path.isdir(snapshot_dir):
        for name in os.listdir(snapshot_dir):
            os.unlink(os.path.join(snapshot_dir, name))
    ckpt.atomic_write_text(paths["config"], cfg.to_json() + "\n")
    return {"state": None}


def _train(cfg, run_dir, paths, snapshot_dir, state, rt, verbose, extra_callbacks,
           config_file) -> dict:
    """Trains `cfg` from `state` (None: from scratch) once the run directory is decided."""
    import keras

    from lbsgd import callbacks as cb
    from lbsgd import checkpoint as ckpt
    from lbsgd import adaptive, data, distributed, ensemble, faults, models, recipe
    from lbsgd import schedules

    keras.utils.set_random_seed(cfg.seed)
    source = data.load_source(cfg.data, cfg.seed)
    batch = cfg.batch_size
    steps = data.steps_per_epoch(source.num_train, batch)
    model = models.build_model(cfg.model, source.input_shape, source.num_classes)
    plan = recipe.build_plan(cfg)
    adaptive_cfg = cfg.adaptive
    if adaptive_cfg.enabled:  # the controller owns the LR: a plain variable
        learning_rate = schedules.linear_scaling(
            cfg.optimizer.base_lr, batch, cfg.optimizer.reference_batch, cfg.optimizer.max_lr)
    else:
        learning_rate = schedules.build_schedule(cfg.optimizer, cfg.schedule, batch, steps,
                                                 cfg.epochs)
    if cfg.optimizer.name == "sgd":
        base_opt = keras.optimizers.SGD(learning_rate, momentum=cfg.optimizer.momentum)
    else:
        base_opt = keras.optimizers.Adam(learning_rate)
    optimizer = distributed.DistributedOptimizer(
        base_opt, exchange=cfg.optimizer.exchange, weight_decay=plan[0].weight_decay,
        momentum_correction=cfg.optimizer.momentum_correction,
        compression=cfg.optimizer.compression)
    loss = models.task_loss(cfg.task)
    model.compile(optimizer=optimizer, loss=loss, metrics=models.task_metrics(cfg.task),
                  jit_compile=False)
    optimizer.build(model.trainable_variables)

    switch = data.AugmentSwitch(cfg.epochs)
    phases = recipe.RecipePhases(plan, switch)
    snapshots = recipe.Snapshots.from_plan(snapshot_dir, plan)
    bookkeeping = [phases]
    controller = None
    if adaptive_cfg.enabled or adaptive_cfg.log_theta:
        probe = data.fixed_train_subset(source, adaptive_cfg.theta_samples,
                                        max(1, batch // rt.size), rt.rank, rt.size)
        bookkeeping.append(adaptive.ThetaMonitor(probe, loss,
                                                 os.path.join(run_dir, "theta_reference.npz")))
    if adaptive_cfg.enabled:
        growth = adaptive.BatchGrowth(
            batch, adaptive_cfg.max_batch, adaptive_cfg.growth_factor, adaptive_cfg.lr_scaling,
            adaptive_cfg.theta_threshold, adaptive_cfg.k_epochs, multiple_of=rt.size)
        lr_control = adaptive.LRControl(
            adaptive_cfg.lr_control, adaptive_cfg.beta, adaptive_cfg.decay_epochs,
            adaptive_cfg.saturation_patience, adaptive_cfg.saturation_threshold,
            max_decays=adaptive_cfg.max_decays)
        controller = adaptive.AdaptiveBatchSize(
            growth, lr_control, learning_rate,
            lambda b: data.steps_per_epoch(source.num_train, b))
        bookkeeping.append(controller)
    stop = None
    if cfg.stop.patience:
        stop = adaptive.ConvergenceStop(cfg.stop.monitor or cfg.monitor, cfg.stop.min_delta,
                                        cfg.stop.patience)
    logger = cb.RunLogger(batch, steps, paths["history"])
    tta = cb.TimeToAccuracy(cfg.target_accuracies, monitor=cfg.monitor)
    stateful = [cb_ for cb_ in bookkeeping + [snapshots, logger, tta, stop]
                if getattr(cb_, "state_key", None)]
    started_from = (state or {}).get("config_file") or (
        os.path.realpath(config_file) if config_file else None)
    checkpointer = cb.Checkpointer(paths["checkpoint"], stateful=stateful,
                                   extra_state=lambda: {"config_file": started_from,
                                                        "world_size": rt.size})
    initial_epoch = 0
    if state is not None:
        initial_epoch = checkpointer.restore(model, state, load_variables=rt.is_chief)
        logger.write_history()  # drop rows of epochs after the checkpoint
    finished = stop is not None and stop.stopped_epoch is not None

    if verbose == "auto":  # horovodrun prefixes every line: a redrawn bar cannot work
        verbose = 1 if sys.stdout.isatty() and rt.size == 1 else 2
    evaluation = None
    if initial_epoch < cfg.epochs and not finished:
        def make_dataset(global_batch, first_epoch):
            global_batch = global_batch or batch
            ds = data.train_dataset(source, global_batch, cfg.seed, rt.rank, rt.size,
                                    first_epoch, cfg.epochs, augment_switch=switch)
            return ds, data.steps_per_epoch(source.num_train, global_batch)

        val_ds = data.val_dataset(source, max(1, batch // rt.size), rt.rank, rt.size)
        guards = [faults.DivergenceGuard(), faults.StallWatchdog(rt.rank, rt.size)]
        callbacks = distributed.callbacks() + guards + bookkeeping + [
            snapshots, logger, tta, *([stop] if stop else []), checkpointer, *extra_callbacks]
        try:
            adaptive.fit(model, make_dataset, cfg.epochs, initial_epoch, adaptive=controller,
                         validation_data=val_ds, callbacks=callbacks,
                         verbose=verbose if rt.is_chief else 0)
        except faults.TrainingDiverged as err:
            if rt.is_chief:
                summary = make_summary(cfg, logger.rows, tta.reached, rt, source.num_train)
                summary.update(status="diverged", diverged=err.to_dict())
                ckpt.atomic_write_json(paths["summary"], summary)
            raise
        if cfg.task == "classification":
            evaluation = ensemble.EnsembleEvaluation(snapshots, val_ds, paths["ensemble"],
                                                     min_snapshots=2)
            evaluation.set_model(model)
            evaluation.on_train_end()

    summary = make_summary(cfg, logger.rows, tta.reached, rt, source.num_train)
    summary["status"] = "completed"
    summary["snapshots"] = [s["epoch"] for s in snapshots.snapshots]
    if stop is not None:
        summary["convergence"] = {
            "monitor": stop.monitor, "stopped_epoch": stop.stopped_epoch,
            "best": stop.best, "best_epoch": stop.best_epoch,
            "seconds_to_best": next((r["elapsed_seconds"] for r in logger.rows
                                     if r["epoch"] == stop.best_epoch), None)}
    if controller is not None:
        summary["adaptive"] = {"events": controller.events, "K": controller.growth.k,
                               "final_batch": controller.batch_size}
    if evaluation is not None and evaluation.result is not None:
        summary["ensemble"] = {
            "top1": evaluation.result["ensemble"]["top1"],
            "top5": evaluation.result["ensemble"]["top5"],
            "snapshot_top1": {str(r["epoch"]): r["top1"]
                              for r in evaluation.result["snapshots"]}}
    if rt.is_chief:
        ckpt.atomic_write_json(paths["summary"], summary)
    distributed.barrier()
    return summary


def _note_world_size_change(run_dir: str, state: dict, cfg, resume_changes) -> None:
    """Records a resume's config changes and a changed number of ranks in resumes.json,
    saying what the world-size policy keeps (lbsgd.resize)."""
    from lbsgd import resize, runtime

    size = runtime.current().size
    resized = resize.changes(state, cfg, size)
    if resume_changes or resized:
        _record_resume(run_dir, state["epochs_done"], {**(resume_changes or {}), **resized})
    if resized:
        print(f"lbsgd.train: {resize.describe(state, cfg, size)}", file=sys.stderr)


def _record_resume(run_dir: str, epochs_done: int, changes: dict) -> None:
    """Appends the config changes of a resume to the run directory's resumes.json."""
    import json
    import time

    from lbsgd import checkpoint as ckpt
    path = os.path.join(run_dir, "resumes.json")
    try:
        with open(path) as f:
            log = json.load(f)
    except (OSError, ValueError):
        log = []
    log.append({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "epochs_done": epochs_done,
                "changes": {k: {"before": b, "after": a} for k, (b, a) in changes.items()}})
    ckpt.atomic_write_json(path, log)


def make_summary(cfg, rows, reached, rt, num_train) -> dict:
    """summary.json: final metrics, time, throughput, ranks and time-to-accuracy."""
    last = rows[-1] if rows else {}
    train_seconds = sum(r["batch_size"] * r["steps"] / r["images_per_second"]
                        for r in rows if r.get("images_per_second"))
    images = sum(r["batch_size"] * r["steps"] for r in rows)
    return {
        "name": cfg.name,
        "epochs": len(rows),
        "num_ranks": rt.size,
        "threads_per_rank": rt.intra_op_threads,
        "global_batch": cfg.batch_size,
        "num_train_examples": num_train,
        "final": {k: last.get(k) for k in ("loss", "accuracy", "val_loss", "val_accuracy",
                                           "psnr", "val_psnr") if k in last},
        "best": {cfg.monitor: max((r[cfg.monitor] for r in rows if cfg.monitor in r),
                                  default=None)},
        "optimizer_steps": int(sum(r["steps"] for r in rows)),
        "total_seconds": last.get("elapsed_seconds", 0.0),
        "train_seconds": train_seconds,
        "images_per_second": images / train_seconds if train_seconds else None,
        "time_to_accuracy": reached,
    }


# --------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------

def _define_flags():
    from absl import flags

    flags.DEFINE_string("config", None, "Config file: configs/<name>.py or a run's config.json.")
    flags.DEFINE_string("run_dir", None, "Run directory (default runs/<config name>).")
    flags.DEFINE_bool("resume", False, "Continue from the run directory's checkpoint, "
                      "with the run's config.json as the base config.")
    flags.DEFINE_bool("overwrite", False, "Replace an earlier run in the run directory.")
    flags.DEFINE_list("allow_change", [], "With --resume: config fields that may differ from "
                      "the run's config.json (the change is recorded in resumes.json).")
    flags.DEFINE_bool("validate_only", False, "Check the config and exit.")
    for path, hint in config_lib.leaves():
        flags.DEFINE_string(path, None, f"Override config field {path} "
                                        f"({getattr(hint, '__name__', hint)}).")
    return flags.FLAGS


def resolve_config(FLAGS) -> tuple["config_lib.TrainConfig", str, dict]:
    """The config, run directory and resume changes the flags describe (raises ConfigError).

    With --resume the run's own config.json is the base (so a resumed run is
    the run that was started); --config and flag overrides still apply on
    top of it, but a change to a field that alters the run's trajectory is
    refused unless --allow_change names it. Returns the changes made.
    """
    run_dir = FLAGS.run_dir
    overrides = {p: FLAGS[p].value for p, _ in config_lib.leaves() if FLAGS[p].value is not None}
    if not FLAGS.resume:
        if FLAGS.allow_change:
            raise config_lib.ConfigError("Field `allow_change` only applies with --resume. "
                                         f"Received: allow_change={','.join(FLAGS.allow_change)!r}")
        if FLAGS.config is None:
            raise config_lib.ConfigError("Field `config` is required. Received: config=None")
        cfg = config_lib.apply_overrides(config_lib.load_config(FLAGS.config), overrides)
        return cfg, run_dir or os.path.join("runs", cfg.name), {}
    if run_dir is None:
        if FLAGS.config is None:
            raise config_lib.ConfigError("Field `run_dir` is required with --resume. "
                                         "Received: run_dir=None")
        run_dir = os.path.join("runs", config_lib.load_config(FLAGS.config).name)
    saved_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(os.path.join(run_dir, "checkpoint.npz")) or not os.path.isfile(
            saved_path):
        raise config_lib.ConfigError(
            f"Field `run_dir` must hold a run to resume (config.json and checkpoint.npz); "
            f"start it without --resume. Received: run_dir={run_dir!r}")
    from lbsgd import rundir
    state = rundir.read_checkpoint_state(os.path.join(run_dir, rundir.CHECKPOINT), verify=True)
    saved = config_lib.load_config(saved_path)
    base = saved
    if FLAGS.config and os.path.realpath(FLAGS.config) != state.get("config_file"):
        base = config_lib.load_config(FLAGS.config)   # another config: compared field by field
    cfg = config_lib.apply_overrides(base, overrides)
    changes = config_lib.config_changes(saved, cfg)
    config_lib.check_resume_changes(changes, tuple(FLAGS.allow_change))
    return cfg, run_dir, changes


def _error(err, code: int = 2) -> int:
    print(f"lbsgd.train: error: {err}", file=sys.stderr)
    return code


def main(argv=None) -> int:
    from absl import flags

    FLAGS = _define_flags()
    try:
        FLAGS(argv if argv is not None else sys.argv)
    except flags.Error as err:
        return _error(err)
    try:
        cfg, run_dir, changes = resolve_config(FLAGS)
        size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("HOROVOD_SIZE", "1")))
        cfg.validate_for(size)
        config_lib.check_data_files(cfg.data)
        from lbsgd import rundir
        rundir.RunDir(run_dir).check_can_start(FLAGS.resume, FLAGS.overwrite)
        if FLAGS.resume:
            from lbsgd import resize
            resize.check_resume(rundir.read_checkpoint_state(os.path.join(
                run_dir, rundir.CHECKPOINT)), cfg, size)
    except config_lib.ConfigError as err:
        return _error(err)
    if FLAGS.validate_only:
        print(f"lbsgd.train: config {cfg.name!r} is valid")
        return 0
    from lbsgd import faults, runtime
    try:
        summary = run(cfg, run_dir, resume=FLAGS.resume, overwrite=FLAGS.overwrite,
                      resume_changes=changes, config_file=FLAGS.config)
    except config_lib.ConfigError as err:
        return _error(err)
    except faults.TrainingDiverged as err:
        if not runtime.current().is_chief:
            return faults.EXIT_DIVERGED
        kept = os.path.join(run_dir, "checkpoint.npz")
        tail = (f"the checkpoint of epoch {err.epoch - 1} is kept in {kept}" if
                err.epoch > 1 and os.path.isfile(kept) else "no checkpoint was written")
        return _error(f"{err}; {tail}; summary.json says \"diverged\". Lower "
                      "--optimizer.base_lr or lengthen --schedule.warmup_epochs.",
                      faults.EXIT_DIVERGED)
    if runtime.current().is_chief:
        final = summary["final"]
        metric = cfg.monitor
        print(f"lbsgd.train: {cfg.name}: {summary['epochs']} epochs on {summary['num_ranks']} "
              f"ranks in {summary['total_seconds']:.1f} s, {metric} "
              f"{final.get(metric)}, {summary['images_per_second'] or 0:.1f} images/s; "
              f"run directory {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
