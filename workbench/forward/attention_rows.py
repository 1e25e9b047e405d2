"""Exact attention rows for the queries a user points at.

The streamed statistics (signal "attention") never hold a T x T matrix. To inspect what one
token attends to, `exact_attention` runs the forward once more and, at each chosen layer,
computes softmax(q k^T / sqrt(d)) for the chosen queries only, from the same post-RoPE Q and K
the model uses (masks, GQA, learned sinks included):

    rows = exact_attention(model, run, queries=[12, 40])      # [L, H, 2, T]
    rows = exact_attention(model, "short text")                # every query: [L, H, T, T], short inputs only

All rows of every layer and head are the eager attention maps (L x H x T x T floats: 18 GB
for the embedded model at 4096 tokens), hence the limit on `queries=None`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import WorkbenchError
from ..kv import PAGERANK_MAX_T
from ..tokens import tokenize_text
from . import memory
from .attention import AttentionInputs, capturing_queries_keys

ALL_ROWS_MAX_T = PAGERANK_MAX_T  # every query's row: short inputs only (also what PageRank takes)


def exact_attention(model, source, queries: Sequence[int] | None = None, *, layers: Sequence[int] | None = None) -> np.ndarray:
    """Attention probabilities [len(layers), H, len(queries), T] float32 (row r: what query
    queries[r] attends to; a model with learned sinks puts the rest of each row's mass there).

    source: a text, a `Run` (its tokens) or a list of token ids. queries: positions (negative
    counts from the end), or None for all of them (at most ALL_ROWS_MAX_T tokens). layers:
    model layer indices, or None for every layer."""
    ids = _token_ids(model, source)
    n_tokens, n_layers = len(ids), model.n_layers
    if queries is None:
        if n_tokens > ALL_ROWS_MAX_T:
            raise WorkbenchError(
                f"every query's attention row of {n_tokens} tokens is the full eager attention map; it is meant for "
                f"inputs of at most {ALL_ROWS_MAX_T} tokens. Pass queries=[...] for the rows you want to inspect"
            )
        queries = range(n_tokens)
    queries = [_position(q, n_tokens, "query") for q in queries]
    layers = list(range(n_layers)) if layers is None else [_position(i, n_layers, "layer") for i in layers]
    heads = getattr(model.hf.config, "num_attention_heads", 1)
    rows_bytes = len(layers) * heads * len(queries) * n_tokens * 4
    memory.check_fits(f"exact attention rows of {len(queries)} queries x {n_tokens} keys at {len(layers)} layers",
                      rows_bytes * 4 + memory.forward_bytes(model, n_tokens), model.device,  # rows, scores, mask, exp
                      "ask for fewer queries or layers")
    rows = np.empty((len(layers), heads, len(queries), n_tokens), dtype=np.float32)
    slot = {layer: i for i, layer in enumerate(layers)}

    def on_layer(inputs: AttentionInputs):
        if inputs.layer in slot:
            rows[slot[inputs.layer]] = inputs.rows(queries)[0].cpu().numpy()

    with torch.inference_mode(), capturing_queries_keys(model.hf, on_layer):
        model.adapter.backbone(model.hf)(input_ids=torch.tensor([ids], device=model.device), use_cache=False)
    return rows


def _token_ids(model, source) -> list[int]:
    if isinstance(source, str):
        ids = tokenize_text(model.tokenizer, source).ids
    elif hasattr(source, "table"):  # a Run
        ids = source.table["token_id"].tolist()
    else:
        ids = [int(i) for i in source]
    if not ids:
        raise WorkbenchError("no tokens: give a text, a Run or token ids")
    limit = model.context_length
    if limit is not None and len(ids) > limit:
        raise WorkbenchError(f"{len(ids)} tokens but {model.name} takes at most {limit}")
    return ids


def _position(index: int, size: int, what: str) -> int:
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise WorkbenchError(f"a {what} must be an integer position, got {index!r} "
                             f"(valid are 0..{size - 1}, negative counts from the end)")
    if not -size <= index < size:
        raise WorkbenchError(f"{what} {index!r} is out of range: valid are 0..{size - 1} (negative counts from the end)")
    return int(index) % size
