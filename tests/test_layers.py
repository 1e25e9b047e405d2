"""The layers contract in pyproject.toml ([tool.importlinter]): a module imports only from the
layers below its own, so the arrows point one way (cli -> widgets -> pipelines -> ... -> kernels)."""
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent


def test_the_layers_contract_is_kept():
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_an_arrow_running_back_up_breaks_a_layers_contract(tmp_path):
    """The checker sees this package: `tokens` imports `errors`, so errors above tokens is broken."""
    config = tmp_path / ".importlinter"
    config.write_text("[importlinter]\nroot_package = workbench\n\n[importlinter:contract:upside-down]\n"
                      "name = upside down\ntype = layers\nlayers =\n    workbench.errors\n    workbench.tokens\n")
    assert lint_imports(config_filename=str(config), no_cache=True, no_logo=True) == 1
