"""Attention and KV-importance views (pure figure builders, registered as panels):

- head grid: a head summary (mean attention entropy, or mean sink mass) for every layer x head;
- received attention per key (H2O's score), averaged over layers and heads or for one head;
- the exact attention row of the selected token (averaged over layers and heads; kept by
  analyze for short inputs, `workbench.exact_attention` gives any row of any head);
- KV-cache keep/evict: which keys a cache of `heavy` + `recent` slots would keep, ranked by
  received attention (H2O) or by Keyformer scores.
Clicking a bar selects that token in the other views. Per-key scores are drawn on a log axis:
the first token (the attention sink) receives ten times more than the others, which a linear
axis would flatten. Past `MAX_BARS` keys (bars too thin to see), the per-key scores are drawn
as a line through each bin's lowest and highest score (`figures.decimate`, as the signal
chart does), with the selected (or kept) keys as markers.
Figures use figures.py's light template.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from workbench.kv import heavy_hitters

from .figures import LIGHT, decimate, selection_line, token_reprs
from .panels import Panel, register_panel

SUMMARIES = {"entropy": ("attn_head_entropy", "mean attention entropy (nats)"),
             "sink": ("attn_head_sink", "mean mass on the first key (sink)")}
SCORES = {"received": ("attn_received", "H2O", "received attention"),
          "keyformer": ("attn_keyformer", "Keyformer", "Keyformer score")}
SELECTED, KEY, KEPT, EVICTED = "#ff7f0e", "#4c78a8", "#2ca02c", "#c7c7c7"
POSITION_AXIS = {"workbench": {"position_axis": "x"}}  # a clicked bar selects its token
MAX_BARS = 300  # keys drawn as bars; longer runs are drawn as a line through each bin's min and max


def has_attention(run) -> bool:
    return "attn_received" in run.arrays


def has_keyformer(run) -> bool:
    return "attn_keyformer" in run.arrays


def head_grid(run, position=None, summary: str = "entropy") -> go.Figure:
    name, label = SUMMARIES[summary]
    values = run.arrays[name]  # [L, H]
    layers = run.meta.get("attention_layers", list(range(values.shape[0])))
    heatmap = go.Heatmap(
        z=values, x=[f"h{h}" for h in range(values.shape[1])], y=[f"L{layer}" for layer in layers],
        colorscale="Viridis", colorbar=dict(title="entropy (nats)" if summary == "entropy" else summary),
        hovertemplate="layer %{y}, head %{x}<br>" + label + " = %{z:.3f}<extra></extra>",
    )
    fig = go.Figure(heatmap, layout=LIGHT)
    fig.update_layout(title_text=f"Heads: {label}", xaxis_title="head", yaxis_title="layer", height=420,
                      yaxis=dict(autorange="reversed"))
    return fig


def received(run, position=None, layer: int | None = None, head: int | None = None) -> go.Figure:
    """Received attention per key; `layer`/`head` index the arrays (None: mean over them)."""
    scores = _scores(run, "attn_received", layer, head)
    colors = np.where(run.table["position"].to_numpy() == position, SELECTED, KEY)
    fig = per_key(run, scores, position, "received", colors, KEY)
    fig.update_layout(title_text=f"Attention received by each token ({_which(layer, head)})",
                      xaxis_title="position (key)", yaxis_title="sum over queries of A[q, key] (log)", height=340,
                      meta=POSITION_AXIS)
    return fig


def exact_row(run, position=None) -> go.Figure:
    """What the selected token (default: the last) attends to: its exact attention row,
    averaged over layers and heads, over the keys up to it."""
    table = run.table
    query = len(table) - 1 if position is None or not 0 <= position < len(table) else int(position)
    fig = go.Figure(layout=LIGHT)
    if "attn_rows" not in run.arrays:
        limit = run.meta.get("attention_rows_max_tokens")
        fig.add_annotation(text=f"Exact rows are kept for inputs of at most {limit} tokens (this one has {len(table)}).<br>"
                                f"In a notebook: workbench.exact_attention(model, run, queries=[{query}])",
                           showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        fig.update_layout(title_text="Exact attention row", height=340, xaxis_visible=False, yaxis_visible=False)
        return fig
    row = run.arrays["attn_rows"][query, :query + 1]  # [keys up to the query]
    keys = table["position"].to_numpy()[:query + 1]
    fig.add_trace(go.Bar(x=keys, y=row, marker_color=np.where(keys == query, SELECTED, KEY),
                         customdata=token_reprs(table["token"].iloc[:query + 1]),
                         hovertemplate="%{x}: %{customdata}<br>A = %{y:.4f}<extra></extra>"))
    fig.update_layout(title_text=f"What token {query} ({table['token'].iloc[query]!r}) attends to: exact row, "
                                 "mean over layers and heads", xaxis_title="position (key)", yaxis_title="attention",
                      height=340, meta=POSITION_AXIS)
    return fig


def keep_evict(run, position=None, heavy: int = 8, recent: int = 8, layer=None, head=None,
               score: str = "received") -> go.Figure:
    """A KV cache of `heavy` + `recent` keys ranked by `score` ("received": H2O, or
    "keyformer"): kept tokens green, evicted grey."""
    name, method, label = SCORES[score]
    scores = _scores(run, name, layer, head)
    keep = heavy_hitters(scores, heavy, recent)
    fig = per_key(run, scores, position, label, np.where(keep, KEPT, EVICTED), EVICTED,
                  notes=np.where(keep, "kept", "evicted"))
    legend = f"<span style='color:{KEPT}'>■</span> kept, <span style='color:{EVICTED}'>■</span> evicted"
    fig.update_layout(title_text=f"{method} cache of {heavy} heavy + {recent} recent keys: {int(keep.sum())} kept of "
                                 f"{len(keep)} ({legend})<br>{label} per key ({_which(layer, head)})",
                      xaxis_title="position (key)", yaxis_title=f"{label} (log)", height=340, meta=POSITION_AXIS)
    return fig


def per_key(run, scores: np.ndarray, position, label: str, colors: np.ndarray, background: str,
            notes: np.ndarray | None = None, max_bars: int = MAX_BARS) -> go.Figure:
    """`scores` [T] per key, hovering each token's repr (and its `notes`, e.g. "kept"), the
    selected key marked by the dotted selection line: one bar per key in `colors`; past
    `max_bars` keys, a `background` line through each bin's lowest and highest score
    (`figures.decimate`: a spike survives) and markers on the keys not colored `background`."""
    positions = run.table["position"].to_numpy()
    reprs = token_reprs(run.table["token"])
    customdata = reprs if notes is None else np.stack([reprs, notes], -1)
    token = "%{customdata}" if notes is None else "%{customdata[0]} (%{customdata[1]})"
    hover = "%{x}: " + token + "<br>" + label + " %{y:.3f}<extra></extra>"
    if len(positions) <= max_bars:
        traces = [go.Bar(x=positions, y=scores, marker_color=colors, customdata=customdata, hovertemplate=hover)]
    else:
        drawn, marked = decimate(scores, max_bars), np.flatnonzero(colors != background)
        traces = [go.Scatter(x=positions[drawn], y=scores[drawn], mode="lines", line=dict(color=background, width=1.5),
                             customdata=customdata[drawn], hovertemplate=hover),
                  go.Scatter(x=positions[marked], y=scores[marked], mode="markers",
                             marker=dict(color=colors[marked], size=7), customdata=customdata[marked],
                             hovertemplate=hover)]
    selected = position is not None and 0 <= position < len(positions)
    return go.Figure(traces, layout=dict(showlegend=False, shapes=[selection_line(position)] if selected else [],
                                         yaxis_type="log", **LIGHT))


def _which(layer, head) -> str:
    return "mean over layers and heads" if layer is None and head is None else f"layer {layer}, head {head}"


def _scores(run, name: str, layer, head) -> np.ndarray:
    values = run.arrays[name]  # [L, H, T]
    values = values if layer is None else values[layer:layer + 1]
    values = values if head is None else values[:, head:head + 1]
    return values.mean(axis=(0, 1))


register_panel(Panel("attention.heads", "Attention heads (mean entropy)", has_attention, head_grid))
register_panel(Panel("attention.received", "Received attention (H2O score)", has_attention, received))
register_panel(Panel("attention.row", "Exact attention row of the selected token", has_attention, exact_row))
register_panel(Panel("attention.h2o", "Heavy-hitter KV cache: kept and evicted", has_attention, keep_evict))
register_panel(Panel("attention.keyformer", "Keyformer KV cache: kept and evicted", has_keyformer,
                     lambda run, position=None: keep_evict(run, position, score="keyformer")))
