"""Typed, validated run configuration: one dataclass per concern, paper values as defaults.

Serves both papers' experiment tables (Codreanu et al. Tables I-IX; Lee et al.
Tables I-III): a config names every knob of a run, is validated before any
process trains, and is written, fully resolved, into the run directory.

* `checks`: every field's choices and the one-line errors
* `data`: `DataConfig` and the checks of its files before any rank starts
* `sections`: `ModelConfig`, `OptimizerConfig`, `ScheduleConfig`, `EnsembleConfig`,
  `AdaptiveConfig`, `StopConfig`
* `schema`: `TrainConfig`, dotted overrides (`apply_overrides`), config files (`load_config`)
* `resume`: which changes a resumed run may make
* `help`: `--help` of every command, from the sections' docstrings

Every public name is importable from `lbsgd.config` itself.
"""

from lbsgd._exports import lazy

_WHERE = {
    "AUGMENTATIONS": "checks", "COMPRESSIONS": "checks", "DATASETS": "checks",
    "DECAYS": "checks", "DEFAULT_BUCKET_MB": "checks", "EXCHANGES": "checks",
    "EXCLUSIONS": "checks",
    "IMAGENET_TRAIN_EXAMPLES": "checks", "LR_CONTROLS": "checks", "LR_SCALINGS": "checks",
    "MODELS": "checks", "OPTIMIZERS": "checks", "RESTORATION_DATASETS": "checks",
    "SCHEDULE_KINDS": "checks", "START_BATCHES": "checks", "check_argument_choice": "checks",
    "CIFAR10_TRAIN_EXAMPLES": "data", "DIGITS_EXAMPLES": "data", "DataConfig": "data",
    "FASHION_MNIST_DIR": "data", "FASHION_MNIST_FILES": "data", "FASHION_MNIST_PACKAGE": "data",
    "FASHION_MNIST_TRAIN_EXAMPLES": "data", "IMAGE_EXTENSIONS": "data",
    "check_data_files": "data", "check_image_folder": "data", "fashion_mnist_files": "data",
    "train_examples": "data", "FieldHelp": "help", "HELP_FLAGS": "help", "TRAIN_USAGE": "help",
    "attribute_docs": "help", "command_parser": "help", "config_sections": "help",
    "fields_help": "help", "format_value": "help", "print_train_help": "help",
    "train_help": "help", "wants_help": "help", "ConfigError": "lbsgd.errors",
    "RESUME_NEUTRAL_FIELDS": "resume", "check_resume_changes": "resume",
    "config_changes": "resume", "flatten": "resume", "RENAMED_FIELDS": "schema",
    "TrainConfig": "schema", "apply_overrides": "schema", "leaves": "schema",
    "load_config": "schema", "AdaptiveConfig": "sections", "EnsembleConfig": "sections",
    "ModelConfig": "sections", "OptimizerConfig": "sections", "ScheduleConfig": "sections",
    "StopConfig": "sections",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy(__name__, _WHERE)
