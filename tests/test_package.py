"""`import workbench` stays light (no torch) and every public submodule is reachable as an
attribute on first use, in a fresh interpreter where nothing else has imported it."""
import subprocess
import sys

import pytest


def fresh_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_does_not_import_torch():
    assert fresh_python("import sys, workbench; print('torch' in sys.modules)") == "False"


@pytest.mark.parametrize("name, attribute", [("samplers", "TopH"), ("rewards", "exact_answer"), ("credit", "d3s_priority"),
                                             ("kv", "heavy_hitters"), ("routing_stats", "expert_load"),
                                             ("kernels", "vocab_stats"), ("widgets", "token_strip")])
def test_submodules_are_attributes_on_first_use(name, attribute):
    code = f"import workbench as wb; print(wb.{name}.__name__, callable(wb.{name}.{attribute}))"
    assert fresh_python(code) == f"workbench.{name} True"
