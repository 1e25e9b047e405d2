"""Attention statistics and KV importance per layer, head and position, computed from Q and
K as each layer runs (see `workbench/forward/attention.py` and `workbench/kernels/attention_stats.py`);
no T x T matrix is kept.

Signal "attention". With A the attention of one layer and head (rows: queries q, columns: keys j):
    attn_entropy   [L, H, T]  -sum_j A_qj log A_qj of each query q (nats; 0 for the first token)
    attn_sink_mass [L, H, T]  A_q0, each query's mass on the first key (attention sink; Xiao et al. 2023)
    attn_received  [L, H, T]  sum_q A_qj, the attention key j receives (H2O's heavy-hitter score;
                              Zhang et al. 2023); early keys are seen by more queries
    attn_previous  [L, H, T]  A_q,q-1, each query's mass on the key just before it (0 for the first
                              token); RAUQ's uncertainty-aware heads (Vazhentsev et al. 2025)
    attn_head_entropy [L, H]  head summary: mean attention entropy over queries 1..T-1
    attn_head_sink    [L, H]  head summary: mean sink mass over queries 1..T-1 (the head's sink share)
    attn_rows         [T, T]  exact attention A averaged over layers and heads, row q = query q;
                              only for inputs of at most ATTENTION_ROWS_MAX_T (512) tokens
Table columns: attn_entropy, attn_sink_mass, attn_received, attn_previous, each averaged over layers and heads.
The head summaries leave out query 0: it sees only key 0, so its entropy 0 and sink mass 1 (or,
with learned sinks, its split between key 0 and the sink) say nothing about the head, and on a
short text they would pull the entropy mean toward 0 and the sink mean toward 1 (by 1 / T of the
way). A one-token text keeps its only query.

Signal "keyformer" (Adnan et al. 2024; `workbench.kv.keyformer_scores`): the accumulated
Gumbel-softmax of the pre-softmax scores, sum_q softmax_j((x_qj + g_qj) / tau_q), tau 1 -> 2 over
the queries, noise seeded (layer l: seed KEYFORMER_SEED + l): array attn_keyformer [L, H, T]
and the column attn_keyformer (mean over layers and heads).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..forward import capture as capture_settings  # read at call time: the estimate follows the capture's limit
from ..forward.capture import ATTENTION_SINK, KEYFORMER_SEED
from ..kernels.attention_stats import QUERY_BLOCK
from ..kv import KEYFORMER_TAU
from .registry import Column, SignalOutput, register

FLOAT32 = 4
STATISTICS = (("attn_entropy", "entropy"), ("attn_sink_mass", "sink_mass"), ("attn_received", "received"),
              ("attn_previous", "previous"))


def _heads(model) -> int:
    return getattr(model.hf.config, "num_attention_heads", 1)


def _attention_bytes(model, n_tokens: int) -> int:
    """Four stored [L, H, T] float32 arrays; one layer's working set, two [H, block, T] float32
    slabs (scores, their exponentials); and, only when T <= ATTENTION_ROWS_MAX_T, the exact rows
    (the [T, T] sum, one layer's [T, T] and its host copy)."""
    heads = _heads(model)
    stored = len(STATISTICS) * model.n_layers * heads * FLOAT32 * n_tokens
    working = 2 * heads * QUERY_BLOCK * FLOAT32 * n_tokens
    rows = 3 * n_tokens**2 * FLOAT32 if n_tokens <= capture_settings.ATTENTION_ROWS_MAX_T else 0
    return stored + working + rows


def _keyformer_bytes(model, n_tokens: int) -> int:
    """The stored [L, H, T] scores and two [H, block, T] slabs (scores, noise)."""
    heads = _heads(model)
    return n_tokens * (model.n_layers * heads * FLOAT32 + 2 * heads * QUERY_BLOCK * FLOAT32)


def _per_layer(capture, field: str) -> tuple[list[int], np.ndarray]:
    """Model layer indices and the statistic stacked over them: [L, H, T] float32."""
    layers = sorted(capture.attention)
    return layers, np.stack([capture.attention[i][field] for i in layers]).astype(np.float32)


def _head_mean(values: np.ndarray) -> np.ndarray:
    """[L, H, T] -> [L, H]: mean over the queries that see more than one key, 1..T-1 (query 0
    alone when T = 1)."""
    return (values[..., 1:] if values.shape[-1] > 1 else values).mean(-1)


def _column(values: np.ndarray):
    """[L, H, T] -> the table column [T]: mean over layers and heads."""
    return pd.array(values.mean(axis=(0, 1)).astype(np.float64), dtype="Float64")


@register(
    "attention",
    description="attention entropy, sink mass, received attention (H2O) and previous-token attention per layer, head "
                "and position",
    needs=("attention",),
    columns=(Column("attn_entropy", label="attn H", unit="nats", terminal=True),
             Column("attn_sink_mass", label="sink mass", terminal=True),
             Column("attn_received", label="received", terminal=True)),
    arrays=tuple(name for name, _ in STATISTICS) + ("attn_head_entropy", "attn_head_sink", "attn_rows"),
    memory_bytes=_attention_bytes,
)
def attention(capture, params) -> SignalOutput:
    arrays = {}
    for name, field in STATISTICS:
        layers, arrays[name] = _per_layer(capture, field)
    arrays["attn_head_entropy"] = _head_mean(arrays["attn_entropy"])  # [L, H]
    arrays["attn_head_sink"] = _head_mean(arrays["attn_sink_mass"])
    if capture.attention_rows is not None:
        arrays["attn_rows"] = capture.attention_rows / len(layers)  # [T, T]
    columns = {name: _column(arrays[name]) for name, _ in STATISTICS}
    meta = {"attention_sink": ATTENTION_SINK, "attention_layers": layers,
            "attention_rows_max_tokens": capture_settings.ATTENTION_ROWS_MAX_T}
    return SignalOutput(columns=columns, arrays=arrays, meta=meta)


@register(
    "keyformer",
    description="Keyformer KV-importance score per layer, head and key (Gumbel-softmax attention received, tau 1 -> 2, seeded)",
    needs=("keyformer",),
    columns=(Column("attn_keyformer", label="keyformer", terminal=True),),
    arrays=("attn_keyformer",),
    memory_bytes=_keyformer_bytes,
)
def keyformer(capture, params) -> SignalOutput:
    layers, scores = _per_layer(capture, "keyformer")
    meta = {"attention_layers": layers, "keyformer": {"tau": list(KEYFORMER_TAU), "seed": KEYFORMER_SEED}}
    return SignalOutput(columns={"attn_keyformer": _column(scores)}, arrays={"attn_keyformer": scores}, meta=meta)
