"""The manifest: how a corpus folder was made and what it holds (`<out>/manifest.json`).

    settings   model (name, revision, family, dtype), reference (or null), signals, params,
               source: what decides the rows; a run resumes a folder only with equal settings
    versions   workbench, torch, transformers, numpy, pandas, pyarrow (and ray when used)
    engine, device
    counts     documents, documents with rows, tokens, shards, by_status (ok, truncated,
               split, and the skipped: empty, invalid_unicode, too_long)
    complete   false while shards are missing, true once every document has its shard
Written whole and renamed into place, like the shards.
"""
from __future__ import annotations

import json
import os
from importlib import import_module
from pathlib import Path

from ..errors import WorkbenchError

MANIFEST = "manifest.json"
VERSIONED = ("torch", "transformers", "numpy", "pandas", "pyarrow", "ray")


def model_record(model) -> dict:
    return {"name": model.name, "revision": model.revision, "family": model.adapter.name,
            "dtype": str(model.dtype).replace("torch.", "")}


def versions() -> dict:
    """Versions of workbench and of the packages that shape the numbers (ray when imported)."""
    import sys

    from .. import __version__

    found = {"workbench": __version__}
    for name in VERSIONED:
        if name != "ray" or "ray" in sys.modules:
            found[name] = getattr(import_module(name), "__version__", None)
    return found


def read(out: Path) -> dict | None:
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write(out: Path, manifest: dict) -> None:
    path = Path(out) / MANIFEST
    temporary = path.with_name(f".partial-{os.getpid()}-{MANIFEST}")
    temporary.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    os.replace(temporary, path)


def check_resumable(out: Path, settings: dict) -> None:
    """Refuse to add shards to a folder made with other settings (its rows would mix)."""
    existing = read(out)
    if existing is None:
        if any(Path(out).iterdir()):
            raise WorkbenchError(f"{out} is not empty and has no {MANIFEST}; give an empty or new folder")
        return
    if existing["settings"] != json.loads(json.dumps(settings, default=str)):
        differing = [key for key in settings if existing["settings"].get(key) != json.loads(
            json.dumps(settings[key], default=str))]
        raise WorkbenchError(f"{out} holds a corpus made with other settings ({', '.join(differing)} differ); "
                             "use another folder, or the same command to resume it")
