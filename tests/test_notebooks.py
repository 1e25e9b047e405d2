"""Every tutorial in notebooks/ runs top to bottom, and is committed without outputs.

Each notebook is executed with nbclient in the `python3` kernel, from a temporary working
directory so that nothing it writes lands in the repository. The kernel inherits this
process's environment (WORKBENCH_CACHE included, when set), and its kernelspec's
`python` resolves to this interpreter: `test_kernel_is_this_python` checks that, so the
notebooks test the same installation as the rest of the suite.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
KERNEL = "python3"
CELL_TIMEOUT_S = 300


def execute(nb, cwd: Path):
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute()


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOKS_DIR}"


def test_kernel_is_this_python(tmp_path):
    probe = nbformat.v4.new_code_cell("import os, sys; print(sys.executable); print(os.getcwd())")
    nb = nbformat.v4.new_notebook(cells=[probe])
    execute(nb, tmp_path)
    executable, cwd = nb.cells[0].outputs[0]["text"].split("\n")[:2]
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert Path(cwd).resolve() == tmp_path.resolve()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} have outputs or execution counts; "
                       "run `python notebooks/strip_outputs.py` before committing")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    try:
        execute(nb, tmp_path)
    except nbclient.exceptions.CellExecutionError as error:  # names the cell and the traceback
        pytest.fail(f"{path.name} failed:\n{error}", pytrace=False)
    errors = [output for cell in nb.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
