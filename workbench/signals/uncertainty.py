"""Uncertainty of the next-token distribution at each position.

Row t describes the prediction of token t from the tokens before it (p = softmax(z) at
position t - 1, y = token t): entropy H = lse - sum p z, varentropy sum p (log p + H)^2,
surprisal -log p(y), target log-prob, rank #{v : z_v > z_y}, margin log p1 - log p2, and the
top-k alternatives. The first token has no prediction: its values are <NA>. The prediction
after the last token goes to meta["next_token"].
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..forward.vocab_stats import hidden_vocab_stats, next_token_targets
from .registry import Column, SignalOutput, register

FLOAT_COLUMNS = ("entropy", "varentropy", "surprisal", "target_logprob", "margin")
COLUMNS = (Column("entropy", unit="nats", terminal=True), Column("varentropy", unit="nats²"),
           Column("surprisal", unit="nats", terminal=True), Column("target_logprob", unit="nats"),
           Column("margin", unit="nats", terminal=True), Column("rank", terminal=True),
           "topk_ids", "topk_tokens", "topk_probs")


def _memory_bytes(model, n_tokens: int) -> int:
    return 64 * n_tokens  # the [T] result vectors and top-k lists; logits are chunked (see forward/vocab_stats.py)


@register(
    "uncertainty",
    description="entropy, varentropy, surprisal, rank, margin and top-k alternatives of each next-token prediction",
    needs=("final_hidden",),
    columns=COLUMNS,
    memory_bytes=_memory_bytes,
)
def uncertainty(capture, params) -> SignalOutput:
    model, top_k = capture.model, params["top_k"]
    stats = hidden_vocab_stats(model, capture.final_hidden, next_token_targets(capture.ids), top_k=top_k)
    values = {
        "entropy": stats.entropy, "varentropy": stats.varentropy, "surprisal": -stats.target_logprob,
        "target_logprob": stats.target_logprob, "margin": stats.margin,
    }
    columns = {name: _shifted(tensor.double().cpu().numpy(), "Float64") for name, tensor in values.items()}
    columns["rank"] = _shifted(stats.target_rank.cpu().numpy(), "Int64")
    ids = stats.topk_ids.cpu().numpy()  # [T, k]
    probs = stats.topk_probs.double().cpu().numpy()
    pieces = decode_pieces(model.tokenizer, ids)
    columns["topk_ids"] = [None] + [row.tolist() for row in ids[:-1]]
    columns["topk_tokens"] = [None] + [[pieces[i] for i in row] for row in ids[:-1]]
    columns["topk_probs"] = [None] + [row.tolist() for row in probs[:-1]]
    return SignalOutput(columns=columns, meta={"next_token": next_token_record(model.tokenizer, stats, -1)})


def next_token_record(tokenizer, stats, row: int) -> dict:
    """meta["next_token"]: the prediction in `row` of `stats` (a VocabStats with top-k), as
    its entropy and its top-k ids, token texts and probabilities."""
    ids = stats.topk_ids[row].tolist()
    pieces = decode_pieces(tokenizer, ids)
    return {"entropy": float(stats.entropy[row]), "topk_ids": ids, "topk_tokens": [pieces[i] for i in ids],
            "topk_probs": stats.topk_probs[row].double().tolist()}


def _shifted(values: np.ndarray, dtype: str) -> pd.array:
    """Stats of position t describe token t + 1: shift down one row, <NA> first."""
    out = pd.array(np.concatenate([[0], values[:-1]]), dtype=dtype)
    out[0] = pd.NA
    return out


def decode_pieces(tokenizer, ids) -> dict[int, str]:
    """Each distinct token id -> its decoded text piece."""
    unique = sorted({int(i) for i in np.asarray(ids).ravel()})
    return dict(zip(unique, tokenizer.batch_decode([[i] for i in unique])))
