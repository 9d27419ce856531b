"""`--help` / `-h` of every command: exit 0, every config field with type, default, description."""

import dataclasses
import importlib
import re

import pytest

from conftest import horovodrun, run_python
from lbsgd import config


@dataclasses.dataclass
class _Documented:
    """A section.

    Attributes:
      alpha: first line
        continued here.
      beta, gamma: shared text.
      delta: last.

    Not an attribute: text after the section.
    """

    alpha: int = 1
    beta: float = 0.5
    gamma: tuple = (1, 2)
    delta: str = "x"


def test_attribute_docs_parses_google_style_sections():
    assert config.attribute_docs(_Documented) == {
        "alpha": "first line continued here.", "beta": "shared text.",
        "gamma": "shared text.", "delta": "last."}


@pytest.mark.parametrize("value, shown", [
    (True, "true"), (False, "false"), ((30, 60, 80), "30,60,80"), ((), "(empty)"),
    ("", '""'), ("digits", "digits"), (0.1, "0.1"), (5e-05, "5e-05"), (64, "64")])
def test_values_are_shown_as_typed_on_the_command_line(value, shown):
    assert config.format_value(value) == shown


def test_every_config_field_has_a_description():
    sections = config.config_sections()      # raises ConfigError naming an undocumented field
    documented = {f.path: f for _, _, fields in sections for f in fields}
    assert set(documented) == {path for path, _ in config.leaves()}
    assert all(len(f.description) > 5 for f in documented.values())
    assert [s for s, _, _ in sections] == ["", "data", "model", "optimizer", "schedule",
                                           "schedule.ensemble", "adaptive", "stop"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_train_help_lists_every_field_with_type_and_default(flag):
    proc = run_python("-m", "lbsgd.train", flag)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"^  --optimizer\.base_lr=<float> +default: 0\.1$", out, re.M)
    assert "learning rate at the reference batch size." in out
    assert re.search(r"^  --schedule\.step_epochs=<list> +default: 30,60,80$", out, re.M)
    assert re.search(r"^  --data\.flip=<bool> +default: false$", out, re.M)
    for path, hint in config.leaves():
        assert f"  --{path}=<" in out, path
    for section in ("data:", "model:", "optimizer:", "schedule:", "schedule.ensemble:",
                    "adaptive:", "stop:"):
        assert re.search(rf"^{re.escape(section)} ", out, re.M), section
    for flag_name in ("--config=<str>", "--run_dir=<str>", "--resume=<bool>",
                      "--overwrite=<bool>", "--allow_change=<list>", "--validate_only=<bool>"):
        assert flag_name in out


def test_train_help_shows_the_config_files_values():
    proc = run_python("-m", "lbsgd.train", "--config", "configs/digits_resnet.py", "--help")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"--optimizer\.base_lr=<float> +default: 0\.1; in the config: 0\.4",
                     proc.stdout)


def test_launcher_prints_help_without_starting_ranks():
    proc = horovodrun(2, "-m", "lbsgd.train", "--help", timeout=120)     # exits 0
    assert "--optimizer.base_lr=<float>" in proc.stdout
    assert "<stdout>" not in proc.stdout and proc.stdout.count("Config fields") == 1


@pytest.mark.parametrize("module, expected", [
    ("lbsgd.ensemble", ["--run_dir", "--snapshots", "--output", "--overwrite", "examples:"]),
    ("lbsgd.probe", ["--config", "--batches", "(default: 8,16,32,64,128,256)",
                     "--draws", "(default: 5)", "examples:"]),
    ("lbsgd.plots", ["run_dir", "--out", "examples:"]),
    ("lbsgd.scaling", ["--machine", "--latency", "--bandwidth", "examples:"]),
    ("lbsgd.efficiency", ["RUN_DIR", "examples:"]),
])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_other_commands_help(module, expected, flag, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        main([flag])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m {module}")
    words = " ".join(out.split())      # argparse wraps to the terminal's width
    for text in expected:
        assert text in words, (module, text)
