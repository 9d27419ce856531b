"""Every `lbsgd.train` command the README tells a user to run validates as printed (its config
file, its flags, its number of ranks), so a renamed field or config cannot break it unseen."""

import os
import re
import shlex

import pytest

from conftest import ROOT, run_python
from lbsgd import config as C


def readme_commands(module):
    """(command line, argv after `python -m module`, -np) of every README bash line running
    `module` on a config file of this checkout (placeholders such as `--config ...` and
    resumes of runs that are not there are left out)."""
    text = open(os.path.join(ROOT, "README.md")).read()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if f"-m {module}" not in line or line.startswith("#"):
                continue
            words = shlex.split(line)
            args = words[words.index(module) + 1:]
            config = next((a.split("=", 1)[1] if "=" in a else args[i + 1]
                           for i, a in enumerate(args) if a.split("=")[0] == "--config"), None)
            if config is None or not os.path.isfile(os.path.join(ROOT, config)):
                continue
            np_ = int(words[words.index("-np") + 1]) if "-np" in words else 1
            found.append((line, args, np_))
    return found


TRAIN = readme_commands("lbsgd.train")


def test_the_readme_has_the_commands_this_test_checks():
    assert len(TRAIN) >= 5
    assert any("--adaptive.max_ranks=2" in line for line, _, _ in TRAIN)


@pytest.mark.parametrize("line, args, np_", TRAIN, ids=[str(i) for i in range(len(TRAIN))])
def test_readme_train_command_validates(tmp_path, line, args, np_):
    proc = run_python("-m", "lbsgd.train", *args, f"--run_dir={tmp_path / 'run'}",
                      "--validate_only", f"--validate_ranks={np_}")
    assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
    assert "is valid" in proc.stdout


@pytest.mark.parametrize("line, args, np_", readme_commands("lbsgd.probe"))
def test_readme_probe_command_config_validates(line, args, np_):
    cfg = C.load_config(os.path.join(ROOT, args[args.index("--config") + 1]))
    cfg.validate_for(np_)


BENCHMARKS = ("reproduce", "overlap", "overlap_timeline", "grow_ranks", "peers", "pipeline")


def readme_benchmark_commands():
    """(line, module, argv) of every README bash line running one of BENCHMARKS."""
    text = open(os.path.join(ROOT, "README.md")).read()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("#") or "-m benchmarks." not in line:
                continue
            words = shlex.split(line)
            for name in BENCHMARKS:
                if f"benchmarks.{name}" in words:   # whole words: overlap is not overlap_timeline
                    found.append((line, name, words[words.index(f"benchmarks.{name}") + 1:]))
    return found


def test_the_readme_runs_each_measurement_benchmark():
    assert {name for _, name, _ in readme_benchmark_commands()} == set(BENCHMARKS)


@pytest.mark.parametrize("line, name, args", readme_benchmark_commands(),
                         ids=lambda x: x if isinstance(x, str) and " " not in x else None)
def test_readme_benchmark_command_plans(tmp_path, line, name, args):
    """Each measurement command the README prints parses and plans its runs as printed."""
    extra = ["--plan"] if "--plan" not in args and "--readme" not in args else []
    if name not in ("overlap", "overlap_timeline", "peers", "pipeline"):
        extra += ["--runs", str(tmp_path / "runs")]
    proc = run_python("-m", f"benchmarks.{name}", *args, *extra)   # a plan writes nothing
    assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
    assert " to do" in proc.stdout or " jobs" in proc.stdout or "| study |" in proc.stdout


def readme_module_lines(module):
    """(line, argv after `-m module`) of every README bash line running `module`."""
    text = open(os.path.join(ROOT, "README.md")).read()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            words = shlex.split(line) if not line.startswith("#") else []
            if module in words:
                found.append((line, words[words.index(module) + 1:]))
    return found


PROFILE = readme_module_lines("benchmarks.profile")


def test_the_readme_runs_the_step_profile():
    assert any("--compare" in args for _, args in PROFILE)


@pytest.mark.parametrize("line, args", PROFILE)
def test_readme_profile_command_flags_parse(line, args):
    """The step profile's flags as the README prints them are its flags, with valid values."""
    code = ("import sys; from absl import flags; from benchmarks import profile; "
            "flags.FLAGS(['profile', *sys.argv[1:]]); print('parsed')")
    proc = run_python("-c", code, *args)
    assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
    assert "parsed" in proc.stdout
