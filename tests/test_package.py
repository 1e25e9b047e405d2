"""`import workbench` stays light (no torch) and every public submodule is reachable as an
attribute on first use, in a fresh interpreter where nothing else has imported it; Python started
in the repository root finds the installed packages, not a folder of the same name."""
import json
import subprocess
import sys
from pathlib import Path

import pytest


def fresh_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_does_not_import_torch():
    assert fresh_python("import sys, workbench; print('torch' in sys.modules)") == "False"


@pytest.mark.parametrize("name, attribute", [("samplers", "TopH"), ("rewards", "exact_answer"), ("credit", "d3s_priority"),
                                             ("kv", "heavy_hitters"), ("routing_stats", "expert_load"),
                                             ("kernels", "vocab_stats"), ("widgets", "token_strip"), ("labs", "check_entropy"),
                                             ("estimators", "estimate")])
def test_submodules_are_attributes_on_first_use(name, attribute):
    code = f"import workbench as wb; print(wb.{name}.__name__, callable(wb.{name}.{attribute}))"
    assert fresh_python(code) == f"workbench.{name} True"


ROOT = Path(__file__).resolve().parent.parent


def python_in(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_no_root_folder_shares_a_name_with_an_installed_package(tmp_path):
    """A folder at the repository root named like an installed package shadows it for any Python
    started there (transformers imports the PyPI package `kernels` while it loads a model)."""
    folders = sorted(p.name for p in ROOT.iterdir()  # importable names only (not .venv, *.egg-info)
                     if p.is_dir() and p.name.isidentifier() and p.name != "workbench")
    code = "import importlib.util, sys; print([n for n in sys.argv[1:] if importlib.util.find_spec(n)])"
    result = python_in(tmp_path, "-c", code, *folders)  # outside the root: what is installed under these names
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"root folders named like installed packages: {result.stdout.strip()}"


def test_transformers_loads_a_model_with_the_repository_root_as_working_directory():
    code = ("import transformers, workbench as wb; model = wb.load('tiny:llama'); import kernels, workbench.kernels; "
            "print('site-packages' in kernels.__file__, workbench.kernels.__name__)")
    result = python_in(ROOT, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "workbench.kernels"]


def test_cli_runs_as_a_module_from_the_repository_root():
    result = python_in(ROOT, "-m", "workbench", "analyze", "The capital of France is Paris.", "--model", "tiny:llama",
                       "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tokens"][0]["token"]
