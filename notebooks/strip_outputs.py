"""Strip outputs from tutorial notebooks before committing them.

    python notebooks/strip_outputs.py            # strip every notebooks/*.ipynb in place
    python notebooks/strip_outputs.py --check    # exit 1 and name the notebooks that have outputs
    python notebooks/strip_outputs.py a.ipynb    # only these files

Stripping removes code-cell outputs, execution counts and per-cell execution timings
(the `execution` metadata that JupyterLab and nbclient add), and saved widget state.
The test suite (tests/test_notebooks.py) executes every notebook and checks that the
committed files are stripped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def is_stripped(nb: nbformat.NotebookNode) -> bool:
    return "widgets" not in nb.metadata and all(
        not cell.get("outputs") and cell.get("execution_count") is None and "execution" not in cell.metadata
        for cell in nb.cells if cell.cell_type == "code"
    )


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="only report notebooks that still have outputs")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(HERE.glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if is_stripped(nb):
            continue
        dirty.append(path)
        if not args.check:
            nbformat.write(strip(nb), path)
            print(f"stripped {path}")
    if args.check and dirty:
        print("notebooks with outputs (run python notebooks/strip_outputs.py):", *dirty, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
