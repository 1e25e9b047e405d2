"""Token Workbench: which tokens matter inside a language model.

    import workbench as wb
    model = wb.load()                       # embedded SmolLM2-135M-Instruct, offline
    run = model.analyze("The capital of France is Paris.")
    run.table; run.show(signal="surprisal"); run.save("runs/paris")

The heavy imports (torch, transformers) happen on first use of `load`, `Model` or `Run`,
so `workbench --version` and the CLI's error paths answer at once.
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from .errors import MemoryEstimateExceeded, SignalUnavailable, WorkbenchError

try:
    __version__ = version("token-workbench")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+local"

_LAZY = {"load": "model.handle", "Model": "model.handle", "Run": "results.run", "Group": "results.group",
         "explore": "widgets.explorer", "exact_attention": "forward.attention_rows", "CorpusFolder": "corpus.folder"}
# Imported on first attribute access (wb.samplers.TopH, wb.kv.heavy_hitters, ...), so that
# `import workbench` stays free of torch. `wb.corpus(model, source, out=...)` is the corpus
# package called as a function (workbench/corpus/__init__.py says why).
_SUBMODULES = ("samplers", "rewards", "credit", "estimators", "attribution", "kv", "routing_stats", "kernels", "widgets", "labs", "corpus")


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = ["CorpusFolder", "Group", "MemoryEstimateExceeded", "Model", "Run", "SignalUnavailable", "WorkbenchError", "corpus",
           "exact_attention", "explore", "load", "__version__"]
