"""Figures the tutorial labs (notebooks/) draw, kept here so that their cells show the idea
and not the plotting: plain builders, data in, plotly Figure out, in figures.py's light look.

- `online_vs_hindsight` (lab 03): the keys each query sees when H2O evicts online, over the
  keys a hindsight choice keeps.
- `eviction_cost` (lab 03): the per-token KL of cache policies' predictions to the full cache.
- `attention_rows` (lab 03): what one query attends to in each head of a layer.
- `exact_vs_cheap_thr` (lab 05): each response token's exact Token Hidden Reward against the
  cheap, last-layer approximation, tokens of correct and of wrong responses in two colors.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.results.group import Group

from .figures import LIGHT, token_reprs

CORRECT, WRONG = "#2c7bb6", "#d7191c"  # the blue and red of the THR views


def exact_vs_cheap_thr(group: Group, cheap: pd.Series, *, column: str = "thr") -> go.Figure:
    """Scatter of the exact THR (`group.table[column]`) against `cheap` [tokens], tokens of
    correct and of wrong responses in two colors; hover: response, position, token."""
    table = group.table
    correct = group.correct()[table["response"].to_numpy()]
    fig = go.Figure(layout=LIGHT | dict(height=380, showlegend=True, xaxis_title="exact THR", yaxis_title="cheap THR"))
    for name, rows, color in (("correct responses", correct, CORRECT), ("wrong responses", ~correct, WRONG)):
        hover = [f"response {r}, #{p}: {t!r}" for r, p, t in table.loc[rows, ["response", "position", "token"]].itertuples(False)]
        fig.add_scatter(x=table.loc[rows, column], y=cheap.loc[rows], mode="markers", name=name, marker_color=color,
                        text=hover, hovertemplate="%{text}<br>exact %{x:.3g}<br>cheap %{y:.3g}<extra></extra>")
    fig.update_layout(title_text="Exact vs cheap THR")
    return fig


def online_vs_hindsight(visible: np.ndarray, hindsight: np.ndarray, tokens) -> go.Figure:
    """Top: visible [T, T] (query x key, bool), the keys query t sees under online eviction;
    bottom: hindsight [T] (bool), the keys a choice made after the last query keeps."""
    labels = [f"{i}:{t}" for i, t in enumerate(token_reprs(tokens))]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=(0.85, 0.15), vertical_spacing=0.03)
    fig.add_heatmap(z=np.asarray(visible, int), x=labels, y=labels, colorscale=[[0, "#f0f0f0"], [1, "#2ca02c"]],
                    showscale=False, hovertemplate="query %{y}<br>key %{x}<br>seen: %{z}<extra></extra>", row=1, col=1)
    fig.add_heatmap(z=np.asarray(hindsight, int)[None], x=labels, y=["hindsight"], showscale=False,
                    colorscale=[[0, "#f0f0f0"], [1, "#4c78a8"]], hovertemplate="key %{x}<br>kept: %{z}<extra></extra>",
                    row=2, col=1)
    fig.update_layout(LIGHT | dict(height=520, title_text="Online H2O (green: keys each query sees) vs hindsight (blue)"))
    fig.update_yaxes(autorange="reversed", showticklabels=False, row=1, col=1)
    fig.update_xaxes(showticklabels=False)
    return fig


def eviction_cost(kl: pd.DataFrame) -> go.Figure:
    """One line per cache policy: kl [positions x policies], KL(full || policy) in nats."""
    fig = go.Figure(layout=LIGHT | dict(height=320, showlegend=True, xaxis_title="position",
                                        yaxis_title="KL to the full cache (nats)", yaxis_type="log"))
    for policy in kl.columns:
        fig.add_scatter(x=kl.index, y=kl[policy].clip(lower=1e-6), mode="lines", name=policy)
    fig.update_layout(title_text="What eviction costs, token by token")
    return fig


def attention_rows(rows: np.ndarray, tokens, title: str) -> go.Figure:
    """rows [H, T]: one query's attention over the keys in each head, as a heatmap."""
    labels = [f"{i}:{t}" for i, t in enumerate(token_reprs(tokens))]
    fig = go.Figure(go.Heatmap(z=rows, x=labels[:rows.shape[1]], y=[f"head {h}" for h in range(rows.shape[0])],
                               colorscale="Blues", hovertemplate="%{y}<br>key %{x}<br>%{z:.3f}<extra></extra>"),
                    layout=LIGHT | dict(height=320))
    fig.update_layout(title_text=title)
    return fig
