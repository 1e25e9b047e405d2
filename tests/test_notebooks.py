"""Every tutorial in notebooks/ runs top to bottom, and is committed without outputs.

The labs (LABS) have exercises: a code cell tagged `exercise` holds a stub for the student to
fill in, the markdown cell after it (tagged `solution`) holds the solution in a folded
`<details>` block, and the code cell after that calls a `workbench.labs` checker on the
student's function. The notebooks run with each stub replaced by its solution; that each
checker rejects wrong answers is tested in tests/test_labs.py.

Each notebook is executed with nbclient in the `python3` kernel, from a temporary working
directory so that nothing it writes lands in the repository. The kernel inherits this
process's environment (WORKBENCH_CACHE included, when set), and its kernelspec's
`python` resolves to this interpreter: `test_kernel_is_this_python` checks that, so the
notebooks test the same installation as the rest of the suite.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
LABS = NOTEBOOKS  # every tutorial is a lab
KERNEL = "python3"
CELL_TIMEOUT_S = 600  # lab 05 samples two groups of 16 in one cell: minutes on a loaded 2-core machine
SOLUTION_CODE = re.compile(r"<details>.*?```python\n(.*?)```.*?</details>", re.DOTALL)
LAB_HEADINGS = ("**Goals.**", "**Prerequisites.**", "**Expected time.**")


def execute(nb, cwd: Path):
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute()


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def exercises(nb) -> list[int]:
    """Indices of the cells tagged `exercise`."""
    return [index for index, cell in enumerate(nb.cells) if "exercise" in tags(cell)]


def solution_code(nb, exercise: int) -> str:
    """The code in the folded solution that follows exercise cell `exercise`."""
    solution = nb.cells[exercise + 1]
    assert "solution" in tags(solution), f"cell {exercise + 1} after exercise cell {exercise} is not tagged solution"
    found = SOLUTION_CODE.search(solution.source)
    assert found, f"cell {exercise + 1} has no ```python block inside <details>"
    return found.group(1)


def with_solutions(nb):
    """The notebook with every exercise stub replaced by its solution, as a student who solved them has it."""
    for exercise in exercises(nb):
        nb.cells[exercise].source = solution_code(nb, exercise)
    return nb


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


@pytest.mark.parametrize("path", LABS, ids=[p.name for p in LABS])
def test_lab_has_goals_and_checked_exercises(path):
    nb = nbformat.read(path, as_version=4)
    missing = [heading for heading in LAB_HEADINGS if heading not in nb.cells[0].source]
    assert not missing, f"{path.name}: the first cell lacks {missing}"
    assert 3 <= len(exercises(nb)) <= 5, f"{path.name}: {len(exercises(nb))} exercises"
    assert "Predict, then run" in "".join(cell.source for cell in nb.cells)
    for exercise in exercises(nb):
        stub, check = nb.cells[exercise].source, nb.cells[exercise + 2]
        assert "raise NotImplementedError" in stub and "raise NotImplementedError" not in solution_code(nb, exercise)
        name = re.match(r"def (\w+)\(", stub).group(1)
        assert check.cell_type == "code" and re.search(rf"labs\.check_\w+\({name}\)", check.source), (
            f"{path.name}: the cell after the solution of {name} does not check it")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nb = with_solutions(nbformat.read(path, as_version=4))
    try:
        execute(nb, tmp_path)
    except nbclient.exceptions.CellExecutionError as error:  # names the cell and the traceback
        pytest.fail(f"{path.name} failed:\n{error}", pytrace=False)
    errors = [output for cell in nb.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
