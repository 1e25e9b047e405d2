"""Sampling views of a generation (pure figure builders, registered as panels):

- the next-token distribution at a step (its top 50 at temperature 1), with the kept set of
  the run's own sampler (as it drew, at its temperature) marked first above the bars, and
  those of the other truncation rules (at temperature 1) for comparison, each with its size
  and the entropy of its renormalized set;
- entropy before and after truncation, and kept-set size, along the generation.

The run's own kept set is the one its sampler recorded at each step (table columns `kept`,
`kept_entropy`); the compared ones are recomputed from the stored top 50 and the full
entropy with the same `kernels.kept_counts` the sampler uses; a set that reaches 50 is shown
as "50+". Figures use figures.py's light template; entropies are in nats.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch

from workbench.kernels import kept_counts

from .figures import LIGHT, selection_line, token_reprs
from .panels import Panel, register_panel

# Rules compared at each step (at temperature 1), with their colors; the run's own sampler is
# drawn first, in the chosen token's color.
RULES = (
    ("top-p 0.9", dict(top_p=0.9), "#1f77b4"),
    ("min-p 0.1", dict(min_p=0.1), "#2ca02c"),
    ("top-H 0.4", dict(top_h=0.4), "#d62728"),
    ("top-k 20", dict(top_k=20), "#9467bd"),
)
CHOSEN_COLOR = "#ff7f0e"
LABELED_BARS = 20  # bars whose token is written under the axis (all of them are in the hover)


def has_generation(run) -> bool:
    return "step_top_probs" in run.arrays


def _step_of(run, position):
    """Index into the generated steps for a table position (the first step when the
    position is not a generated token)."""
    generated = np.flatnonzero(run.table["generated"].to_numpy(bool))
    if position is None or position not in set(generated.tolist()):
        return 0, int(generated[0])
    return int(np.searchsorted(generated, position)), int(position)


def kept_sets(sorted_probs: np.ndarray, entropy: float) -> list[tuple[str, int, float, str]]:
    """(rule, kept size, entropy of the renormalized kept set, color) for each compared rule."""
    p = torch.as_tensor(sorted_probs, dtype=torch.float32)[None]
    out = []
    for label, params, color in RULES:
        size = int(kept_counts(p, torch.tensor([entropy]), **params)[0])
        q = sorted_probs[:size] / sorted_probs[:size].sum()
        out.append((label, size, float(-(q * np.log(np.clip(q, 1e-45, None))).sum()), color))
    return out


def shown_sets(run, row, sorted_probs: np.ndarray) -> list[tuple[str, int, float, str]]:
    """The kept sets the step's chart marks: the run's own sampler's first (the size and
    entropy it recorded, at its temperature), then the compared rules of other kinds."""
    chosen = run.meta.get("sampler", "the sampler")
    own = (f"{chosen} (this run)", int(row["kept"]), float(row["kept_entropy"]), CHOSEN_COLOR)
    others = [kept for kept in kept_sets(sorted_probs, float(row["entropy"]))
              if not chosen.startswith(kept[0].split()[0] + " ")]
    return [own, *others]


def step_distribution(run, position=None) -> go.Figure:
    step, position = _step_of(run, position)
    probs = run.arrays["step_top_probs"][step]  # [50], descending
    ids = run.arrays["step_top_ids"][step]
    row = run.table.loc[position]
    labels = [repr(t)[1:-1] or "·" for t in _pieces(run, ids)]
    chosen = ids == row["token_id"]
    fig = go.Figure(go.Bar(
        x=list(range(len(probs))), y=probs, marker_color=np.where(chosen, CHOSEN_COLOR, "#b0b7c3"),
        customdata=labels, hovertemplate="%{customdata}<br>p = %{y:.4f}<extra></extra>", showlegend=False,
    ), layout=LIGHT)
    top = float(probs.max())
    for level, (label, size, kept_entropy, color) in enumerate(shown_sets(run, row, probs)):
        y = top * (1.08 + 0.08 * level)
        shown = f"{size}+" if size >= len(probs) else str(size)
        fig.add_trace(go.Scatter(
            x=[-0.4, min(size, len(probs)) - 0.6], y=[y, y], mode="lines", line=dict(color=color, width=5),
            name=f"{label}: keeps {shown}, H = {max(kept_entropy, 0.0):.2f} nats", hoverinfo="name",
        ))
    labeled = min(LABELED_BARS, len(probs))
    fig.update_layout(
        title_text=f"Step at #{position} {row['token']!r}: drew rank {int(row['rank'])}, "
                   f"entropy {row['entropy']:.2f} nats",
        xaxis=dict(tickmode="array", tickvals=list(range(labeled)), ticktext=labels[:labeled], tickangle=-90,
                   title=f"the top {len(probs)} tokens (the first {labeled} named; every one in the hover)"),
        yaxis_title="probability (temperature 1)", legend=dict(orientation="h", y=-0.45), margin=dict(t=50, b=150),
        height=460,
    )
    return fig


def generation_steps(run, position=None) -> go.Figure:
    table = run.table[run.table["generated"]]
    x = table["position"].to_numpy()
    fig = go.Figure(layout=LIGHT)
    fig.add_trace(go.Scatter(x=x, y=table["entropy"].to_numpy(float), name="entropy before truncation",
                             mode="lines+markers", line_color="#1f77b4", customdata=token_reprs(table["token"]),
                             hovertemplate="%{customdata}<br>H = %{y:.3f} nats<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=table["kept_entropy"].to_numpy(float), name="entropy of the kept set",
                             mode="lines+markers", line_color="#2ca02c"))
    fig.add_trace(go.Bar(x=x, y=table["kept"].to_numpy(float), name="kept-set size", yaxis="y2",
                         marker_color="rgba(148, 103, 189, 0.35)"))
    if position is not None and position in set(x.tolist()):
        fig.add_shape(selection_line(position))
    fig.update_layout(
        title_text=f"Generation with {run.meta.get('sampler', 'a sampler')}: entropy and kept set per step",
        xaxis_title="position", yaxis=dict(title="entropy (nats)"),
        yaxis2=dict(title="kept tokens", overlaying="y", side="right", rangemode="tozero"),
        legend=dict(orientation="h", y=-0.25), height=380, margin=dict(t=50),
    )
    return fig


def _pieces(run, ids) -> list[str]:
    """Token strings for ids, as the run recorded them (no tokenizer needed)."""
    known = run.meta.get("step_top_tokens", {})
    return [known.get(str(int(i)), f"#{int(i)}") for i in ids]


register_panel(Panel("sampling.distribution", "Next-token distribution and kept sets", has_generation, step_distribution))
register_panel(Panel("sampling.steps", "Entropy and kept set along the generation", has_generation, generation_steps))
