"""Execute lbsgd's notebooks top to bottom and store their outputs (nbclient).

    .venv/bin/python notebooks/run.py                 # all, in place
    .venv/bin/python notebooks/run.py 01_schedules    # one

The test suite (tests/test_notebooks.py) executes them the same way into a
temporary copy and fails on any error.
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOKS = ("01_schedules", "02_adaptive_batch", "03_collapsed_ensemble")


def execute(name: str, out_path: str | None = None, timeout: int = 900) -> float:
    """Runs notebooks/<name>.ipynb in the notebooks directory; writes the executed
    notebook to `out_path` (default: in place); returns the seconds it took."""
    import nbformat
    from nbclient import NotebookClient

    path = os.path.join(HERE, f"{name}.ipynb")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": HERE}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, out_path or path)
    return seconds


def main(argv) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in argv or NOTEBOOKS:
        print(f"{name}: {execute(name):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
