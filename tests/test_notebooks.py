"""Every notebook runs top to bottom on the embedded data (nbclient, headless), into a scratch
copy; notebook 03 reproduces its committed numbers; notebook 04 launches 2-rank jobs."""

import os
import re
import sys

import nbformat
import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "notebooks"))
import run as notebooks  # noqa: E402

EXPECTED_FIGURES = {
    "01_schedules": ["figure3_64k_schedule.png", "figure4_collapsed_ensemble.png",
                     "table1_poly_vs_steps.png"],
    "02_adaptive_batch": ["adaptive_phantom_curves.png"],
    "03_collapsed_ensemble": ["collapsed_ensemble_table.png", "collapsed_ensemble_curves.png"],
    "04_launch_ranks": ["launch_ranks_curves.png", "launch_ranks_compare.png"],
}


def _text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)


def _ensemble_rows(text: str) -> list[str]:
    """The Table XI rows (snapshot and ensemble lines) a notebook printed."""
    return [line for line in text.splitlines() if re.match(r"(epoch_\d{4}\.npz|ensemble) +", line)]


@pytest.mark.parametrize("name", notebooks.NOTEBOOKS)
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.delenv("LBSGD_RECIPE_RUN", raising=False)
    committed = os.path.join(ROOT, "notebooks", f"{name}.ipynb")
    mtime = os.stat(committed).st_mtime_ns
    assert notebooks.main([name, "--out", str(tmp_path)]) == 0
    assert os.stat(committed).st_mtime_ns == mtime                  # scratch copy only
    nb = nbformat.read(str(tmp_path / f"{name}.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert nb.cells[0].cell_type == "markdown" and "What this shows" in nb.cells[0].source
    for fig in EXPECTED_FIGURES[name]:
        assert os.path.getsize(tmp_path / "figures" / fig) > 5000, fig
    text = _text(nb)
    assert "shuffle=True" not in text
    if name == "01_schedules":
        assert "cycle ends (snapshots): [60, 75, 90, 105, 120]" in text
    if name == "02_adaptive_batch":
        assert "K =" in text and "<- B_s" in text
    if name == "03_collapsed_ensemble":
        rows = _ensemble_rows(text)
        assert rows and "top-1 %" in text
        # seeded, on one TensorFlow thread: a re-run gives the committed numbers
        committed_rows = _ensemble_rows(_text(nbformat.read(committed, as_version=4)))
        assert rows == committed_rows
    if name == "04_launch_ranks":
        assert text.count("Epoch 4/4") == 2 and "<stdout>" not in text
        assert re.search(r"batch 64 +2 +64 +4 +val_accuracy", text)
        assert re.search(r"batch 256 +2 +256 +4 +val_accuracy", text)
        assert "must divide evenly over 2 ranks" in text and "exited with code 2" in text


def test_committed_notebooks_carry_outputs():
    for name in notebooks.NOTEBOOKS:
        nb = nbformat.read(os.path.join(ROOT, "notebooks", f"{name}.ipynb"), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), name
        assert any(o.output_type == "display_data" for c in code for o in c.outputs), name


def test_run_py_refuses_unknown_notebooks(capsys):
    with pytest.raises(SystemExit) as exit_info:
        notebooks.main(["05_nothing"])
    assert exit_info.value.code == 2 and "05_nothing" in capsys.readouterr().err


def test_launch_command_and_failure_message(tmp_path):
    from lbsgd.report import notebook
    argv, run_dir = notebook.train_command(
        "configs/digits_resnet.py", np=2, run_dir=tmp_path / "r",
        overrides={"epochs": 3, "data.flip": True, "schedule.step_epochs": (2, 3)},
        overwrite=True)
    assert run_dir == tmp_path / "r"
    assert argv[:3] == [os.path.join(ROOT, "launch", "run.sh"), "-np", "2"]
    assert argv[3:] == [sys.executable, "-m", "lbsgd.train", "--config",
                        "configs/digits_resnet.py", f"--run_dir={tmp_path / 'r'}", "--epochs=3", "--data.flip=true",
                        "--schedule.step_epochs=2,3", "--overwrite"]
    err = notebook.RunFailed(argv, 3, "rank 1: boom\n", run_dir)
    assert str(err) == ("launch/run.sh -np 2 python -m lbsgd.train --config "
                        "configs/digits_resnet.py ... exited with code 3; the last lines of "
                        "its error output:\nrank 1: boom")
    with pytest.raises(ValueError, match="config='configs/nope.py'"):
        notebook.train_command("configs/nope.py")
    with pytest.raises(ValueError, match="np=0"):
        notebook.train_command("configs/digits_resnet.py", np=0)


def test_summary_table(tmp_path):
    import json

    from lbsgd.report import notebook
    for name, batch, acc in (("a", 64, 0.91234), ("b", 256, 0.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({
            "num_ranks": 2, "global_batch": batch, "epochs": 4, "total_seconds": 12.34,
            "final": {"val_accuracy": acc}, "best": {"val_accuracy": acc},
            "images_per_second": 500.0}))
    table = notebook.summary_table([tmp_path / "a", tmp_path / "b"], labels=["batch 64",
                                                                            "batch 256"])
    lines = table.splitlines()
    assert lines[1].split() == ["batch", "64", "2", "64", "4", "val_accuracy", "0.9123",
                                "0.9123", "12.3", "500.0"]
    assert lines[2].split()[:4] == ["batch", "256", "2", "256"]
