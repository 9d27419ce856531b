"""Command-line help for lbsgd's entry points: `--help` / `-h` of every `python -m lbsgd.*`.

`python -m lbsgd.train --help` lists the job's own flags and every config
field by dotted name, with its type, default and the description from its
section's "Attributes:" docstring (:func:`lbsgd.config.fields_help`), grouped
by section; with `--config FILE` it also shows the values FILE sets. The
other commands (ensemble, probe, plot, scaling, report) build their
argparse parser with :func:`command_parser`, which shows defaults and a block
of examples. Nothing here imports TensorFlow, so help is instant.
"""

from __future__ import annotations

import argparse
import shutil

HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "--helpfull")

TRAIN_USAGE = """\
usage: python -m lbsgd.train --config FILE [--<field>=<value> ...] [--run_dir DIR]
                             [--resume [--allow_change=f1,f2]] [--overwrite] [--validate_only]
       launch/run.sh -np N [horovodrun options] python -m lbsgd.train ...

Train a config data-parallel with Horovod (Codreanu et al.; Lee et al. with
adaptive.enabled). Writes config.json, history.csv, checkpoint.npz and
summary.json into the run directory (rank 0 only).

examples:
  launch/run.sh -np 2 python -m lbsgd.train --config configs/digits_resnet.py
  launch/run.sh -np 2 python -m lbsgd.train --config configs/digits_resnet.py \\
      --epochs=20 --optimizer.base_lr=0.2 --run_dir=runs/try1
  launch/run.sh -np 2 python -m lbsgd.train --run_dir=runs/try1 --resume
  python -m lbsgd.train --config configs/digits_resnet.py --help   # the file's values too"""


def wants_help(argv) -> bool:
    """Whether the command line (argv[0] is the program) asks for help, before any `--`."""
    for arg in list(argv)[1:]:
        if arg == "--":
            return False
        if arg in HELP_FLAGS:
            return True
    return False


def _width() -> int:
    return max(60, min(100, shutil.get_terminal_size((100, 24)).columns))


def _config_argument(argv) -> str | None:
    args = list(argv)[1:]
    for i, arg in enumerate(args):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
    return None


def train_help(flags, argv=()) -> str:
    """The full `python -m lbsgd.train --help` text.

    Args:
      flags: the absl FlagValues the train command defined (its own flags are
        listed from it; config fields are skipped there and listed by section).
      argv: the command line; a `--config FILE` in it adds FILE's values.
    """
    from lbsgd import config as config_lib

    width = _width()
    leaves = {path for path, _ in config_lib.leaves()}
    module = flags.find_module_defining_flag("config")
    own = [f for f in flags.get_flags_for_module(module) if f.name not in leaves]
    lines = [TRAIN_USAGE, "", "flags:"]
    for f in own:
        default = f.default
        if isinstance(default, bool):
            shown = "true" if default else "false"
        elif isinstance(default, list):
            shown = ",".join(default) or "(none)"
        else:
            shown = "(none)" if default is None else str(default)
        kind = {"string": "str", "comma separated list of strings": "list"}.get(
            f.flag_type(), f.flag_type())
        lines.append(f"  --{f.name}=<{kind}>".ljust(30) + f" default: {shown}")
        lines += _wrap(f.help, width)
    lines.append("  -h, --help".ljust(30) + " this help")
    config, note = None, ""
    path = _config_argument(argv)
    if path:
        try:
            config = config_lib.load_config(path)
        except config_lib.ConfigError as err:
            note = f"\n(--config {path} not shown: {err})"
    lines += ["", config_lib.fields_help(config, width=width) + note]
    return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap
    return textwrap.wrap(text, width, initial_indent=" " * 6, subsequent_indent=" " * 6)


def print_train_help(flags, argv) -> bool:
    """Prints the train command's help if argv asks for it; returns whether it did."""
    if not wants_help(argv):
        return False
    print(train_help(flags, argv), flush=True)
    return True


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's and examples' line breaks; appends a default that says something."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" not in text and "default" not in text
                and action.default not in (None, False, argparse.SUPPRESS)
                and action.option_strings):
            text += " (default: %(default)s)"
        return text


def command_parser(prog: str, description: str, examples: str = "") -> argparse.ArgumentParser:
    """The argparse parser of an lbsgd command: `-h/--help` (exit 0) shows the description,
    every option with its default, and `examples` (one command per line)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()) \
        if examples.strip() else None
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                   formatter_class=_Formatter)
