"""Shards: a corpus folder's Parquet files, each written whole and renamed into place.

    <out>/tokens/part-<k>.parquet      token rows of documents [k * shard_size, (k + 1) * shard_size)
    <out>/documents/part-<k>.parquet   one row per document of the same range
Each folder is a Parquet dataset (`pyarrow.dataset.dataset(<out>/tokens)`). A file is
written to a hidden temporary name in its folder and renamed (atomic on one file system),
the token file first, the documents file last: shard k is finished exactly when its
documents file exists. A killed run leaves at most a temporary file or a token file
without its documents file; `clear_unfinished` removes both before a run goes on.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

TOKENS = "tokens"
DOCUMENTS = "documents"
TEMPORARY_PREFIX = ".partial-"


def shard_file(out: Path, folder: str, index: int) -> Path:
    return out / folder / f"part-{index:06d}.parquet"


def finished(out: Path) -> set[int]:
    """Indices of the finished shards (their documents file exists)."""
    folder = out / DOCUMENTS
    if not folder.is_dir():
        return set()
    return {int(path.stem.split("-")[1]) for path in folder.glob("part-*.parquet")}


def clear_unfinished(out: Path) -> None:
    """Remove what a killed run left: temporary files, and token files whose shard has no
    documents file."""
    done = finished(out)
    for folder in (TOKENS, DOCUMENTS):
        for path in (out / folder).glob(f"{TEMPORARY_PREFIX}*"):
            path.unlink()
    for path in (out / TOKENS).glob("part-*.parquet"):
        if int(path.stem.split("-")[1]) not in done:
            path.unlink()


def write(out: Path, index: int, tokens: pd.DataFrame, documents: pd.DataFrame) -> None:
    """Shard `index`: the token rows, then the document rows, each whole or not at all."""
    for folder, table in ((TOKENS, tokens), (DOCUMENTS, documents)):
        _write_whole(pa.Table.from_pandas(table, preserve_index=False), shard_file(out, folder, index))


def _write_whole(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{path.name}")
    pq.write_table(table, temporary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def rows_of(table: pa.Table) -> pd.DataFrame:
    """Rows read back as they were written: int64 and float64 columns as pandas' nullable
    Int64 and Float64 (nulls stay <NA>, integers stay integers)."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype()}.get)


def schema(out: Path, folder: str) -> pa.Schema:
    """The schema of all of `folder`'s files together (a shard of skipped documents only has
    fewer columns), read from their footers."""
    return pa.unify_schemas([pq.read_schema(path) for path in files(out, folder)])


def files(out: Path, folder: str) -> list[Path]:
    """The finished Parquet files of `folder`, in shard order: a token file whose documents file
    a killed run never wrote is left out (the next run removes it)."""
    done = finished(Path(out))
    return sorted(path for path in (Path(out) / folder).glob("part-*.parquet") if int(path.stem.split("-")[1]) in done)
