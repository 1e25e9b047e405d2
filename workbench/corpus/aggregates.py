"""Corpus figures computed from a corpus folder's token files one shard at a time; the
token table is never loaded whole.

    token_id_stats   per token id: count, and the mean and quantiles of each signal.
                     Exact: the token ids are split into buckets (token_id mod n_passes) so
                     that one bucket's rows fit `max_rows` in memory; one pass over the shards
                     per bucket, reading only the needed columns.
    rho1_selection   RHO-1's token selection (Lin et al. 2024): the tokens whose excess loss
                     (surprisal - reference surprisal) is in the top `fraction` of all scored
                     tokens. The threshold is the k-th largest excess loss, k = ceil(fraction *
                     n), found with a running top-k (memory k values); tokens tied with the
                     threshold are all selected. Also each token id's selected share.
    histogram        the distribution of one signal over every token: counts in equal bins
                     between its smallest and largest value (two passes).
    expert_share     OpenMoE's token-id specialization (Xue et al. 2024) over the corpus: for
                     each token id, the share of its occurrences routed (top-1) to each expert
                     at one MoE layer and the std of those shares
                     (`routing_stats.specialization_of_counts`), counted shard by shard.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import WorkbenchError
from ..routing_stats import specialization_of_counts
from .shards import TOKENS, files, schema

MAX_ROWS = 4_000_000  # token rows one pass of token_id_stats holds


def _token_files(out: Path) -> list[Path]:
    found = files(out, TOKENS)
    if not found:
        raise WorkbenchError(f"{out} has no token shards; run workbench corpus into it first")
    return found


def _read(path: Path, columns: Sequence[str]) -> pa.Table:
    """`columns` of one token shard; a shard without one of them (only skipped documents)
    gives nulls."""
    names = pq.read_schema(path).names
    table = pq.read_table(path, columns=[c for c in columns if c in names])
    for column in columns:
        if column not in names:
            table = table.append_column(column, pa.nulls(len(table), type=pa.float64()))
    return table.select(list(columns))


def _require(out: Path, columns: Sequence[str]) -> None:
    names = schema(out, TOKENS).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise WorkbenchError(f"the corpus has no column {', '.join(missing)} (columns: {', '.join(names)}); "
                             "compute the signal that provides it")


def token_id_stats(out: Path, signals: Sequence[str] = ("surprisal",), quantiles: Sequence[float] = (0.1, 0.5, 0.9),
                   *, max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """Per token id (the index, sorted): `count` (occurrences), and for each signal s
    `s_mean` and `s_q<100 q>` over the occurrences where s has a value (pandas' linear
    quantiles)."""
    paths = _token_files(out)
    _require(out, ["token_id", *signals])
    n_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    n_passes = max(1, math.ceil(n_rows / max_rows))
    parts = []
    for bucket in range(n_passes):
        frames = []
        for path in paths:
            table = _read(path, ["token_id", *signals])
            if n_passes > 1:
                table = table.filter(pa.array(table["token_id"].to_numpy() % n_passes == bucket))
            frames.append(table.to_pandas())
        parts.append(_stats_of(pd.concat(frames, ignore_index=True), signals, quantiles))
    return pd.concat(parts).sort_index()


def _stats_of(rows: pd.DataFrame, signals, quantiles) -> pd.DataFrame:
    rows = rows.astype({s: "float64" for s in signals})
    groups = rows.groupby("token_id")
    stats = pd.DataFrame({"count": groups.size()})
    for signal in signals:
        stats[f"{signal}_mean"] = groups[signal].mean()
        for q in quantiles:
            stats[f"{signal}_q{round(100 * q):g}"] = groups[signal].quantile(q)
    return stats


def histogram(out: Path, signal: str, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(counts [bins], edges [bins + 1]) of `signal` over every token row that has a value."""
    paths = _token_files(out)
    _require(out, [signal])
    low, high = np.inf, -np.inf
    for path in paths:
        values = _values(path, signal)
        if len(values):
            low, high = min(low, values.min()), max(high, values.max())
    if low > high:
        raise WorkbenchError(f"no token has a finite {signal}")
    edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    for path in paths:
        counts += np.histogram(_values(path, signal), edges)[0]
    return counts, edges


def _values(path: Path, signal: str) -> np.ndarray:
    """The finite values of `signal` in one shard, float64."""
    column = _read(path, [signal])[signal].drop_null().to_numpy().astype(np.float64)
    return column[np.isfinite(column)]


@dataclass
class Selection:
    fraction: float  # the share asked for
    threshold: float  # excess loss at or above which a token is selected
    n_scored: int  # tokens with an excess loss
    n_selected: int  # tokens selected (>= ceil(fraction * n_scored) when values tie)
    by_token_id: pd.DataFrame  # index token_id: count, selected, share


def rho1_selection(out: Path, fraction: float = 0.1) -> Selection:
    """The RHO-1 selection of the top `fraction` of tokens by excess loss (see the module)."""
    if not 0 < fraction <= 1:
        raise WorkbenchError(f"fraction must be in (0, 1], got {fraction}")
    paths = _token_files(out)
    _require(out, ["token_id", "excess_loss"])
    n_scored = sum(len(_scored_excess(path)[1]) for path in paths)
    if n_scored == 0:
        raise WorkbenchError("the corpus has no token with an excess loss")
    k = math.ceil(fraction * n_scored)
    kept = np.empty(0)
    for path in paths:
        values = _scored_excess(path)[1]
        kept = np.concatenate([kept, values])
        if len(kept) > k:
            kept = np.partition(kept, len(kept) - k)[len(kept) - k:]
    threshold = float(kept.min())
    counts, selected = pd.Series(dtype="int64"), pd.Series(dtype="int64")
    for path in paths:
        token_ids, values = _scored_excess(path)
        counts = counts.add(pd.Series(token_ids).value_counts(), fill_value=0)
        selected = selected.add(pd.Series(token_ids[values >= threshold]).value_counts(), fill_value=0)
    table = pd.DataFrame({"count": counts, "selected": selected.reindex(counts.index, fill_value=0)}).astype("int64")
    table.index.name = "token_id"
    table["share"] = table["selected"] / table["count"]
    return Selection(fraction, threshold, int(n_scored), int(table["selected"].sum()), table.sort_index())


def _scored_excess(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(token ids [n], excess losses [n] float64) of the rows of one shard that have one."""
    table = _read(path, ["token_id", "excess_loss"])
    table = table.filter(pc.is_valid(table["excess_loss"]))
    return table["token_id"].to_numpy(), table["excess_loss"].to_numpy().astype(np.float64)


def expert_share(out: Path, n_experts: int, moe_layer: int = -1, min_count: int = 1) -> pd.DataFrame:
    """Per token id (index `token_id`): `count`, `expert_<e>` shares of its top-1 routes at
    MoE layer `moe_layer` (an index into the MoE layers, -1 the last), `top_expert`,
    `top_share`, `std` (`routing_stats.specialization_of_counts`); ids seen fewer than
    `min_count` times are left out."""
    paths = _token_files(out)
    _require(out, ["token_id", "experts"])
    counts = pd.Series(dtype="int64")
    for path in paths:
        table = _read(path, ["token_id", "experts"])
        if table.num_rows == 0:
            continue
        lengths = pc.list_value_length(table["experts"]).to_numpy(zero_copy_only=False)
        n_layers = int(lengths[0])
        if not -n_layers <= moe_layer < n_layers:
            raise WorkbenchError(f"moe_layer {moe_layer} is out of range for {n_layers} MoE layers")
        top1 = pc.list_flatten(table["experts"]).to_numpy().reshape(-1, n_layers)[:, moe_layer]  # [N]
        keys = table["token_id"].to_numpy() * n_experts + top1
        counts = counts.add(pd.Series(keys).value_counts(), fill_value=0)
    if counts.empty:
        raise WorkbenchError("the corpus has no routed tokens")
    keys = counts.index.to_numpy(np.int64)
    token_ids = np.unique(keys // n_experts)
    matrix = np.zeros((len(token_ids), n_experts), dtype=np.int64)
    matrix[np.searchsorted(token_ids, keys // n_experts), keys % n_experts] = counts.to_numpy(np.int64)
    table = specialization_of_counts(token_ids, matrix, min_count)
    table.index.name = "token_id"
    return table
