"""Signals over a whole corpus: reading sources, cutting documents into segments, batched
scoring, shards written whole, the manifest, aggregates. `CorpusFolder` reads what a run wrote.

`wb.corpus(model, source, out=..., signals=[...])` runs it (`workbench.pipelines.corpus`).
This package and that function share the name `workbench.corpus`: once the package is
imported, Python binds the name to the package, so the package itself is callable and calls
the pipeline (the one sanctioned upward call, as the Model handle's verbs are).
"""
import sys
from types import ModuleType

from .folder import CorpusFolder

__all__ = ["CorpusFolder"]


class _CallablePackage(ModuleType):
    def __call__(self, *args, **kwargs):
        """`workbench.pipelines.corpus.corpus`: per-token signals of every document of a source."""
        from ..pipelines.corpus import corpus

        return corpus(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
