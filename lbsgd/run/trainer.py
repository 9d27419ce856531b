"""One training run, wired in one place: data, model, optimizer, callbacks, fit, ensemble, summary.

Every technique of both papers lives in its own module; this is where a run
puts them together (Codreanu et al. IV-VI: linear scaling, warmup, decay,
final collapse, collapsed ensembles, time-to-accuracy; Lee et al. III-D/E:
theta-driven batch growth with LR co-scaling and decay on saturation):

    Trainer(cfg, run_dir).run()
      build_data        the dataset's source, the global batch, steps per epoch
      build_model       the network (models.py) and its loss and metrics
      choose_start_batch  B_s: batch_size, or Lee et al.'s probe (adaptive/probe.py)
      build_optimizer   the LR schedule (schedules.py) or the adaptive LR, the
                        Keras optimizer wrapped by parallel.DistributedOptimizer
      build_callbacks   one callback per technique, in CALLBACK_ORDER, restored
                        from the checkpoint when resuming
      fit               fit_segments: model.fit once per batch size
      evaluate_ensemble the collapse snapshots and their ensemble (ensemble.py)
      export            model.keras and ensemble.keras, Keras' own format (export.py)
      summarize         summary.json

:func:`run` adds the run directory around it (lock, start/resume decision;
rundir.py); `python -m lbsgd.train` is its command line.
"""

from __future__ import annotations

import os
import sys

import keras
import tensorflow as tf

from lbsgd import data
from lbsgd.adaptive import growth as adaptive
from lbsgd.adaptive import probe as start_probe
from lbsgd.adaptive import ranks as rank_growth
from lbsgd.run import callbacks
from lbsgd.run import console
from lbsgd import parallel
from lbsgd.recipe import ensemble
from lbsgd.model import export
from lbsgd.run import faults
from lbsgd.model import networks as models
from lbsgd.optim import lars
from lbsgd.model import precise_bn
from lbsgd.recipe import phases as recipe
from lbsgd.run import resize
from lbsgd.parallel import runtime
from lbsgd.recipe import schedules
from lbsgd import config as config_lib
from lbsgd.run.rundir import RunDir, atomic_write_json

# The order callbacks run in, and why: each entry (a class, or classes whose
# order among themselves is free) must come before every entry below it.
# Keras calls callbacks in list order at every hook, and later callbacks read
# what earlier ones put in the epoch logs.
CALLBACK_ORDER = (
    (parallel.BroadcastGlobalVariables,
     "gives every rank rank 0's variables before any callback reads a weight"),
    (parallel.SyncModelState,
     "averages the BN statistics before validation, snapshots and checkpoints"),
    (precise_bn.PreciseBN,
     "recomputes the BN statistics (the same on every rank) before validation reads them"),
    (parallel.MetricAverage,
     "makes the epoch's metrics global before any callback reads the logs"),
    (faults.DivergenceGuard,
     "stops a non-finite epoch before anything is logged or saved"),
    (faults.StallWatchdog, "watches every later callback's work as well"),
    (recipe.RecipePhases,
     "sets the epoch's weight decay and publishes `phase`, `cycle`, `weight_decay`"),
    ((adaptive.ThetaMonitor, adaptive.AdaptiveBatchSize),   # either order: see AdaptiveBatchSize
     "publishes `theta`, `batch_size`, `steps` and `learning_rate`, which RunLogger records"),
    (recipe.Snapshots,
     "records the text `phase`, which RunLogger takes out of the logs"),
    (callbacks.RunLogger, "publishes `elapsed_seconds`, which TimeToAccuracy reads"),
    (callbacks.TimeToAccuracy, "records the epoch's time before a stop"),
    (callbacks.ConvergenceStop, "decides the stop the checkpoint records"),
    (callbacks.Checkpointer,
     "saves the state every callback above has updated for the epoch"),
    (callbacks.RunTensorBoard,
     "logs an epoch once the checkpoint holds it: a resume never writes a step twice"),
)


def check_callback_order(callback_list) -> None:
    """Raises ValueError when lbsgd's callbacks in `callback_list` are out of CALLBACK_ORDER.

    Callbacks that are not lbsgd's (the user's) may go anywhere.
    """
    rank = {cls: i for i, (entry, _) in enumerate(CALLBACK_ORDER)
            for cls in (entry if isinstance(entry, tuple) else (entry,))}

    def position(cb):
        return next((rank[c] for c in type(cb).__mro__ if c in rank), None)

    known = [(position(cb), cb) for cb in callback_list if position(cb) is not None]
    for j, (rank_j, second) in enumerate(known):
        later = [type(cb).__name__ for rank_i, cb in known[:j] if rank_i > rank_j]
        if later:
            name = type(second).__name__
            raise ValueError(
                f"Callback {name} must come before {', '.join(later)}: {name} "
                f"{CALLBACK_ORDER[rank_j][1]}. Received callbacks in the order "
                f"{[type(cb).__name__ for _, cb in known]} (lbsgd.run.trainer.CALLBACK_ORDER).")


def fit_segments(model, make_dataset, epochs: int, initial_epoch: int = 0, adaptive=None,
                 stopped=None, **fit_kwargs) -> int:
    """`model.fit` in segments of constant batch size; returns the epochs done.

    Lee et al.'s batch grows between epochs; Keras fixes a fit's dataset, so
    each batch size is one `model.fit` over the same callbacks.

    Args:
      make_dataset: callable(global_batch, first_epoch) -> (dataset, steps)
        giving this rank's batches from `first_epoch` on at that global batch.
      adaptive: the AdaptiveBatchSize callback in `fit_kwargs["callbacks"]`
        (None: one ordinary fit at a fixed batch `make_dataset(None, ...)`).
      stopped: callable() -> bool: the run stopped for good (default: a
        ConvergenceStop among the callbacks has stopped it).
      fit_kwargs: passed to every `model.fit` (callbacks, validation_data,
        verbose, ...); the callbacks are checked against CALLBACK_ORDER.
    """
    check_callback_order(fit_kwargs.get("callbacks", []))
    if stopped is None:
        stops = [cb for cb in fit_kwargs.get("callbacks", [])
                 if isinstance(cb, callbacks.ConvergenceStop)]
        stopped = lambda: any(cb.stopped_epoch is not None for cb in stops)  # noqa: E731
    fit_kwargs.setdefault("shuffle", False)  # the order is the dataset's; Keras would only warn
    epoch = initial_epoch
    while epoch < epochs:
        batch = adaptive.batch_size if adaptive is not None else None
        dataset, steps = make_dataset(batch, epoch)
        history = model.fit(dataset, epochs=epochs, initial_epoch=epoch,
                            steps_per_epoch=steps, **fit_kwargs)
        epoch += len(history.epoch)
        if adaptive is None or not adaptive.pending or stopped():
            break
    return epoch


def build_distributed_optimizer(opt: config_lib.OptimizerConfig, learning_rate,
                                weight_decay: float) -> keras.optimizers.Optimizer:
    """`opt.name`'s Keras optimizer in DistributedOptimizer, with the epoch's L2 coefficient.

    "lars" decays inside its trust ratio (its `l2_weight_decay` is the
    wrapper's); the others get lbsgd's L2 on the gradient of the variables
    `opt.excluded_variables` does not exclude.
    """
    if opt.name == "lars":
        return parallel.DistributedOptimizer(
            lars.LARS(learning_rate, momentum=opt.momentum,
                      trust_coefficient=opt.trust_coefficient,
                      exclude_from_adaptation=opt.excluded_variables),
            exchange=opt.exchange, weight_decay=weight_decay,
            momentum_correction=opt.momentum_correction, compression=opt.compression,
            bucket_mb=opt.bucket_mb)
    base = {"sgd": lambda: keras.optimizers.SGD(learning_rate, momentum=opt.momentum),
            "adam": lambda: keras.optimizers.Adam(learning_rate),
            "lamb": lambda: keras.optimizers.Lamb(learning_rate)}[opt.name]()
    rule = opt.excluded_variables
    return parallel.DistributedOptimizer(
        base, exchange=opt.exchange, weight_decay=weight_decay,
        decay_filter=lambda v: not lars.is_excluded(v, rule),
        momentum_correction=opt.momentum_correction, compression=opt.compression,
            bucket_mb=opt.bucket_mb)


class Trainer:
    """Trains one config on this rank, from scratch or from a checkpoint's state.

    Args:
      cfg: the validated run config.
      run_dir: the run directory (a RunDir or a path); the caller decided it
        (rank 0 holds its lock).
      state: the checkpoint's trainer state to resume from (None: from scratch).
      verbose: 0: no progress output; otherwise (e.g. "auto") rank 0 prints
        lbsgd.run.console.EpochProgress lines; other ranks are silent.
      extra_callbacks: the user's Keras callbacks, run after lbsgd's.
      config_file: the config file the run starts from (kept in the
        checkpoint, so `--resume --config <the same file>` is recognised).
      tensorboard: rank 0 writes Keras TensorBoard logs to the run's tensorboard/.
    """

    def __init__(self, cfg: config_lib.TrainConfig, run_dir, state: dict | None = None,
                 verbose: int | str = "auto", extra_callbacks=(), config_file: str | None = None,
                 tensorboard: bool = True):
        self.cfg = cfg
        self.run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self.state = state
        self.rt = runtime.current()
        self.verbose = verbose
        self.extra_callbacks = list(extra_callbacks)
        self.config_file = config_file
        self.tensorboard = bool(tensorboard)
        self.trained = False          # whether this job ran any epoch
        self.export_seconds = {}
        self.plan = recipe.build_plan(cfg)
        self.initial_epoch = 0
        self.evaluation = None
        self.start = None             # the start-up probe's record (adaptive.start_batch="probe")

    def run(self) -> dict:
        """Every step in order; returns the summary (also in summary.json)."""
        self.build_data()
        self.build_model()
        self.choose_start_batch()
        self.build_optimizer()
        self.build_callbacks()
        if self.initial_epoch < self.cfg.epochs and not self.stopped():
            try:
                self.trained = True
                epochs_done = self.fit()
                if self.relaunch_due():   # more ranks: the launcher restarts from the checkpoint
                    self.ranks.request(self.controller.batch_size, epochs_done, self.rt.is_chief,
                                       rank_growth.resume_args(self.run_dir.path, sys.argv[1:]))
            except faults.TrainingDiverged as err:
                self.summarize(status="diverged", diverged=err.to_dict())
                raise
            self.evaluate_ensemble()
            self.export()
        return self.summarize(status="completed")

    # -- build steps ---------------------------------------------------------
    def build_data(self) -> None:
        cfg = self.cfg
        keras.utils.set_random_seed(cfg.seed)
        self.source = data.load_source(cfg.data, cfg.seed)
        self.batch = cfg.batch_size           # B_s unless choose_start_batch probes it
        self.augment_switch = data.AugmentSwitch(cfg.epochs)

    def make_dataset(self, global_batch: int | None, first_epoch: int):
        """This rank's training batches from `first_epoch` on (fit_segments' callable)."""
        global_batch = global_batch or self.batch
        ds = data.train_dataset(self.source, global_batch, self.cfg.seed, self.rt.rank,
                                self.rt.size, first_epoch, self.cfg.epochs,
                                augment_switch=self.augment_switch)
        return ds, data.steps_per_epoch(self.source.num_train, global_batch)

    def build_model(self) -> None:
        cfg = self.cfg
        self.model = models.build_model(cfg.model, self.source.input_shape,
                                        self.source.num_classes)
        self.loss = models.task_loss(cfg.task)

    def choose_start_batch(self) -> None:
        """B_s: the config's batch_size, or with adaptive.start_batch="probe" Lee et al.'s
        gradient-norm probe (III-D) at rank 0's initial weights; a resumed run keeps the
        checkpoint's choice and never probes again."""
        a, rt = self.cfg.adaptive, self.rt
        if a.enabled and a.start_batch == "probe":
            self.start = (start_probe.start_record(self.model, self.loss, self.source, a,
                                                   self.batch, self.cfg.seed,
                                                   verbose=bool(self.verbose))
                          if self.state is None else start_probe.resumed_record(
                              self.state.callback(adaptive.AdaptiveBatchSize.state_key)))
            self.batch = int(self.start["start_batch"])
        self.steps = data.steps_per_epoch(self.source.num_train, self.batch)
        self.val_dataset = data.val_dataset(self.source, max(1, self.batch // rt.size),
                                            rt.rank, rt.size)

    def build_optimizer(self) -> None:
        cfg, opt = self.cfg, self.cfg.optimizer
        if cfg.adaptive.enabled:  # AdaptiveBatchSize owns the LR: a plain value it sets
            self.learning_rate = schedules.linear_scaling(opt.base_lr, self.batch,
                                                          opt.reference_batch, opt.max_lr)
        else:
            self.learning_rate = schedules.build_schedule(opt, cfg.schedule, self.batch,
                                                          self.steps, cfg.epochs)
        self.optimizer = build_distributed_optimizer(opt, self.learning_rate,
                                                     self.plan[0].weight_decay)
        self.model.compile(optimizer=self.optimizer, loss=self.loss,
                           metrics=models.task_metrics(cfg.task), jit_compile=False)
        self.optimizer.build(self.model.trainable_variables)

    def build_callbacks(self) -> None:
        """One callback per technique, in CALLBACK_ORDER; restored when resuming."""
        cfg, rt, run_dir = self.cfg, self.rt, self.run_dir
        self.phases = recipe.RecipePhases(self.plan, self.augment_switch)
        self.theta = self.controller = self.stop = None
        if cfg.adaptive.enabled or cfg.adaptive.log_theta:
            probe = data.fixed_train_subset(self.source, cfg.adaptive.theta_samples,
                                            max(1, self.batch // rt.size), rt.rank, rt.size)
            self.theta = adaptive.ThetaMonitor(probe, self.loss, run_dir.theta_reference)
        if cfg.adaptive.enabled:
            self.controller = self._adaptive_controller()
        self.ranks = (rank_growth.RankGrowth(cfg.adaptive.max_ranks, self.batch // rt.size,
                                             rt.size) if self.controller and
                      cfg.adaptive.max_ranks else None)
        self.snapshots = recipe.Snapshots.from_plan(run_dir.snapshots, self.plan)
        self.logger = callbacks.RunLogger(self.batch, self.steps, run_dir.history, rt.size)
        self.time_to_accuracy = callbacks.TimeToAccuracy(cfg.target_accuracies,
                                                         monitor=cfg.monitor)
        if cfg.stop.patience:
            self.stop = callbacks.ConvergenceStop(cfg.stop.monitor or cfg.monitor,
                                                  cfg.stop.min_delta, cfg.stop.patience)
        bookkeeping = [cb for cb in (self.phases, self.theta, self.controller, self.snapshots,
                                     self.logger, self.time_to_accuracy, self.stop) if cb]
        started_from = (self.state.config_file if self.state else None) or (
            os.path.realpath(self.config_file) if self.config_file else None)
        self.checkpointer = callbacks.Checkpointer(
            run_dir.checkpoint, stateful=[cb for cb in bookkeeping + [self.ranks]
                                          if getattr(cb, "state_key", None)],
            extra_state=lambda: {"config_file": started_from, "world_size": rt.size})
        guards = [faults.DivergenceGuard(), faults.StallWatchdog(rt.rank, rt.size)]
        broadcast, sync, metrics = parallel.callbacks()
        self.precise_bn, self._precise_bn_pipelines = None, {}
        if cfg.model.precise_bn_batches:
            self.precise_bn = precise_bn.PreciseBN(self.precise_bn_batches,
                                                   cfg.model.precise_bn_batches)
        board = []
        if self.tensorboard and rt.is_chief:
            if callbacks.tensorboard_installed():
                board = [callbacks.RunTensorBoard(run_dir.tensorboard,
                                                  rows=lambda: self.logger.rows)]
            else:
                print("lbsgd.train: no TensorBoard logs: the tensorboard package is not "
                      "installed (pip install tensorboard; --tensorboard=false silences this)",
                      file=sys.stderr)
        self.callbacks = ([broadcast, sync] + ([self.precise_bn] if self.precise_bn else [])
                          + [metrics] + guards + bookkeeping + [self.checkpointer] + board
                          + self.extra_callbacks)
        check_callback_order(self.callbacks)
        if self.state is not None:
            self.initial_epoch = self.checkpointer.restore(self.model, self.state,
                                                           load_variables=rt.is_chief)
            self.logger.write_history()  # drop rows of epochs after the checkpoint
            if self.ranks is not None:     # a restart on more ranks counts in the run's time
                self.logger.elapsed_seconds += self.ranks.resumed(self.initial_epoch,
                                                                  self.state.world_size)

    def _adaptive_controller(self) -> adaptive.AdaptiveBatchSize:
        a = self.cfg.adaptive
        growth = adaptive.BatchGrowth(self.batch, a.max_batch, a.growth_factor, a.lr_scaling,
                                      a.theta_threshold, a.k_epochs, multiple_of=self.rt.size)
        lr_control = adaptive.LRControl(a.lr_control, a.beta, a.lr_decay_epochs,
                                        a.saturation_patience, a.saturation_threshold,
                                        max_decays=a.max_decays)
        return adaptive.AdaptiveBatchSize(
            growth, lr_control, self.learning_rate,
            lambda b: data.steps_per_epoch(self.source.num_train, b), theta_monitor=self.theta,
            start=self.start)

    def precise_bn_batches(self, epoch: int):
        """PreciseBN's batches: this rank's of `epoch` at the current global batch (the
        adaptive batch's), augmented as that epoch; a pipeline of their own (training is
        untouched) that yields at most one epoch of this rank's shard (steps_per_epoch)."""
        batch = self.controller.batch_size if self.controller is not None else self.batch
        if batch not in self._precise_bn_pipelines:   # one per batch size, not per epoch
            epoch_variable = tf.Variable(0, dtype=tf.int64, trainable=False)
            self._precise_bn_pipelines[batch] = (epoch_variable, precise_bn.training_batches(
                self.source, batch, self.cfg.seed, self.rt.rank, self.rt.size, epoch_variable,
                self.augment_switch))
        epoch_variable, batches = self._precise_bn_pipelines[batch]
        epoch_variable.assign(epoch)
        return batches

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.stopped_epoch is not None

    # -- run steps -----------------------------------------------------------
    def fit(self) -> int:
        """fit_segments over the callbacks; rank 0 prints Keras-style epoch lines unless verbose=0."""
        progress = [console.EpochProgress()] if self.verbose else []
        if self.relaunch_due():        # resumed on fewer ranks than the batch calls for
            return self.initial_epoch
        return fit_segments(self.model, self.make_dataset, self.cfg.epochs, self.initial_epoch,
                            adaptive=self.controller, validation_data=self.val_dataset,
                            callbacks=self.callbacks + progress, verbose=0,
                            stopped=lambda: self.stopped() or self.relaunch_due())

    def relaunch_due(self) -> bool:
        """Lee et al. IV-A: the grown batch calls for more ranks than this job has."""
        return self.ranks is not None and self.ranks.due(self.controller.batch_size,
                                                         self.rt.is_chief)

    def evaluate_ensemble(self) -> None:
        """Codreanu et al. VI: the snapshots and their softmax-averaged ensemble (>= 2 snapshots)."""
        if self.cfg.task != "classification":
            return
        last = (self.cfg.schedule.ensemble.num_snapshots
                if self.cfg.schedule.kind == "collapsed_ensemble" else 0)
        self.evaluation = ensemble.EnsembleEvaluation(self.snapshots, self.val_dataset,
                                                      self.run_dir.ensemble, min_snapshots=2,
                                                      last=last)
        self.evaluation.evaluate(self.model)

    def export(self) -> None:
        """Rank 0 writes model.keras and, where the run has a collapsed ensemble,
        ensemble.keras (lbsgd.model.export); the seconds each took go to the summary."""
        if not self.rt.is_chief:
            return
        import time
        t0 = time.perf_counter()
        export.save_model(self.model, self.run_dir.model)
        self.export_seconds["model"] = time.perf_counter() - t0
        result = self.evaluation.result if self.evaluation is not None else None
        if result is not None:
            members = set(result["ensemble"]["members"])
            paths = [p for p in self.snapshots.paths if os.path.basename(p) in members]
            t0 = time.perf_counter()
            export.save_ensemble(self.model, paths, self.run_dir.ensemble_model)
            self.export_seconds["ensemble"] = time.perf_counter() - t0

    def summarize(self, status: str, **extra) -> dict:
        """summary.json (rank 0 writes it); returned on every rank."""
        summary = callbacks.make_summary(self.cfg, self.logger.rows, self.time_to_accuracy.reached,
                               self.rt, self.source.num_train)
        if self.state is not None and not self.trained:   # a resume with nothing left to train
            # reports the run's own ranks
            summary["num_ranks"] = int(self.state.world_size or summary["num_ranks"])
        summary.update(status=status, **extra)
        if status == "completed":
            summary.update(self._results())
        if self.export_seconds:
            summary["export_seconds"] = dict(self.export_seconds)
        if self.rt.is_chief:
            atomic_write_json(self.run_dir.summary, summary)
        if status == "completed":
            parallel.barrier()
        return summary

    def _results(self) -> dict:
        out = {"snapshots": [s["epoch"] for s in self.snapshots.snapshots]}
        stop, rows = self.stop, self.logger.rows
        if stop is not None:
            out["convergence"] = {
                "monitor": stop.monitor, "stopped_epoch": stop.stopped_epoch,
                "best": stop.best, "best_epoch": stop.best_epoch,
                "seconds_to_best": next((r["elapsed_seconds"] for r in rows
                                         if r["epoch"] == stop.best_epoch), None)}
        if self.controller is not None:
            if self.ranks is not None:
                out["restarts"] = {"count": len(self.ranks.restarts),
                                   "seconds": self.ranks.restart_seconds,
                                   "each": self.ranks.restarts}
            out["adaptive"] = {"events": self.controller.events, "K": self.controller.growth.k,
                               "start_batch": self.batch,
                               "final_batch": self.controller.batch_size}
            if self.start is not None:
                out["probe"] = dict(self.start)
        result = self.evaluation.result if self.evaluation is not None else None
        if result is not None:
            out["ensemble"] = {
                "top1": result["ensemble"]["top1"], "top5": result["ensemble"]["top5"],
                "members": result["ensemble"]["members"],
                "snapshot_top1": {str(r["epoch"]): r["top1"] for r in result["snapshots"]}}
        return out


def run(cfg: config_lib.TrainConfig, run_dir: str, resume: bool = False,
        overwrite: bool = False, verbose: int | str = "auto", extra_callbacks=(),
        resume_changes: dict | None = None, config_file: str | None = None,
        tensorboard: bool = True) -> dict:
    """Trains `cfg` in this process (one rank of the job); returns the summary.

    Rank 0 takes the run directory's lock and decides what happens to it
    (RunDir.decide: fresh start, resume, or a refusal every rank raises as
    ConfigError); nothing is written before the lock is held.

    Args:
      cfg: the validated run config.
      run_dir: directory for the run's files (rundir.py names them).
      resume: continue from the run directory's checkpoint.
      overwrite: discard an earlier run in `run_dir` instead of refusing it.
      verbose, extra_callbacks, config_file, tensorboard: see Trainer.
      resume_changes: {field: (before, after)} allowed with --allow_change;
        recorded in the run directory's resumes.json.
    """
    rt = runtime.init()
    cfg.validate_for(rt.size)
    directory = RunDir(run_dir)
    decision = None
    if rt.is_chief:
        try:
            note = directory.lock()
            if note:
                print(f"lbsgd.train: {run_dir}: {note}", file=sys.stderr)
            state = directory.decide(resume, overwrite, cfg.to_json(), resume_changes)
            if state is not None:
                resize.record(directory, state, cfg, rt.size, resume_changes)
            decision = {"state": state}
        except config_lib.ConfigError as err:
            decision = {"error": str(err)}
    decision = parallel.broadcast_object(decision, name="lbsgd.run_dir")
    try:
        if "error" in decision:
            raise config_lib.ConfigError(decision["error"])
        return Trainer(cfg, directory, decision["state"], verbose, extra_callbacks,
                       config_file, tensorboard).run()
    finally:
        directory.unlock()
