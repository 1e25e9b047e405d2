"""Views of a comparison (`model.compare`), pure figure builders registered as panels, linked
to the one selected token like every view. p is the model, q the reference.

- `pair_distributions`: both next-token distributions at the selected position side by side
  (each side's top-k, the actual token in the selection color, the position's KL, JS and
  acceptance in the title);
- `branch_view`: the positions where the greedy choices differ, by JS (click one to select
  it), with both sides' continuations at the selected position when it was branched;
- `acceptance_chart`: the speculative acceptance sum_v min(p_v, q_v) along the text (q drafting
  for p), and the expected tokens per speculative step with `gamma` drafted tokens at that
  acceptance, E = (1 - a^(gamma+1)) / (1 - a) (Leviathan et al. 2023, eq. 1).

The token strip and the signal chart color and plot any pair signal (`kl_pq`, `js`,
`acceptance`, `log_ratio`, ...): they are columns of the run's table like any other.
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.compare.signals import expected_accepted_tokens

from .figures import BAR_COLOR, LIGHT, LINE_COLOR, SELECTED_COLOR, figure_layout, selection_line, token_reprs
from .panels import Panel, register_panel

DEFAULT_GAMMA = 4
REFERENCE_COLOR = "#5aae61"  # q's line and bars beside p's LINE_COLOR


def is_comparison(run) -> bool:
    return "acceptance" in run.table and "compare" in run.meta


def side_names(run) -> tuple[str, str]:
    """Short labels of p and q: the model names, or their contexts when one model reads two."""
    about = run.meta["compare"]
    if about["form"] == "models":
        return f"p: {run.meta.get('model')}", f"q: {about['reference']}"

    def context(value) -> str:
        return "no context" if value is None else repr(value if len(value) <= 24 else value[:23] + "…")

    return f"p: {context(about['context'])}", f"q: {context(about['reference_context'])}"


# ----- both distributions -------------------------------------------------------------------
def pair_distributions(run, selected: int | None = None) -> go.Figure:
    """p's and q's top-k candidates for token `selected`, side by side."""
    names = side_names(run)
    figure = make_subplots(rows=1, cols=2, subplot_titles=names, horizontal_spacing=0.25,
                           figure=go.Figure(layout=go.Layout(**LIGHT)))
    titles = list(figure.layout.annotations)  # the subplot titles, kept through figure_layout
    row = None if selected is None or not 0 <= selected < len(run.table) else run.table.iloc[selected]
    if row is None or row["topk_tokens"] is None:
        reason = ("select a token to see both predictions of it" if row is None
                  else "no prediction of this token on both sides (nothing comes before it on one side)")
        note = dict(text=reason, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        figure.update_layout(figure_layout("Both next-token distributions", height=300, annotations=titles + [note]))
        figure.update_xaxes(visible=False)
        figure.update_yaxes(visible=False)
        return figure
    actual = int(row["token_id"])
    for col, prefix in ((1, ""), (2, "ref_")):
        ids, tokens, probs = row[f"{prefix}topk_ids"], row[f"{prefix}topk_tokens"], row[f"{prefix}topk_probs"]
        colors = [SELECTED_COLOR if i == actual else (BAR_COLOR if col == 1 else REFERENCE_COLOR) for i in ids]
        labels = [f"{t!r} · rank {i}" for i, t in enumerate(tokens)]  # unique, as in the next-token chart
        figure.add_trace(go.Bar(x=probs, y=labels, orientation="h", marker_color=colors,
                                text=[f"{p:.1%}" for p in probs], textposition="auto",
                                hovertemplate="%{y}: %{x:.2%}<extra></extra>"), row=1, col=col)
    title = (f"Prediction of token #{selected} {row['token']!r} · KL(p‖q) {row['kl_pq']:.3g} · JS {row['js']:.3g} · "
             f"acceptance {row['acceptance']:.3f}")
    figure.update_layout(figure_layout(title, height=300, margin=dict(l=90, r=20, t=60, b=40), annotations=titles))
    figure.update_yaxes(autorange="reversed", automargin=True)
    figure.update_xaxes(tickformat=".2~%", rangemode="tozero")
    return figure


# ----- branches -------------------------------------------------------------------------------
def branch_view(run, selected: int | None = None) -> go.Figure:
    """JS at each divergent position (the greedy choices differ), branched ones filled; the
    selected position's two continuations in the title when it was branched."""
    table = run.table
    divergent = table.index[table["top1_agree"].eq(False).fillna(False)].to_numpy()
    has_branch = table["branch"].notna().to_numpy() if "branch" in table else np.zeros(len(table), bool)
    js = table["js"].to_numpy(dtype="float64", na_value=np.nan)
    tokens = token_reprs(table["token"].to_numpy()[divergent])
    chosen = [f"{p!r} | {q!r}" for p, q in zip(table["top1_token"].iloc[divergent], table["ref_top1_token"].iloc[divergent])]
    trace = go.Scatter(
        x=divergent, y=js[divergent], mode="markers", customdata=np.stack([tokens, chosen], -1) if len(divergent) else None,
        marker=dict(size=9, color=LINE_COLOR, symbol=["circle" if has_branch[i] else "circle-open" for i in divergent]),
        hovertemplate="#%{x} %{customdata[0]}<br>top-1 p | q: %{customdata[1]}<br>JS %{y:.3g}<extra></extra>",
    )
    title = f"Where the greedy choices differ: {len(divergent)} of {int(table['top1_agree'].notna().sum())} tokens"
    layout = figure_layout(title, "x", xaxis=dict(title="position", range=[-0.5, len(table) - 0.5]),
                           yaxis=dict(title="JS (nats)", rangemode="tozero"), height=330,
                           margin=dict(l=60, r=20, t=110, b=40))
    layout["title"] = dict(layout["title"], y=0.98, yanchor="top")  # above the branches' lines
    if selected is not None and 0 <= selected < len(table):
        layout["shapes"] = [selection_line(selected)]
        layout["annotations"] = [dict(text=_branch_text(run, selected), showarrow=False, xref="paper", yref="paper",
                                      x=0, y=1.02, xanchor="left", yanchor="bottom", align="left")]
    return go.Figure(trace, layout=layout)


def _branch_text(run, selected: int) -> str:
    """The selected position's branches (HTML-escaped lines for a plotly annotation)."""
    table, row = run.table, run.table.iloc[selected]
    names = side_names(run)
    if pd.isna(row["top1_agree"]):
        return f"#{selected}: no prediction on both sides"
    if row["top1_agree"]:
        return f"#{selected} {row['token']!r}: both choose {row['top1_token']!r}"
    if "branch" not in table or pd.isna(row["branch"]):
        return f"#{selected}: p chooses {row['top1_token']!r}, q {row['ref_top1_token']!r} (not branched: filled markers are)"
    before = run.text[:int(row["start"])][-40:]
    return "<br>".join(html.escape(line) for line in (
        f"#{selected} after …{before!r}:", f"{names[0]} → {row['branch']!r}", f"{names[1]} → {row['ref_branch']!r}"))


# ----- acceptance -----------------------------------------------------------------------------
def acceptance_chart(run, selected: int | None = None, gamma: int = DEFAULT_GAMMA) -> go.Figure:
    """Acceptance a_t = sum_v min(p_v, q_v) per position, and E_t = (1 - a_t^(gamma+1)) /
    (1 - a_t), the expected tokens per speculative step if every drafted position had a_t."""
    acceptance = run.table["acceptance"].to_numpy(dtype="float64", na_value=np.nan)
    expected = expected_accepted_tokens(acceptance, gamma)
    positions = np.arange(len(acceptance))
    tokens = token_reprs(run.table["token"].to_numpy())
    figure = go.Figure(layout=go.Layout(**LIGHT))
    figure.add_trace(go.Scatter(x=positions, y=acceptance, customdata=tokens, name="acceptance", mode="lines+markers",
                                line=dict(color=LINE_COLOR), connectgaps=False,
                                hovertemplate="#%{x} %{customdata}<br>acceptance %{y:.3f}<extra></extra>"))
    figure.add_trace(go.Scatter(x=positions, y=expected, customdata=tokens, name=f"E tokens/step, γ = {gamma}",
                                mode="lines", yaxis="y2", line=dict(color=REFERENCE_COLOR, dash="dash"),
                                connectgaps=False,
                                hovertemplate="#%{x} %{customdata}<br>E = %{y:.2f} tokens<extra></extra>"))
    mean = np.nanmean(acceptance) if np.isfinite(acceptance).any() else np.nan
    title = (f"Acceptance (q drafts for p): mean {mean:.3f} · E = {float(expected_accepted_tokens(mean, gamma)):.2f}"
             f" tokens/step at γ = {gamma}")
    figure.update_layout(figure_layout(
        title, "x", xaxis=dict(title="position", range=[-0.5, len(acceptance) - 0.5]),
        yaxis=dict(title="acceptance Σ min(p, q)", range=[0, 1]),
        yaxis2=dict(title="expected tokens per step", overlaying="y", side="right", range=[1, gamma + 1], dtick=1,
                    showgrid=False),  # E runs from 1 (a = 0) to gamma + 1 (a = 1): both axes span the same ends
        showlegend=True, legend=dict(orientation="h", x=0.99, xanchor="right", y=0.98, yanchor="top",
                                     bgcolor="rgba(255,255,255,0.8)"),
        margin=dict(l=60, r=60, t=40, b=40), hovermode="closest"))
    if selected is not None and 0 <= selected < len(acceptance):
        figure.update_layout(shapes=[selection_line(selected)])
    return figure


register_panel(Panel("compare.distributions", "Both next-token distributions", applies=is_comparison,
                     figure=pair_distributions))
register_panel(Panel("compare.branches", "Where the greedy choices differ", applies=is_comparison, figure=branch_view))
register_panel(Panel("compare.acceptance", "Speculative acceptance", applies=is_comparison, figure=acceptance_chart,
                     settings=("gamma",)))  # the dashboard's compare mode sets gamma
