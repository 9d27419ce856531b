"""Every notebook runs top to bottom on the embedded data (nbclient, headless)."""

import os
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
}


@pytest.mark.parametrize("name", notebooks.NOTEBOOKS)
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("LBSGD_FIGURES", str(tmp_path / "figures"))
    monkeypatch.delenv("LBSGD_RECIPE_RUN", raising=False)
    out = str(tmp_path / f"{name}.ipynb")
    seconds = notebooks.execute(name, out, timeout=600)
    print(f"{name}: {seconds:.1f} s")
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert nb.cells[0].cell_type == "markdown" and "What this shows" in nb.cells[0].source
    for fig in EXPECTED_FIGURES[name]:
        assert os.path.getsize(tmp_path / "figures" / fig) > 5000, fig
    text = "".join(o.get("text", "") for c in code for o in c.outputs)
    if name == "01_schedules":
        assert "cycle ends (snapshots): [60, 75, 90, 105, 120]" in text
    if name == "02_adaptive_batch":
        assert "K =" in text and "<- B_s" in text
    if name == "03_collapsed_ensemble":
        assert "ensemble" in text and "top-1 %" in text


def test_committed_notebooks_carry_outputs():
    for name in notebooks.NOTEBOOKS:
        nb = nbformat.read(os.path.join(ROOT, "notebooks", f"{name}.ipynb"), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count for c in code), name
        assert any(o.output_type == "display_data" for c in code for o in c.outputs), name
