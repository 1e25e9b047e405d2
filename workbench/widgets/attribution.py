"""Attribution views (a Run from `model.attribute`), linked to the one selected token:

- `sources_figure`: the source strip of the selected target: every token before it colored by
  its attribution to that target (a one-row heatmap along the positions, a page of
  `PAGE_SOURCES` tokens around the target); click another continuation token and it recolors.
  For integrated gradients its title gives the target's completeness gap, flagged when unresolved.
- `matrix_figure`: the [target x source] matrix as a heatmap, paged for long inputs (at most
  `PAGE_TARGETS` targets by `PAGE_SOURCES` sources, the page holding the selected token),
  the selected target's row outlined; click a row to select that target.
- `words_figure`: the selected target's attribution summed into words (`spans.aggregate`).
- `source_strip`: the token strip (HTML, for notebooks) colored by one target's attributions.

Signed methods (input x gradient, integrated gradients, occlusion) use a diverging scale
centered on 0; saliency and ReAGent, which are never negative, a sequential one. The target
shown is the selected token when it is a target, else the last target.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from workbench.attribution.aggregate import attribution_name
from workbench.attribution.gradient import gap_said, incomplete
from workbench.attribution.spans import aggregate, groups, labels
from workbench.errors import WorkbenchError
from workbench.results.run import Run

from .figures import figure_layout, selection_box, selection_line, token_reprs
from .panels import Panel, register_panel
from .token_strip import TokenStrip, token_strip

PAGE_SOURCES = 128  # source columns per page of the views
PAGE_TARGETS = 64  # target rows per page of the matrix
UNSIGNED = ("saliency", "reagent")
DIVERGING = [[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#b2182b"]]
SEQUENTIAL = [[0.0, "#f7f7f7"], [1.0, "#b2182b"]]


def has_attribution(run: Run) -> bool:
    try:
        attribution_name(run)
    except WorkbenchError:
        return False
    return True


def shown_target(run: Run, selected: int | None) -> int:
    """The row of the target on show: the selected token's when it is a target, else the last."""
    targets = run.arrays["attr_targets"].tolist()
    return targets.index(selected) if selected in targets else len(targets) - 1


def _colors(run: Run, values: np.ndarray) -> dict:
    """Heatmap color keywords: zero-centered for signed methods."""
    finite = values[np.isfinite(values)]
    top = float(np.abs(finite).max()) if finite.size else 1.0
    if run.meta["attribution"]["method"] in UNSIGNED:
        return dict(colorscale=SEQUENTIAL, zmin=0.0, zmax=top or 1.0)
    return dict(colorscale=DIVERGING, zmin=-(top or 1.0), zmax=top or 1.0)


def _source_window(n_tokens: int, around: int) -> tuple[int, int]:
    """The page of PAGE_SOURCES positions holding `around`."""
    start = (around // PAGE_SOURCES) * PAGE_SOURCES
    return start, min(start + PAGE_SOURCES, n_tokens)


def _label(run: Run, position: int) -> str:
    return f"{position}:{run.table['token'][position]!r}"


def sources_figure(run: Run, selected: int | None = None) -> go.Figure:
    """The selected target's attribution over the tokens before it, one cell per token."""
    values = run.arrays[attribution_name(run)]
    row = shown_target(run, selected)
    target = int(run.arrays["attr_targets"][row])
    start, stop = _source_window(len(run.table), max(target - 1, 0))
    positions = np.arange(start, stop)
    shown = values[row, start:stop]
    tokens = token_reprs(run.table["token"].to_numpy()[start:stop])
    figure = go.Figure(go.Heatmap(
        x=positions, y=[0], z=[shown], text=[tokens], texttemplate="%{text}", textfont=dict(size=10),
        customdata=[tokens], hovertemplate="%{x}: %{customdata}<br>attribution %{z:.4g}<extra></extra>",
        showscale=True, colorbar=dict(thickness=10), **_colors(run, values[row])))
    note = _completeness(run, target) + ("" if selected == target else " (click a target token to show it)")
    figure.update_layout(**figure_layout(f"Sources of {_label(run, target)}{note}", position_axis="x", height=170,
                                         yaxis=dict(visible=False), xaxis=dict(title="source position")))
    if start <= target < stop:
        figure.add_shape(selection_box(target - 0.5, target + 0.5))
    return figure


def _completeness(run: Run, target: int) -> str:
    """Integrated gradients: the target's completeness gap against f(x) - f(b), flagged when
    it exceeds the tolerance (`gradient.incomplete`); other methods: nothing."""
    if "ig_gap" not in run.table:
        return ""
    gap, delta = float(run.table["ig_gap"][target]), float(run.table["ig_delta"][target])
    unresolved = " (unresolved: more steps or another baseline)" if incomplete(np.array(gap), np.array(delta)) else ""
    return f"; completeness gap {gap_said(gap)} of f(x) - f(b) = {gap_said(delta)}{unresolved}"


def matrix_figure(run: Run, selected: int | None = None) -> go.Figure:
    """The [target x source] matrix, one page of it, the shown target's row outlined."""
    values = run.arrays[attribution_name(run)]
    targets = run.arrays["attr_targets"]
    row = shown_target(run, selected)
    first = (row // PAGE_TARGETS) * PAGE_TARGETS
    rows = slice(first, min(first + PAGE_TARGETS, len(targets)))
    start, stop = _source_window(len(run.table), int(targets[row]) - 1 if selected is None or selected in targets
                                 else selected)
    tokens = token_reprs(run.table["token"].to_numpy())
    figure = go.Figure(go.Heatmap(
        x=np.arange(start, stop), y=targets[rows], z=values[rows, start:stop],
        customdata=np.array([[f"{tokens[t]} <- {tokens[s]}" for s in range(start, stop)] for t in targets[rows]]),
        hovertemplate="target %{y}, source %{x}<br>%{customdata}<br>%{z:.4g}<extra></extra>",
        colorbar=dict(thickness=10), **_colors(run, values)))
    pages = f" (targets {rows.start + 1}-{rows.stop} of {len(targets)}, sources {start}-{stop - 1})" \
        if len(targets) > PAGE_TARGETS or stop - start < len(run.table) else ""
    figure.update_layout(**figure_layout(f"Attribution: target x source{pages}", position_axis="y", height=320,
                                         xaxis=dict(title="source position"),
                                         yaxis=dict(title="target position", autorange="reversed")))
    target = int(targets[row])
    figure.add_shape(selection_box(start - 0.5, stop - 0.5, target - 0.5, target + 0.5, yref="y"))
    return figure


def words_figure(run: Run, selected: int | None = None) -> go.Figure:
    """The shown target's attribution summed into words, one bar per word before it."""
    values = run.arrays[attribution_name(run)]
    row = shown_target(run, selected)
    target = int(run.arrays["attr_targets"][row])
    starts, ends = run.table["start"].to_numpy(), run.table["end"].to_numpy()
    group_of = groups(run.text, starts, ends, "word")
    words = aggregate(values[row:row + 1], group_of)[0]
    names = labels(run.text, starts, ends, group_of)
    firsts = np.flatnonzero(np.r_[True, np.diff(group_of) != 0])  # each word's first token
    keep = ~np.isnan(words)
    figure = go.Figure(go.Bar(x=firsts[keep], y=words[keep], customdata=np.array(names, dtype=object)[keep],
                              hovertemplate="%{customdata!r}: %{y:.4g}<extra></extra>", marker_color="#8fa8c8"))
    figure.update_layout(**figure_layout(f"Words before {_label(run, target)}", position_axis="x",
                                         xaxis=dict(tickmode="array", tickvals=firsts[keep], ticktext=[repr(n) for n in
                                                                                    np.array(names)[keep]],
                                                    tickangle=-45)))
    figure.add_shape(selection_line(target))  # the target, after its words
    return figure


def source_strip(run: Run, target: int | None = None) -> TokenStrip:
    """The token strip colored by the attributions of the target at position `target` (default:
    the last target); tokens at or after it are grey (no value)."""
    values = run.arrays[attribution_name(run)]
    row = shown_target(run, target)
    position = int(run.arrays["attr_targets"][row])
    column = f"attribution to {position}"
    shown = Run(run.text, run.table.assign(**{column: values[row]}), {}, run.meta)
    top = float(np.nanmax(np.abs(values[row]))) or 1.0
    signed = run.meta["attribution"]["method"] not in UNSIGNED
    scale = ["#2166ac", "#f7f7f7", "#b2182b"] if signed else ["#f7f7f7", "#b2182b"]
    return token_strip(shown, column, colorscale=scale, vmin=-top if signed else 0.0, vmax=top)


register_panel(Panel("attribution.sources", "Sources of the selected token", applies=has_attribution,
                     figure=sources_figure))
register_panel(Panel("attribution.matrix", "Attribution matrix", applies=has_attribution, figure=matrix_figure))
register_panel(Panel("attribution.words", "Attribution by word", applies=has_attribution, figure=words_figure))
