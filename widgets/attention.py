"""Attention and KV-importance views (pure figure builders, registered as panels):

- head grid: a head summary (mean attention entropy, or mean sink mass) for every layer x head;
- received attention per key (H2O's score), averaged over layers and heads or for one head;
- heavy-hitter keep/evict: which keys a KV cache of `heavy` + `recent` slots would keep.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from workbench.kv import heavy_hitters

from .panels import Panel, register_panel

SUMMARIES = {"entropy": ("attn_head_entropy", "mean attention entropy (nats)"),
             "sink": ("attn_head_sink", "mean mass on the first key (sink)")}


def has_attention(run) -> bool:
    return "attn_received" in run.arrays


def head_grid(run, position=None, summary: str = "entropy") -> go.Figure:
    name, label = SUMMARIES[summary]
    values = run.arrays[name]  # [L, H]
    layers = run.meta.get("attention_layers", list(range(values.shape[0])))
    fig = go.Figure(go.Heatmap(
        z=values, x=[f"h{h}" for h in range(values.shape[1])], y=[f"L{layer}" for layer in layers],
        colorscale="Viridis", colorbar=dict(title=summary),
        hovertemplate="layer %{y}, head %{x}<br>" + label + " = %{z:.3f}<extra></extra>",
    ))
    fig.update_layout(title=f"Heads: {label}", xaxis_title="head", yaxis_title="layer", height=420,
                      yaxis=dict(autorange="reversed"))
    return fig


def received(run, position=None, layer: int | None = None, head: int | None = None) -> go.Figure:
    """Received attention per key; `layer`/`head` index the arrays (None: mean over them)."""
    scores = _received(run, layer, head)
    table = run.table
    colors = np.where(table["position"].to_numpy() == position, "#ff7f0e", "#4c78a8")
    which = "mean over layers and heads" if layer is None and head is None else f"layer {layer}, head {head}"
    fig = go.Figure(go.Bar(x=table["position"], y=scores, marker_color=colors, customdata=table["token"],
                           hovertemplate="%{x}: %{customdata!r}<br>received %{y:.3f}<extra></extra>"))
    fig.update_layout(title=f"Attention received by each token ({which})", xaxis_title="position (key)",
                      yaxis_title="sum over queries of A[q, key]", height=340)
    return fig


def keep_evict(run, position=None, heavy: int = 8, recent: int = 8, layer=None, head=None) -> go.Figure:
    """H2O with a budget of `heavy` + `recent` keys: kept tokens green, evicted grey."""
    scores = _received(run, layer, head)
    keep = heavy_hitters(scores, heavy, recent)
    table = run.table
    fig = go.Figure(go.Bar(
        x=table["position"], y=scores, marker_color=np.where(keep, "#2ca02c", "#c7c7c7"),
        customdata=np.stack([table["token"], np.where(keep, "kept", "evicted")], -1),
        hovertemplate="%{x}: %{customdata[0]!r} (%{customdata[1]})<br>received %{y:.3f}<extra></extra>",
    ))
    fig.update_layout(title=f"H2O cache of {heavy} heavy + {recent} recent keys: {int(keep.sum())} kept of {len(keep)}",
                      xaxis_title="position (key)", yaxis_title="received attention", height=340)
    return fig


def _received(run, layer, head) -> np.ndarray:
    values = run.arrays["attn_received"]  # [L, H, T]
    values = values if layer is None else values[layer:layer + 1]
    values = values if head is None else values[:, head:head + 1]
    return values.mean(axis=(0, 1))


register_panel(Panel("attention.heads", "Attention heads (mean entropy)", has_attention, head_grid))
register_panel(Panel("attention.received", "Received attention (H2O score)", has_attention, received))
register_panel(Panel("attention.h2o", "Heavy-hitter KV cache: kept and evicted", has_attention, keep_evict))
