"""`Run`: the result of one analysis (one text, or one generation).

run.text    the analyzed text (the rendered chat template when messages were given)
run.table   pandas DataFrame, one row per token: position, token_id, token, start, end,
            role, then one column per scalar signal (nullable: the first token has no
            prediction, so its uncertainty values are <NA>, not zero)
run.arrays  named numpy arrays for tensor signals, e.g. logit-lens stats [layer, position]
run.meta    model name and revision, dtype, signal parameters, package version, ...

`save(dir)` writes table.parquet + arrays.safetensors + meta.json (+ text.txt);
`Run.load(dir)` reads them back exactly (and refuses a folder saved by `Group.save`).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import WorkbenchError

TABLE_FILE, ARRAYS_FILE, META_FILE, TEXT_FILE = "table.parquet", "arrays.safetensors", "meta.json", "text.txt"
# Columns that hold one list per token (top-k alternatives); None where there is no prediction.


class Run:
    def __init__(self, text: str, table: pd.DataFrame, arrays: dict[str, np.ndarray] | None = None,
                 meta: dict | None = None):
        self.text = text
        self.table = table
        self.arrays = dict(arrays or {})
        self.meta = dict(meta or {})

    # ----- persistence -------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the run to folder `path` (created; a saved run of the same kind there is
        replaced, anything else refused). Everything is written to a sibling temporary folder
        first and swapped in at the end, so a failure leaves any previous run at `path` intact.
        The folder and its files get the modes the umask gives new ones (`_follow_umask`)."""
        path = Path(path)
        check_save_target(path, self.meta.get("kind") or "run")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        except OSError as error:
            raise WorkbenchError(f"cannot save to {path}: {error.strerror or error}") from None
        try:
            self.table.to_parquet(staging / TABLE_FILE, index=False)
            save_arrays(self.arrays, staging / ARRAYS_FILE)
            (staging / META_FILE).write_text(json.dumps(self.meta, indent=2, sort_keys=True))
            (staging / TEXT_FILE).write_text(self.text, encoding="utf-8", newline="")
            _follow_umask(staging)
            if path.exists():
                shutil.rmtree(path)
            staging.rename(path)
        except BaseException as error:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(error, OSError):
                raise WorkbenchError(f"cannot save to {path}: {error.strerror or error}") from None
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        """Read a run saved by `save`; a folder saved by `Group.save` is refused (it says
        `kind: "group"` in its meta.json): load that with `wb.Group.load`."""
        kind = saved_kind(path)
        if kind is not None:
            raise WorkbenchError(f"{path} is a saved {kind}, not a run; load it with wb.{kind.capitalize()}.load")
        return read_folder(path)

    # ----- convenience views of the data ------------------------------------------------
    @property
    def next_token(self) -> pd.DataFrame:
        """The model's prediction after the last token: top-k tokens and probabilities."""
        prediction = self.meta.get("next_token")
        if prediction is None:
            raise WorkbenchError("this run has no next-token prediction (analyze with the 'uncertainty' signal)")
        return pd.DataFrame({"token_id": prediction["topk_ids"], "token": prediction["topk_tokens"],
                             "prob": prediction["topk_probs"]})

    def logit_lens(self, statistic: str = "rank") -> pd.DataFrame:
        """One logit-lens array as a DataFrame [layer, token]: rows "embeddings", "layer 1",
        ...; columns labelled "position:token" (e.g. "5:' Paris'")."""
        name = f"lens_{statistic}"
        if name not in self.arrays:
            available = sorted(k[5:] for k in self.arrays if k.startswith("lens_"))
            raise WorkbenchError(f"no logit-lens '{statistic}' in this run; "
                                 + (f"available: {', '.join(available)}" if available else "analyze with signals=['logit_lens']"))
        values = self.arrays[name]  # [L+1, T]
        layers = ["embeddings"] + [f"layer {i}" for i in range(1, values.shape[0])]
        columns = [f"{p}:{t!r}" for p, t in zip(self.table["position"], self.table["token"])]
        return pd.DataFrame(values, index=layers, columns=columns)

    def equals(self, other: "Run") -> bool:
        """Same text, table (values and dtypes), arrays and metadata."""
        return (
            self.text == other.text and self.meta == other.meta and self.table.equals(other.table)
            and self.table.dtypes.equals(other.table.dtypes) and self.arrays.keys() == other.arrays.keys()
            and all(np.array_equal(v, other.arrays[k], equal_nan=True) and v.dtype == other.arrays[k].dtype
                    for k, v in self.arrays.items())
        )

    # ----- export ------------------------------------------------------------------------
    def records(self) -> list[dict]:
        """One JSON-ready dict per token (missing values as None)."""
        return [{k: _plain(v) for k, v in row.items()} for row in self.table.to_dict(orient="records")]

    def to_dict(self, *, arrays: bool = False) -> dict:
        """JSON-ready: model, text, meta and one record per token; with `arrays`, also the
        named arrays as nested lists (NaN and inf as None)."""
        record = {"model": self.meta.get("model"), "text": self.text, "meta": self.meta, "tokens": self.records()}
        if arrays and self.arrays:
            record["arrays"] = {name: _json_array(values) for name, values in self.arrays.items()}
        return record

    def to_json(self, *, arrays: bool = False, **kwargs) -> str:
        return json.dumps(self.to_dict(arrays=arrays), ensure_ascii=False, **kwargs)

    # ----- views -------------------------------------------------------------------------
    def show(self, signal: str = "surprisal", selected: int | None = None):
        """Interactive linked views in a notebook (`workbench.widgets.Explorer`: token strip,
        charts, every panel that applies; click a token to select it everywhere). Outside a
        notebook kernel, or without anywidget, the token strip (`strip`)."""
        try:
            from ..widgets.explorer import Explorer, in_notebook
        except ImportError:  # anywidget missing: the static strip still works
            return self.strip(signal)
        return Explorer(self, signal=signal, selected=selected) if in_notebook() else self.strip(signal)

    def strip(self, signal: str = "surprisal"):
        """The text as a token strip colored by `signal`: hover a token for its value and
        top-k alternatives, click to select it. Self-contained HTML (`.html`, `.save(path)`)
        that works offline."""
        from ..widgets import token_strip

        return token_strip(self, signal=signal)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        signals = ", ".join(self.meta.get("signals", []))
        return f"Run({len(self)} tokens, model={self.meta.get('model')!r}, signals=[{signals}], arrays={list(self.arrays)})"


def check_save_target(path: str | Path, kind: str) -> None:
    """Refuse to save a `kind` ("run" or "group") to `path` unless `path` is free or holds a
    saved folder of the same kind (which the save replaces)."""
    path = Path(path)
    if not path.exists():
        return
    if not (path.is_dir() and (path / META_FILE).exists()):
        raise WorkbenchError(f"{path} exists and is not a saved run; choose another folder")
    held = saved_kind(path) or "run"
    if held != kind:
        raise WorkbenchError(f"{path} holds a saved {held}, not a {kind}; choose another folder")


def save_arrays(arrays: dict[str, np.ndarray], file: Path) -> None:
    """Named numpy arrays to a safetensors file."""
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(values) for name, values in arrays.items()}, str(file))


def _follow_umask(folder: Path) -> None:
    """Give `folder` and its files the modes mkdir and open give new ones (0o777 and 0o666
    less the umask): `tempfile.mkdtemp` makes its folder 0o700 and safetensors writes 0o600,
    which would hide a run in a shared results folder from colleagues."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for file in folder.iterdir():
        file.chmod(0o666 & ~umask)


def saved_kind(path: str | Path) -> str | None:
    """What a saved folder holds, from the `kind` in its meta.json: None for a `Run`, "group"
    for a `Group`."""
    meta_file = Path(path) / META_FILE
    if not meta_file.exists():
        raise WorkbenchError(f"{path} is not a saved run or group (no {META_FILE})")
    return _read_meta(meta_file).get("kind")


def read_folder(path: str | Path) -> Run:
    """The folder layout of `Run.save` read back as a `Run`, whatever kind it holds (`Run.load`
    and `Group.load` check the kind first). A missing or damaged file is a WorkbenchError that
    names it."""
    from safetensors.numpy import load_file

    path = Path(path)
    table = read_saved(path / TABLE_FILE, pd.read_parquet)
    for column in _list_columns(table):  # parquet lists come back as numpy arrays
        table[column] = [None if v is None else v.tolist() for v in table[column]]
    arrays = read_saved(path / ARRAYS_FILE, lambda file: load_file(str(file)))
    meta = _read_meta(path / META_FILE)
    text = read_saved(path / TEXT_FILE, lambda file: file.read_bytes().decode("utf-8"))
    return Run(text, table, arrays, meta)


def _list_columns(table: pd.DataFrame) -> list[str]:
    """The columns that hold one list per token (top-k alternatives, experts, a reference's
    `ref_topk_*`): those whose values read back from parquet are numpy arrays."""
    return [column for column in table.columns if table[column].dtype == object
            and isinstance(next((value for value in table[column] if value is not None), None), np.ndarray)]


def _read_meta(file: Path) -> dict:
    meta = read_saved(file, lambda f: json.loads(f.read_text(encoding="utf-8")))
    if not isinstance(meta, dict):
        raise WorkbenchError(f"{file} is damaged: it holds no JSON object")
    return meta


def read_saved(file: Path, reader):
    """`reader(file)` for one file of a saved folder; a missing, unreadable or damaged file
    becomes a WorkbenchError that names it."""
    from safetensors import SafetensorError

    try:
        return reader(file)
    except FileNotFoundError:
        raise WorkbenchError(f"{file.parent} is not a complete saved run: {file.name} is missing") from None
    except (OSError, ValueError, SafetensorError) as error:  # ArrowInvalid and JSONDecodeError are ValueErrors
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WorkbenchError(f"cannot read {file}: it is damaged or unreadable ({reason})") from None


def _json_array(values: np.ndarray) -> list:
    if np.issubdtype(values.dtype, np.floating):
        values = np.where(np.isfinite(values), values, None)  # NaN and inf are not JSON
    return values.tolist()


def _plain(value):
    """numpy / pandas scalars and lists -> plain Python; NaN and <NA> -> None."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
