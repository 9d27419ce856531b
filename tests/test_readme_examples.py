"""The README's script examples run as printed (adaptive batch size; the recipe's final collapse)."""

import ast
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, launch_env


def examples() -> dict:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    return dict(re.findall(r"<!-- readme-example: (\w+) -->\n```python\n(.*?)```", text, re.S))


def run_example(name: str) -> str:
    env = dict(launch_env(), PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")   # the session's TMPDIR
    out = subprocess.run([sys.executable, "-c", examples()[name]], capture_output=True,
                         text=True, env=env, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_readme_has_both_examples():
    assert set(examples()) == {"adaptive", "recipe"}


def test_adaptive_example_grows_the_batch_and_co_scales_the_lr():
    line = run_example("adaptive")
    events = ast.literal_eval(line.split("events:", 1)[1].split(" final batch")[0].strip())
    grows = [e for e in events if e["event"] == "grow"]
    assert [e["batch"] for e in grows] == [64, 128]
    assert [e["learning_rate"] for e in grows] == pytest.approx([0.2, 0.4])   # linear with B
    assert line.endswith("final batch 128")


def test_recipe_example_collapses_with_doubled_weight_decay_and_a_snapshot():
    phases, wd, paths = re.match(r"(\[.*?\]) (\S+) (\[.*\])", run_example("recipe")).groups()
    assert ast.literal_eval(phases) == ["warmup"] * 2 + ["main"] * 6 + ["collapse"] * 2
    assert float(wd) == pytest.approx(1e-4)
    (snapshot,) = ast.literal_eval(paths)
    assert snapshot.endswith("epoch_0010.npz") and os.path.isfile(snapshot)
