"""A corpus folder as written by `workbench.corpus`: its manifest, its token and document
rows as Parquet datasets, and the aggregates (`corpus.aggregates`) computed from them.

    folder = wb.CorpusFolder("out/")           # or the value wb.corpus(...) returns
    folder.documents()                         # one row per document (pandas)
    folder.tokens(columns=["token_id", "surprisal"])   # a pyarrow Dataset: scan, filter, to_table
    folder.token_stats(["surprisal"])          # per token id: count, mean, quantiles
    folder.histogram("entropy")                # counts and bin edges over every token
    folder.document(3)                         # document 3, read again from the source
    folder.token_rows(3)                       # document 3's token rows (only its row groups read)
    folder.selection(0.1)                      # RHO-1: the top 10% excess-loss tokens
    folder.expert_share()                      # OpenMoE: top-1 expert shares per token id
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import WorkbenchError
from . import aggregates, manifest
from .shards import DOCUMENTS, TOKENS, files, rows_of, schema, shard_file


class CorpusFolder:
    def __init__(self, path):
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise WorkbenchError(f"corpus folder not found: {self.path}")
        self.manifest = manifest.read(self.path)
        if self.manifest is None:
            raise WorkbenchError(f"{self.path} is not a corpus folder (no {manifest.MANIFEST})")

    def require_complete(self) -> "CorpusFolder":
        """This folder, when its run finished; an unfinished one (killed, or still running) is
        refused with what to do."""
        if not self.manifest["complete"]:
            raise WorkbenchError(f"{self.path} holds an unfinished corpus run ({len(files(self.path, DOCUMENTS))} "
                                 "shards written so far); run the same workbench corpus command again to finish it")
        return self

    def __repr__(self) -> str:
        counts = self.manifest.get("counts") or {}
        state = "complete" if self.manifest["complete"] else "unfinished"
        return (f"CorpusFolder({str(self.path)!r}, {state}, {counts.get('documents', '?')} documents, "
                f"{counts.get('token_rows', '?')} token rows)")

    def tokens(self, columns: Sequence[str] | None = None):
        """The token rows as a pyarrow Dataset (nothing read until scanned)."""
        import pyarrow.dataset as ds

        dataset = ds.dataset([str(p) for p in files(self.path, TOKENS)], format="parquet",
                             schema=schema(self.path, TOKENS))
        return dataset if columns is None else dataset.to_table(columns=list(columns))

    def documents(self) -> pd.DataFrame:
        """One row per document, all shards (small: no token rows)."""
        import pyarrow.parquet as pq

        parts = [pq.read_table(p).to_pandas() for p in files(self.path, DOCUMENTS)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def document(self, doc_id: int):
        """Document `doc_id` read again from the source the manifest names (`corpus.sources.Document`)."""
        from .sources import open_source

        source = self.manifest["settings"]["source"]
        if "path" not in source:
            raise WorkbenchError("this corpus was read from a datasets.Dataset object; index that dataset instead")
        document = next(open_source(source["path"], source["text_field"]).documents(start=doc_id), None)
        if document is None or document.doc_id != doc_id:
            raise WorkbenchError(f"the source has no document {doc_id}")
        return document

    def token_rows(self, doc_id: int) -> pd.DataFrame:
        """Document `doc_id`'s token rows in position order (none for a skipped document),
        nullable dtypes as written (`rows_of`). Only its shard's file is read, with a filter on
        doc_id: the token table is never loaded whole."""
        import pyarrow.parquet as pq

        path = shard_file(self.path, TOKENS, doc_id // self.manifest["settings"]["params"]["shard_size"])
        if not path.is_file():
            raise WorkbenchError(f"the corpus has no document {doc_id}")
        table = pq.read_table(path, filters=[("doc_id", "==", doc_id)])
        return rows_of(table).sort_values("position", ignore_index=True)

    def histogram(self, signal: str = "surprisal", bins: int = 50):
        return aggregates.histogram(self.path, signal, bins)

    def token_stats(self, signals: Sequence[str] = ("surprisal",), quantiles=(0.1, 0.5, 0.9)) -> pd.DataFrame:
        return aggregates.token_id_stats(self.path, signals, quantiles)

    def selection(self, fraction: float = 0.1) -> aggregates.Selection:
        return aggregates.rho1_selection(self.path, fraction)

    def expert_share(self, moe_layer: int = -1, min_count: int = 1) -> pd.DataFrame:
        routing = self.manifest["settings"].get("routing")
        if routing is None:
            raise WorkbenchError("this corpus has no routing rows; run it with signals=['routing'] on a MoE model")
        return aggregates.expert_share(self.path, routing["n_experts"], moe_layer, min_count)
