"""`--help` of every lbsgd command: the config fields, read from each section's docstring.

Serves both papers' experiment tables by listing every knob a run has.
`python -m lbsgd.train --help` lists the job's own flags and every config
field by dotted name, with its type, default and the description from its
section's "Attributes:" docstring (:func:`fields_help`), grouped by section;
with `--config FILE` it also shows the values FILE sets. The other commands
(ensemble, probe, plots, scaling, efficiency) build their argparse parser
with :func:`command_parser`, which shows defaults and a block of examples.
Nothing here imports TensorFlow, so help is instant.
"""

from __future__ import annotations

import dataclasses
import argparse
import shutil
import typing

from lbsgd.config.resume import flatten
from lbsgd.config.schema import TrainConfig, leaves, load_config
from lbsgd.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class FieldHelp:
    """One config field as `--help` lists it."""

    path: str          # dotted name, e.g. "optimizer.base_lr"
    type_name: str     # "int", "float", "bool", "str" or "list"
    default: object    # the dataclass default
    description: str   # from the section's "Attributes:" docstring, one paragraph


def attribute_docs(cls) -> dict[str, str]:
    """{field name: description} from a config dataclass's Google-style "Attributes:" section.

    An entry is `name: text` with continuation lines indented deeper;
    `a, b: text` describes both fields.
    """
    lines = (cls.__doc__ or "").expandtabs().splitlines()
    docs, names, indent = {}, None, None
    for i, line in enumerate(lines):
        if line.strip() == "Attributes:":
            body = lines[i + 1:]
            break
    else:
        return {}
    for line in body:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:
            break
        if depth == indent and ":" in line:
            head, text = line.strip().split(":", 1)
            names = [n.strip() for n in head.split(",")]
            for n in names:
                docs[n] = text.strip()
        elif names:
            for n in names:
                docs[n] = f"{docs[n]} {line.strip()}".strip()
    return docs


def _type_name(hint) -> str:
    if (typing.get_origin(hint) or hint) is tuple:
        return "list"
    return getattr(hint, "__name__", str(hint))


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def config_sections(cls=TrainConfig, prefix: str = ""):
    """[(section prefix, section class, [FieldHelp of its leaf fields])], depth first.

    Raises ConfigError naming a field that has no description (every field
    must be documented in its class's "Attributes:" section).
    """
    hints, docs = typing.get_type_hints(cls), attribute_docs(cls)
    leaves_here, nested = [], []
    for f in dataclasses.fields(cls):
        hint, path = hints[f.name], f"{prefix}{f.name}"
        if f.name not in docs:
            raise ConfigError(f"Field `{path}` has no description in {cls.__name__}'s "
                              f"\"Attributes:\" docstring. Received: {path}")
        if dataclasses.is_dataclass(hint):
            nested.append((hint, f"{path}."))
        else:
            leaves_here.append(FieldHelp(path, _type_name(hint), _default(f), docs[f.name]))
    sections = [(prefix.rstrip("."), cls, leaves_here)]
    for hint, sub in nested:
        sections += config_sections(hint, sub)
    return sections


def format_value(value) -> str:
    """A field value as it is written on the command line (`true`, `30,60,80`, `0.1`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v) for v in value) or "(empty)"
    if isinstance(value, str):
        return value if value else '""'
    return repr(value)


def fields_help(config: TrainConfig | None = None, width: int = 100) -> str:
    """Every config field grouped by section: `--path=<type>`, its default and description.

    With `config` (e.g. the file given with --config), fields whose value
    there differs from the default also show that value.
    """
    import textwrap

    values = flatten(config.to_dict()) if config is not None else {}
    out = ["Config fields (any of them is a flag: --<field>=<value>; lists are "
           "comma-separated, bools true/false):"]
    for section, cls, fields in config_sections():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        out += ["", f"{section or 'run'}: {summary}"]
        for f in fields:
            head = f"  --{f.path}=<{f.type_name}>"
            note = f"default: {format_value(f.default)}"
            if f.path in values and values[f.path] != f.default:
                note += f"; in the config: {format_value(values[f.path])}"
            out.append(f"{head:<44} {note}" if len(head) < 44 else f"{head}  {note}")
            out += textwrap.wrap(f.description, width, initial_indent=" " * 6,
                                 subsequent_indent=" " * 6)
    return "\n".join(out)


# --------------------------------------------------------------------------
# The commands' --help.
# --------------------------------------------------------------------------

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

    width = _width()
    field_paths = {path for path, _ in leaves()}
    module = flags.find_module_defining_flag("config")
    own = [f for f in flags.get_flags_for_module(module) if f.name not in field_paths]
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
            config = load_config(path)
        except ConfigError as err:
            note = f"\n(--config {path} not shown: {err})"
    lines += ["", fields_help(config, width=width) + note]
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
