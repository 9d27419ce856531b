"""The command line of a training job: `python -m lbsgd.train --config configs/<name>.py`.

Serves Codreanu et al. Sections IV-VI and Lee et al. III as a job: run it
under `launch/run.sh -np N` (horovodrun) or as a single process. This module
only turns flags into a config and a run directory and reports the outcome;
the run itself is lbsgd.run.trainer (its build steps) in the directory
lbsgd.run.rundir names (config.json, history.csv, checkpoint.npz, summary.json,
snapshots/, ensemble.json, ...; the README lists them).

Any config leaf is a flag: `--epochs=4 --optimizer.base_lr=0.2`.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lbsgd import config as config_lib  # noqa: E402  (no TensorFlow import)
from lbsgd.run.rundir import RunDir  # noqa: E402  (no TensorFlow either)


def run(*args, **kwargs) -> dict:
    """lbsgd.run.trainer.run: trains a config in this process (one rank of the job)."""
    from lbsgd.run import trainer
    return trainer.run(*args, **kwargs)


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
    flags.DEFINE_integer("validate_ranks", None, "With --validate_only: the number of ranks "
                         "to check the config for (launch/run.sh passes its -np).", lower_bound=1)
    flags.DEFINE_bool("tensorboard", True, "Write Keras TensorBoard logs to the run directory's "
                      "tensorboard/ (rank 0); --tensorboard=false turns them off.")
    for path, hint in config_lib.leaves():
        flags.DEFINE_string(path, None, f"Override config field {path} "
                                        f"({getattr(hint, '__name__', hint)}).")
    return flags.FLAGS


def resolve_config(FLAGS) -> tuple["config_lib.TrainConfig", str, dict]:
    """The config, run directory and resume changes the flags describe (raises ConfigError).

    A new run is named by --name, else after --run_dir's last part, else the
    config's name (its directory then runs/<name>).

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
        if run_dir and "name" not in overrides:   # the run is named after its directory
            overrides["name"] = os.path.basename(os.path.normpath(run_dir))
        cfg = config_lib.apply_overrides(config_lib.load_config(FLAGS.config), overrides)
        return cfg, run_dir or os.path.join("runs", cfg.name), {}
    if run_dir is None:
        if FLAGS.config is None:
            raise config_lib.ConfigError("Field `run_dir` is required with --resume. "
                                         "Received: run_dir=None")
        run_dir = os.path.join("runs", config_lib.load_config(FLAGS.config).name)
    saved_path = RunDir(run_dir).config
    if not os.path.isfile(RunDir(run_dir).checkpoint) or not os.path.isfile(
            saved_path):
        raise config_lib.ConfigError(
            f"Field `run_dir` must hold a run to resume (config.json and checkpoint.npz); "
            f"start it without --resume. Received: run_dir={run_dir!r}")
    from lbsgd.run import rundir
    state = rundir.read_run_state(RunDir(run_dir).checkpoint, verify=True)
    saved = config_lib.load_config(saved_path)
    base = saved
    if FLAGS.config and os.path.realpath(FLAGS.config) != state.config_file:
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

    from lbsgd.config import help as cli

    FLAGS = _define_flags()
    if cli.print_train_help(FLAGS, argv if argv is not None else sys.argv):
        return 0
    try:
        FLAGS(argv if argv is not None else sys.argv)
    except flags.Error as err:
        return _error(err)
    try:
        cfg, run_dir, changes = resolve_config(FLAGS)
        size = FLAGS.validate_ranks if FLAGS.validate_only and FLAGS.validate_ranks else int(
            os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("HOROVOD_SIZE", "1")))
        cfg.validate_for(size)
        config_lib.check_data_files(cfg.data)
        from lbsgd.run import rundir
        state = rundir.RunDir(run_dir).check_can_start(FLAGS.resume, FLAGS.overwrite)
        if FLAGS.resume:   # the world-size policy: the global batch must divide over the ranks
            from lbsgd.run import resize
            resize.check_resume(state, cfg, size)
    except config_lib.ConfigError as err:
        return _error(err)
    if FLAGS.validate_only:
        print(f"lbsgd.train: config {cfg.name!r} is valid")
        return 0
    from lbsgd.parallel import runtime
    runtime.import_tensorflow()   # before anything else loads it: its start-up lines quiet
    from lbsgd.adaptive import ranks
    from lbsgd.run import faults
    try:
        summary = run(cfg, run_dir, resume=FLAGS.resume, overwrite=FLAGS.overwrite,
                      resume_changes=changes, config_file=FLAGS.config,
                      tensorboard=FLAGS.tensorboard)
    except config_lib.ConfigError as err:
        return _error(err)
    except ranks.Relaunch:   # the request is written: launch/run.sh restarts on more ranks
        return 0
    except faults.TrainingDiverged as err:
        if not runtime.current().is_chief:
            return faults.EXIT_DIVERGED
        kept = RunDir(run_dir).checkpoint
        tail = (f"the checkpoint of epoch {err.epoch - 1} is kept in {kept}" if
                err.epoch > 1 and os.path.isfile(kept) else "no checkpoint was written")
        return _error(f"{err}; {tail}; summary.json says \"diverged\". Lower "
                      "--optimizer.base_lr or lengthen --schedule.warmup_epochs.",
                      faults.EXIT_DIVERGED)
    if runtime.current().is_chief:
        from lbsgd.run import console
        console.print_line(console.summary_line(cfg.name, summary, cfg.monitor, run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
