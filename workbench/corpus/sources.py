"""Reading a corpus: documents one at a time, whatever the source, each with its index.

A document's id is its index in the source (line of a text or JSONL file, row of a Parquet
file or a `datasets` dataset, counting from 0), so the same source gives the same ids on
every run, which is what lets a killed run resume. Sources:
    text file (.txt or any other suffix)  one document a line (a blank line is an empty document)
    JSONL (.jsonl / .json)                one object a line: its `text_field` (default "text"),
                                          or chat "messages" [{"role", "content"}, ...]
    Parquet (.parquet)                    the `text_field` column (or "messages"), read a row group at a time
    `datasets` dataset                    a `datasets.Dataset` object, or a folder written by
                                          `Dataset.save_to_disk` (only when `datasets` is installed)
Nothing is read into memory whole.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import WorkbenchError

MESSAGES_FIELD = "messages"


@dataclass(frozen=True)
class Document:
    doc_id: int  # index in the source
    text: str | None  # plain text, or None for chat input
    messages: list | None = None  # chat messages [{"role", "content"}, ...]


@dataclass(frozen=True)
class Source:
    """Where the documents come from and how to read them. `identity` names it in the
    manifest (a resumed run must read the same source)."""
    origin: object  # a path, or a datasets.Dataset
    kind: str  # "text", "jsonl", "parquet" or "datasets"
    text_field: str

    @property
    def identity(self) -> dict:
        if isinstance(self.origin, Path):
            return {"kind": self.kind, "path": str(self.origin.resolve()), "bytes": self.origin.stat().st_size,
                    "text_field": self.text_field}
        fingerprint = getattr(self.origin, "_fingerprint", None)
        return {"kind": self.kind, "fingerprint": fingerprint, "rows": len(self.origin), "text_field": self.text_field}

    def documents(self, start: int = 0) -> Iterator[Document]:
        """The documents with id >= start, in order."""
        readers = {"text": _text_lines, "jsonl": _jsonl_records, "parquet": _parquet_records,
                   "datasets": _dataset_records}
        for doc_id, record in readers[self.kind](self, start):
            if doc_id >= start:
                yield _document(doc_id, record, self.text_field, self.kind)

    def count(self) -> int | None:
        """How many documents, when it is cheap to know (for the progress bar)."""
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.origin).metadata.num_rows
        if self.kind == "datasets":
            return len(self.origin)
        with open(self.origin, "rb") as handle:
            return sum(1 for _ in handle)


def open_source(source, text_field: str = "text") -> Source:
    """A path (str or Path) or a `datasets.Dataset` -> `Source`; one clear error for what
    cannot be read."""
    if hasattr(source, "column_names") and hasattr(source, "__getitem__"):
        return Source(source, "datasets", text_field)
    if not isinstance(source, (str, os.PathLike)):
        raise WorkbenchError(f"a corpus source is a file path or a datasets.Dataset, got {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.exists():
        raise WorkbenchError(f"corpus source not found: {path}")
    if path.is_dir():
        return Source(_load_from_disk(path), "datasets", text_field)
    suffix = path.suffix.lower()
    kind = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}.get(suffix, "text")
    if kind == "parquet":
        _check_parquet_field(path, text_field)
    return Source(path, kind, text_field)


def _load_from_disk(path: Path):
    try:
        import datasets
    except ImportError:
        raise WorkbenchError(
            f"{path} is a folder: reading a Hugging Face dataset needs the `datasets` package "
            "(pip install datasets), or give a .txt, .jsonl or .parquet file") from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise WorkbenchError(f"{path} is not a dataset folder written by Dataset.save_to_disk ({error})") from None
    if isinstance(loaded, datasets.DatasetDict):
        raise WorkbenchError(f"{path} holds several splits ({', '.join(loaded)}); give the folder of one split")
    return loaded


def _check_parquet_field(path: Path, text_field: str) -> None:
    import pyarrow.parquet as pq

    names = pq.ParquetFile(path).schema_arrow.names
    if text_field not in names and MESSAGES_FIELD not in names:
        raise WorkbenchError(f"{path} has no column '{text_field}' (columns: {', '.join(names)}); "
                             "name the text column with text_field= (CLI: --text-field)")


def _text_lines(source: Source, start: int):
    with open(source.origin, encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
        for doc_id, line in enumerate(handle):
            yield doc_id, line.rstrip("\n").rstrip("\r")


def _jsonl_records(source: Source, start: int):
    with open(source.origin, encoding="utf-8") as handle:
        for doc_id, line in enumerate(handle):
            if doc_id < start:
                continue
            try:
                yield doc_id, json.loads(line) if line.strip() else {}
            except json.JSONDecodeError as error:
                raise WorkbenchError(f"{source.origin}, line {doc_id + 1}: not JSON ({error.msg})") from None


def _parquet_records(source: Source, start: int):
    import pyarrow.parquet as pq

    file = pq.ParquetFile(source.origin)
    columns = [name for name in (source.text_field, MESSAGES_FIELD) if name in file.schema_arrow.names]
    doc_id = 0
    for group in range(file.num_row_groups):
        rows = file.metadata.row_group(group).num_rows
        if doc_id + rows <= start:
            doc_id += rows
            continue
        for record in file.read_row_group(group, columns=columns).to_pylist():
            yield doc_id, record
            doc_id += 1


def _dataset_records(source: Source, start: int):
    for doc_id in range(start, len(source.origin)):
        yield doc_id, source.origin[doc_id]


def _document(doc_id: int, record, text_field: str, kind: str) -> Document:
    if kind == "text":
        return Document(doc_id, record)
    if not isinstance(record, dict):
        raise WorkbenchError(f"document {doc_id}: expected an object with a '{text_field}' field, got "
                             f"{type(record).__name__}")
    if record.get(text_field) is not None:
        text = record[text_field]
        if not isinstance(text, str):
            raise WorkbenchError(f"document {doc_id}: field '{text_field}' holds {type(text).__name__}, not text")
        return Document(doc_id, text)
    if record.get(MESSAGES_FIELD) is not None:
        return Document(doc_id, None, list(record[MESSAGES_FIELD]))
    if not record:
        return Document(doc_id, "")  # a blank JSONL line: an empty document, counted as such
    raise WorkbenchError(
        f"document {doc_id} has no '{text_field}' field (it has: {', '.join(map(str, record))}); "
        f"name the text field with text_field= (CLI: --text-field), or give chat '{MESSAGES_FIELD}'")
