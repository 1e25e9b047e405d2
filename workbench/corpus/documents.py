"""Per-document rows: what happened to each document, and its sequence figures.

From a shard's token rows, for each document with surprisal (the uncertainty signal):
    n_scored        tokens with a prediction (every token but each segment's first)
    mean_surprisal  (1/n) sum_t -log p(y_t | y_<t), nats per token
    perplexity      exp(mean_surprisal) (null past float64's range)
    max_surprisal   the least expected token's surprisal
    mean_excess_loss  with a reference: the mean of surprisal - reference_surprisal
Skipped documents (`segments.SKIPPED`) have a row with their status and no figures.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .segments import Prepared

MAX_EXP = math.log(np.finfo(np.float64).max)  # exp of more overflows float64


def document_rows(prepared: Sequence[Prepared], tokens: pd.DataFrame) -> pd.DataFrame:
    """One row per document of `prepared` (in doc_id order), figures from its `tokens` rows."""
    rows = pd.DataFrame({
        "doc_id": pd.array([p.doc_id for p in prepared], dtype="int64"),
        "status": [p.status for p in prepared],
        "n_tokens": pd.array([p.n_tokens for p in prepared], dtype="int64"),
        "n_segments": pd.array([len(p.segments) for p in prepared], dtype="int64"),
    })
    if "surprisal" not in tokens:
        return rows
    figures = document_figures(tokens)
    rows = rows.merge(figures, how="left", left_on="doc_id", right_index=True)
    rows["n_scored"] = rows["n_scored"].fillna(0).astype("int64")  # 0: a one-token document predicts nothing
    return rows


def document_figures(tokens: pd.DataFrame) -> pd.DataFrame:
    """Per doc_id (the index): n_scored, mean_surprisal, perplexity, max_surprisal (and
    mean_excess_loss when the rows have excess_loss), over the rows that have a prediction."""
    columns = ["surprisal"] + (["excess_loss"] if "excess_loss" in tokens else [])
    scored = tokens.loc[tokens["surprisal"].notna(), ["doc_id", *columns]].astype({c: "float64" for c in columns})
    groups = scored.groupby("doc_id")
    figures = pd.DataFrame({
        "n_scored": groups["surprisal"].count(),
        "mean_surprisal": groups["surprisal"].mean(),
        "max_surprisal": groups["surprisal"].max(),
    })
    mean = figures["mean_surprisal"].to_numpy()
    with np.errstate(over="ignore"):
        figures["perplexity"] = np.where(mean < MAX_EXP, np.exp(np.minimum(mean, MAX_EXP)), np.nan)
    if "excess_loss" in tokens:
        figures["mean_excess_loss"] = groups["excess_loss"].mean()
    return figures
