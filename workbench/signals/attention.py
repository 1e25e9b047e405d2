"""Attention statistics per layer, head and position, computed from Q and K during the
forward (see `workbench/attention_capture.py` and `kernels/attention_stats.py`); no
T x T matrix is kept.

Arrays [layer, head, position]: attn_entropy (of each query's attention), attn_sink_mass
(mass on the first `sink` keys), attn_received (per key: sum over queries of the attention
it receives, H2O's heavy-hitter score). Head summaries [layer, head]: attn_head_entropy
(mean over queries), attn_head_sink (mean sink mass). Table columns: the same per-token
values averaged over layers and heads.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .registry import SignalOutput, register

QUERY_BLOCK_SLABS = 4  # scores, log p, p, p log p: [heads, block, T] each


def _bytes_per_token(model) -> int:
    """Three stored [L, H, T] float32 arrays, plus one layer's working set while its
    statistics are computed: a few [H, block, T] float32 slabs, i.e. linear in T."""
    from ..kernels.attention_stats import QUERY_BLOCK

    heads = getattr(model.hf.config, "num_attention_heads", 1)
    return 3 * model.n_layers * heads * 4 + QUERY_BLOCK_SLABS * heads * QUERY_BLOCK * 4


@register(
    "attention",
    description="attention entropy, sink mass and received attention (H2O) per layer, head and position",
    needs=("attention",),
    columns=("attn_entropy", "attn_sink_mass", "attn_received"),
    arrays=("attn_entropy", "attn_sink_mass", "attn_received", "attn_head_entropy", "attn_head_sink"),
    bytes_per_token=_bytes_per_token,
)
def attention(capture, params) -> SignalOutput:
    layers = sorted(capture.attention)
    arrays = {
        name: np.stack([capture.attention[i][field] for i in layers]).astype(np.float32)  # [L, H, T]
        for name, field in (("attn_entropy", "entropy"), ("attn_sink_mass", "sink_mass"), ("attn_received", "received"))
    }
    arrays["attn_head_entropy"] = arrays["attn_entropy"].mean(-1)  # [L, H]
    arrays["attn_head_sink"] = arrays["attn_sink_mass"].mean(-1)
    columns = {name: pd.array(values.mean(axis=(0, 1)).astype(np.float64), dtype="Float64") for name, values in
               (("attn_entropy", arrays["attn_entropy"]), ("attn_sink_mass", arrays["attn_sink_mass"]),
                ("attn_received", arrays["attn_received"]))}
    return SignalOutput(columns=columns, arrays=arrays, meta={"attention_sink": params.get("sink", 1),
                                                            "attention_layers": layers})
