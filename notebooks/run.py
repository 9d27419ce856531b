"""Execute lbsgd's notebooks top to bottom (nbclient), into a scratch copy unless asked to refresh.

    .venv/bin/python notebooks/run.py                      # all, into a scratch directory
    .venv/bin/python notebooks/run.py 03_collapsed_ensemble   # one
    .venv/bin/python notebooks/run.py --refresh            # rewrite the committed notebooks
                                                           # and notebooks/figures/
    .venv/bin/python notebooks/run.py --out DIR            # the scratch copy in DIR

By default nothing tracked changes: the executed notebooks, their figures and
any runs they start go to a scratch directory (printed). `--refresh` writes
the notebooks in place and their figures to notebooks/figures/, and runs to
runs/ (untracked), so the outputs name `runs/<name>`, not a temporary path. The test suite (tests/test_notebooks.py) executes
them the same way into a temporary copy and fails on any error.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NOTEBOOKS = ("01_schedules", "02_adaptive_batch", "03_collapsed_ensemble", "04_launch_ranks")


def execute(name: str, out_path: str, timeout: int = 900, env: dict | None = None) -> float:
    """Runs notebooks/<name>.ipynb with the notebooks directory as its working directory;
    writes the executed notebook to `out_path`; returns the seconds it took. The kernel's
    environment is `env` (LBSGD_FIGURES, LBSGD_RUNS), else this process's."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(os.path.join(HERE, f"{name}.ipynb"), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": HERE}})
    start = time.perf_counter()
    client.execute(env=dict(os.environ if env is None else env))
    seconds = time.perf_counter() - start
    drop_start_up_lines(nb)
    nbformat.write(nb, out_path)
    return seconds


def drop_start_up_lines(nb) -> None:
    """Removes TensorFlow's start-up INFO lines from the stream outputs (the launcher's
    filter: lbsgd.rankstreams), and the outputs left empty: they depend on the host's
    CPU (oneDNN's notice), not on the notebook."""
    from lbsgd.rankstreams import is_start_up_info

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if out.output_type == "stream":
                out.text = "".join(line for line in out.text.splitlines(keepends=True)
                                   if not is_start_up_info(line.encode()))
                if not out.text:
                    continue
            kept.append(out)
        cell.outputs = kept


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="notebooks/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"notebooks to run (default: all of {', '.join(NOTEBOOKS)})")
    parser.add_argument("--refresh", action="store_true",
                        help="rewrite the committed notebooks and notebooks/figures/")
    parser.add_argument("--out", default=None,
                        help="scratch directory (default: a new temporary directory)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NOTEBOOKS]
    if unknown:
        parser.error(f"unknown notebook {unknown[0]!r} (one of {', '.join(NOTEBOOKS)})")
    if args.refresh:
        out_dir, runs, figures = HERE, os.path.join(ROOT, "runs"), os.path.join(HERE, "figures")
    else:
        out_dir = args.out or tempfile.mkdtemp(prefix="lbsgd_notebooks_")
        os.makedirs(out_dir, exist_ok=True)
        runs, figures = os.path.join(out_dir, "runs"), os.path.join(out_dir, "figures")
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, "LBSGD_RUNS": runs,
           "LBSGD_FIGURES": figures}
    for name in args.names or NOTEBOOKS:
        out = os.path.join(out_dir, f"{name}.ipynb")
        print(f"{name}: {execute(name, out, env=env):.1f} s -> {out}", flush=True)
    print(f"figures: {figures}; runs: {runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
