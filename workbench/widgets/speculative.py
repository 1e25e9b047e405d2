"""The speculative trace of a generation made with a draft model (a pure figure builder,
registered as a panel): one row per step, each drafted token at the position it was drafted
for, marked accepted (kept in the text), rejected (the first one the target refused; the
residual draw took its place) or not tried (after a rejection), and the step's own draw after
them: from the residual norm(max(0, p - q)) or the bonus from p. The hover gives the draft's
and the target's probability of the token and the acceptance probability min(1, p/q). The
title states the measured tokens per step (the mean accepted length: accepted drafts + 1) beside
the expectation from the acceptance rates. The selected token is marked by a dotted line along
the positions and a box around the point of the step that made it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .figures import LIGHT, selection_box, selection_line
from .panels import Panel, register_panel

MARKS = {  # outcome -> (label, color, symbol)
    "accepted": ("accepted draft", "#2ca02c", "circle"),
    "rejected": ("rejected draft", "#d62728", "x"),
    "untried": ("not tried", "#c7c7c7", "circle-open"),
    "residual": ("drawn from the residual", "#ff7f0e", "diamond"),
    "bonus": ("bonus token from the target", "#1f77b4", "star"),
}


def has_trace(run) -> bool:
    return "spec_accepted" in run.arrays


def trace_points(run) -> dict[str, list[tuple[int, int, str]]]:
    """outcome -> (position, step, hover text) of each drafted token and each step's own draw.
    Step s starts at the position of its first generated token; draft i sits at start + i."""
    table = run.table
    step_of = table["spec_step"].to_numpy(dtype=float, na_value=np.nan)
    arrays, pieces = run.arrays, run.meta.get("spec_tokens", {})
    points = {outcome: [] for outcome in MARKS}
    for step, accepted in enumerate(arrays["spec_accepted"].tolist()):
        first = np.flatnonzero(step_of == step)
        if len(first) == 0:
            break  # generation ended (eos or a stop string) before this step's tokens
        start = int(table["position"].iloc[first[0]])
        drafted = [t for t in arrays["spec_drafted"][step].tolist() if t >= 0]
        for i, token in enumerate(drafted):
            outcome = "accepted" if i < accepted else "rejected" if i == accepted else "untried"
            hover = (f"step {step}, draft {i + 1}: {pieces.get(str(token), f'#{token}')!r}<br>"
                     f"q = {arrays['spec_draft_prob'][step, i]:.3f}, p = {arrays['spec_target_prob'][step, i]:.3f}, "
                     f"accept with {arrays['spec_accept_prob'][step, i]:.3f}<br>alpha = {arrays['spec_alpha'][step, i]:.3f}")
            points[outcome].append((start + i, step, hover))
        token = int(arrays["spec_token"][step])
        outcome = "residual" if arrays["spec_residual"][step] else "bonus"
        points[outcome].append((start + accepted, step, f"step {step}: {pieces.get(str(token), f'#{token}')!r} "
                                                        f"({MARKS[outcome][0]})"))
    return points


def step_of(run, position: int) -> int | None:
    """The speculative step that made the token at `position`; None for a prompt token."""
    step = run.table["spec_step"].iloc[position] if 0 <= position < len(run.table) else pd.NA
    return None if pd.isna(step) else int(step)


def tokens_per_step_said(info: dict) -> str:
    """A generation's measured tokens per step beside the expected ones, in words
    (`info`: its meta["speculative"], `decoding.speculative.summary`)."""
    alpha = "" if info["mean_alpha"] is None else f" {info['mean_alpha']:.2f}"
    return (f"{info['tokens_per_step']:.2f} tokens per step (expected {info['expected_tokens_given_drafts']:.2f} "
            f"given the drafts, {info['expected_tokens_analytic']:.2f} from the mean acceptance rate{alpha})")


def speculative_trace(run, position=None) -> go.Figure:
    fig = go.Figure(layout=LIGHT)
    for outcome, rows in trace_points(run).items():
        label, color, symbol = MARKS[outcome]
        if rows:
            x, y, hover = zip(*rows)
            fig.add_trace(go.Scatter(x=x, y=y, mode="markers", name=label, text=hover, hoverinfo="text",
                                     marker=dict(color=color, symbol=symbol, size=11, line=dict(width=1, color=color))))
    if position is not None:
        fig.add_shape(selection_line(position))
        step = step_of(run, position)
        if step is not None:
            fig.add_shape(selection_box(position - 0.4, position + 0.4, step - 0.4, step + 0.4, yref="y"))
    info = run.meta["speculative"]
    title = f"Speculative sampling, draft {info['draft']}, gamma {info['gamma']}: {tokens_per_step_said(info)}"
    fig.update_layout(title=dict(text=title, font=dict(size=13)), xaxis_title="position", height=380,
                      yaxis=dict(title="step", autorange="reversed", dtick=max(1, len(run.arrays["spec_accepted"]) // 10)),
                      legend=dict(orientation="h", y=-0.25), margin=dict(t=50),
                      meta={"workbench": {"position_axis": "x"}})
    return fig


register_panel(Panel("sampling.speculative", "Speculative trace: drafts accepted and rejected per step", has_trace,
                     speculative_trace))
