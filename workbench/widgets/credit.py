"""Views of a `Group` (RL rollouts): pure builders, Group -> plotly Figure or offline HTML.

- `group_strips`: the responses stacked as token strips, each token colored by a signed
  signal (THR by default) on a diverging scale centred on zero, with the response's reward
  and advantage beside it; self-contained HTML (what `group.show()` returns).
- `token_heatmap`: responses as rows, positions as columns, each cell a token colored by a
  signal (THR: diverging around zero), hover: token, advantage, signal, entropy; critical
  tokens outlined in black (the legend says so); a cell shows its token only when wide enough.

Scales: a signed signal (THR) is colored per response, over ± that response's
`diverging_limit` (`response_limits`): the correct responses' THR is often a hundred times the
wrong ones', which a scale shared by the group would leave white; a response's strip and its
heatmap row use the same scale, which the heatmap's row labels give. A sequential signal
(D3S) is colored from zero to the group's largest value, in every view (`color_range`).
- `success_curve`: the success rate c_t / n after each prefix of one response (the rollout
  definition of critical tokens), the critical token marked, the group's success rate as the
  baseline.
- `prefix_tree_figure`: the group's prefix tree as an icicle: shared beginnings on the
  left, each branch's width the number of responses through it, colored by the success
  rate below it; the branch holding the selected token outlined.

For the dashboard: they are registered as panels of a group (`widgets.panels`, `of="group"`)
with `applies(group)` (whether the group has the columns a view needs);
`panels_for(group, of="group")` gives the applicable ones, and every
`panel.render(group, selected, response=...)` takes the selected token as (response, position)
or None and the response on show (the success curve follows it; `first_searched` is the one
shown first). `response_run(group, i)` is one response as a `Run` (the token strip and the
per-position panels show it), colored on its own scale (`strip_scale`). Figures say how a click maps to a token in
`layout.meta["workbench"]` (read by `clicked_token`): the heatmap has {"position_axis": "x",
"response_axis": "y"} (a clicked cell's x and y are the token's position and response), the
success curve {"position_axis": "x", "response": i}, the prefix tree {"points": [[response,
position] or None per sector]} (a sector stands for its last token in its first response).
The selected token is marked by a shape named "selection" (see figures.py; the prefix tree
outlines its sector instead), never in `meta`, which stays the same while the selection moves.
"""
from __future__ import annotations

import html
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.errors import WorkbenchError
from workbench.results.group import Group
from workbench.results.run import Run

from .figures import LINE_COLOR, SELECTED_COLOR, figure_layout, selection_box, selection_line, token_reprs
from .panels import Panel, clicked_index, clicked_position, register_panel
from .token_strip import save_page, token_strip

# Diverging red (negative) - white (zero) - blue (positive), ColorBrewer RdBu.
DIVERGING = ("#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7", "#d1e5f0", "#92c5de", "#4393c3", "#2166ac")
PLOTLY_DIVERGING = [[i / (len(DIVERGING) - 1), c] for i, c in enumerate(DIVERGING)]
SUCCESS_SCALE = [[0.0, "#d73027"], [0.5, "#fee08b"], [1.0, "#1a9850"]]
DIVERGING_QUANTILE = 0.95  # of the non-zero |values|: where a diverging scale reaches its end colors
MARKER_COLOR = "#111111"
CELL_TEXT_PX = 330  # the heatmap's plot width for its cells, at the dashboard's view width (px)
CHAR_PX = 6  # width of a character of the cells' 10 px font
SIGNAL_NAMES = {"thr": "Token Hidden Reward (Deng et al. 2025): a token's pull toward the correct responses",
                "d3s": "D3S priority: |advantage| x entropy of the token"}
# Figures are built in one go (traces and a figures.figure_layout dict, the light template):
# the dashboard rebuilds them on every click, and plotly's add_* helpers and named templates
# cost tens of milliseconds each.


def _signal_values(group: Group, signal: str) -> np.ndarray:
    if signal not in group.table:
        numeric = [c for c in group.table.columns if pd.api.types.is_float_dtype(group.table[c])]
        raise WorkbenchError(f"the group has no '{signal}' column; its signal columns are: {', '.join(numeric)}")
    return group.table[signal].to_numpy(dtype="float64", na_value=np.nan)


def _magnitude_quantile(values: np.ndarray, quantile: float) -> float:
    """The `quantile` of the finite non-zero |values|, taken as an observed one (numpy's
    "lower" method); 1 when there are none."""
    magnitudes = np.abs(values[np.isfinite(values)])
    magnitudes = magnitudes[magnitudes > 0]
    return float(np.quantile(magnitudes, quantile, method="lower")) if len(magnitudes) else 1.0


def diverging_limit(values: np.ndarray) -> float:
    """Half-width L of a signed signal's diverging scale, which maps [-L, L] to the colors
    with zero at the neutral midpoint: the 95th percentile (`DIVERGING_QUANTILE`) of the
    finite non-zero |values|, as an observed value (the one at rank floor(0.95 (n - 1)) of
    the n sorted ascending, numpy's "lower" method). One token with a huge |THR| would wash out every other token
    on a scale as wide as the largest |value|; here it is clipped to the end color (its
    exact value is in the hover), even in a small group (a single outlier never sets L).
    1 when every value is zero or missing."""
    return _magnitude_quantile(values, DIVERGING_QUANTILE)


def response_label(group: Group, i: int) -> str:
    """Response `i` in a few characters: its number, reward and advantage."""
    return f"#{i}  r={group.rewards[i]:g}  A={group.advantages[i]:+.2f}"


def _critical_row(rows: pd.DataFrame):
    """The critical token's row among one response's `rows`, or None."""
    if "critical" not in rows:
        return None
    marked = rows[rows["critical"].fillna(False).astype(bool)]
    return marked.iloc[0] if len(marked) else None


def response_header(group: Group, i: int) -> str:
    """One line about response `i`: reward, advantage and, when found, its critical token."""
    header = response_label(group, i)
    critical = _critical_row(group.rows(i))
    if critical is not None:
        header += f" · critical token #{int(critical['position'])} {critical['token']!r}"
    return header


def color_range(values: np.ndarray) -> tuple[float, float]:
    """The (low, high) values a group signal's colors run between, in every view of the
    group (strips and heatmap), so that a token has the same color in each: when the signal
    takes negative values (THR), ±`diverging_limit` on a diverging scale with zero at its
    neutral midpoint (values beyond take the end colors); otherwise 0 to the largest value
    on a sequential scale (D3S), 0 to 1 when every value is zero or missing. A diverging
    scale is the one with low < 0."""
    finite = values[np.isfinite(values)]
    if len(finite) and finite.min() < 0:
        limit = diverging_limit(values)
        return -limit, limit
    return 0.0, _magnitude_quantile(values, 1.0)  # the largest


def response_limits(group: Group, signal: str) -> np.ndarray:
    """Each response's `diverging_limit` of `signal` [responses]: the half-width of its own
    diverging scale."""
    values = _signal_values(group, signal)
    responses = group.table["response"].to_numpy()
    return np.array([diverging_limit(values[responses == i]) for i in range(len(group))])


def strip_scale(group: Group, signal: str, response: int | None = None) -> dict:
    """Token-strip colors (`token_strip` keywords) of `response` (None: every response): for
    a signal with negative values, the diverging scale over ± the response's own limit (the
    group's for None); the sequential one over the group's `color_range` otherwise."""
    low, high = color_range(_signal_values(group, signal))
    if low < 0 and response is not None:
        high = float(response_limits(group, signal)[response])
        low = -high
    return dict(colorscale=DIVERGING if low < 0 else "viridis", vmin=low, vmax=high)


def first_searched(group: Group) -> int:
    """The first response whose prefixes were searched for a critical token (it has
    success rates), else 0: the response the group's views show first."""
    table = group.table
    searched = table.loc[table["success_rate"].notna(), "response"] if "success_rate" in table else []
    return int(min(searched)) if len(searched) else 0


def response_run(group: Group, i: int) -> Run:
    """Response `i` as a `Run`: its text, and its table rows with positions within the
    response and every per-token column except those constant over a response (response,
    reward, advantage, which go to `meta`)."""
    rows = group.rows(i)
    table = rows.drop(columns=[c for c in ("response", "reward", "advantage") if c in rows]).reset_index(drop=True)
    meta = {"model": group.meta.get("model"), "response": i, "reward": float(group.rewards[i]),
            "advantage": float(group.advantages[i])}
    if "estimators" in group.meta:  # this response's sequence scores (workbench.estimators.annotate_group)
        meta["estimators"] = group.meta["estimators"]["responses"][i]
    return Run(group.responses[i], table, {}, meta)


# ----- stacked token strips (offline HTML) -------------------------------------------------
@dataclass(frozen=True)
class GroupStrips:
    """Stacked token strips of a group: `html` is a fragment for notebooks; `save` writes a
    standalone page (no external assets)."""

    html: str
    signal: str
    n_responses: int

    def _repr_html_(self) -> str:
        return self.html

    def save(self, path) -> Path:
        return save_page(path, self.signal, self.html)

    def __repr__(self) -> str:
        return f"GroupStrips(signal={self.signal!r}, responses={self.n_responses})"


def group_strips(group: Group, signal: str = "thr") -> GroupStrips:
    """Every response as a token strip colored by `signal`: a diverging scale symmetric
    around zero for signed signals, each response's own (see `strip_scale`), the sequential
    one otherwise; hover a
    token for its value. Each strip is headed by the response's reward, advantage and
    critical token."""
    parts = [f'<div class="tw-group" style="font:13px system-ui,sans-serif">'
             f"<div><b>{html.escape(str(group.meta.get('model', '')))}</b> · {len(group)} responses · "
             f"mean reward {group.rewards.mean():.3f} · color = {html.escape(signal)}</div>"]
    for i in range(len(group)):
        run = response_run(group, i)
        parts.append(f'<div style="margin-top:10px;color:#444">{html.escape(response_header(group, i))}</div>')
        # (without its metadata: the model's name heads the group, not every strip)
        parts.append(token_strip(Run(run.text, run.table), signal, **strip_scale(group, signal, i)).html)
    parts.append("</div>")
    return GroupStrips("\n".join(parts), signal, len(group))


# ----- heatmap of responses x positions ----------------------------------------------------------
def token_heatmap(group: Group, selected: tuple[int, int] | None = None, signal: str = "thr") -> go.Figure:
    """Responses stacked (rows), tokens along the positions (columns), each cell colored by
    `signal` as in the strips: on a diverging scale centred on zero when it takes negative
    values (THR), each row over ± its response's limit (`response_limits`, in the row's label;
    cells beyond take the end colors, the hover gives their value); on a sequential one from
    zero to the group's largest value otherwise (D3S). Critical tokens outlined in black, with
    a legend; a cell shows its token (cut to fit) only when at least two characters fit."""
    values = _signal_values(group, signal)
    low, high = color_range(values)
    z = group.grid(signal, dtype="float64")
    tokens = group.grid("token", fill="")
    advantage = np.repeat(group.advantages[:, None], z.shape[1], axis=1)
    entropy = group.grid("entropy", dtype="float64") if "entropy" in group.table else np.full(z.shape, np.nan)
    labels = [response_label(group, i) for i in range(len(group))]
    colored, scale = z, dict(colorscale="Viridis", zmin=low, zmax=high, colorbar=dict(title=signal))
    if low < 0:
        limits = response_limits(group, signal)
        colored = np.clip(z / limits[:, None], -1, 1)
        labels = [f"{label} ±{limit:.3g}" for label, limit in zip(labels, limits)]
        scale = dict(colorscale=PLOTLY_DIVERGING, zmid=0, zmin=-1, zmax=1, colorbar=dict(
            title=f"{signal} / row's ±", tickvals=[-1, 0, 1], ticktext=["−limit", "0", "+limit"]))
    shown = np.vectorize(lambda t: t.replace("\n", "↵"))(tokens) if tokens.size else tokens
    traces = [go.Heatmap(
        z=colored, x=list(range(z.shape[1])), y=list(range(len(group))), **scale,
        text=_cell_text(shown), texttemplate="%{text}", textfont=dict(size=10),
        customdata=np.dstack([a.astype(object) for a in (advantage, entropy, z, shown)]) if z.size else None,
        hovertemplate=("response %{y}<br>position %{x}: %{customdata[3]}<br>advantage %{customdata[0]:+.3f}<br>"
                       f"{signal} %{{customdata[2]:+.4g}}<br>entropy %{{customdata[1]:.3f}}<extra></extra>"),
        xgap=1, ygap=2,
    )]
    if "critical" in group.table:
        critical = group.table[group.table["critical"].fillna(False).astype(bool)]
        traces.append(go.Scatter(
            x=critical["position"], y=critical["response"], mode="markers", showlegend=True,
            name="critical token: the first prefix with no correct completion",
            marker=dict(symbol="square-open", size=22, color=MARKER_COLOR, line=dict(width=2)),
            hovertemplate="critical token<extra></extra>"))
    shapes = []
    if selected is not None:
        response, position = selected
        shapes.append(selection_box(position - 0.5, position + 0.5, response - 0.5, response + 0.5, yref="y", width=3))
    finite = values[np.isfinite(values)]
    zero = len(finite) > 0 and not finite.any()
    title = f"{signal} per token" + (" (all zero)" if zero else "")
    return go.Figure(traces, layout=figure_layout(
        f"{title}<br><sup>{SIGNAL_NAMES.get(signal, signal)}</sup>", height=max(240, 90 + 36 * len(group)),
        shapes=shapes, xaxis=dict(title="position in the response"), showlegend=True,
        legend=dict(orientation="h", x=0, y=-0.12, yanchor="top", font=dict(size=11)),
        yaxis=dict(autorange="reversed", tickvals=list(range(len(group))), ticktext=labels),
        margin=dict(l=150, r=20, t=56, b=70), meta={"workbench": {"position_axis": "x", "response_axis": "y"}}))


def _cell_text(tokens: np.ndarray) -> np.ndarray:
    """What each heatmap cell writes: its token cut to the characters that fit the cells'
    width (an ellipsis ends a cut one), nothing when fewer than two fit (the hover has it)."""
    fit = int(CELL_TEXT_PX / max(tokens.shape[1] if tokens.ndim == 2 else 1, 1) / CHAR_PX)
    if fit < 2:
        return np.full(tokens.shape, "", dtype=object)
    return np.vectorize(lambda t: t if len(t) <= fit else t[:fit - 1] + "…", otypes=[object])(tokens)


def success_curve(group: Group, response: int | None = None, selected: tuple[int, int] | None = None) -> go.Figure:
    """c_t / n after each evaluated prefix of `response` (default: the selected token's
    response, else the first with a success rate), its critical token marked, the group's
    own success rate dashed; the selected token, when in this response, marked."""
    if "success_rate" not in group.table:
        raise WorkbenchError("the group has no success_rate column; run credit.rollout_critical_tokens and group.add "
                             "its .columns()")
    if response is None:
        response = selected[0] if selected is not None else first_searched(group)
    rows = group.rows(response)
    points = rows[rows["success_rate"].notna()]
    baseline = float(group.correct().mean())
    trace = go.Scatter(
        x=points["position"], y=points["success_rate"], mode="lines+markers", line=dict(color=LINE_COLOR),
        customdata=token_reprs(points["token"]), name="success rate",
        hovertemplate="after #%{x} %{customdata}: %{y:.0%} of completions correct<extra></extra>")
    shapes = [dict(type="line", xref="paper", yref="y", x0=0, x1=1, y0=baseline, y1=baseline,
                   line=dict(dash="dot", color="#aaa"))]
    annotations = [dict(text=f"the group's own success rate: {baseline:.0%}", xref="paper", yref="y", x=1,
                        y=baseline, showarrow=False, xanchor="right", yanchor="bottom", font=dict(color="#888"))]
    critical = _critical_row(rows)
    if critical is not None:
        x = int(critical["position"])
        shapes.append(dict(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                           line=dict(color=MARKER_COLOR, width=2)))
        annotations.append(dict(text=f"critical: {critical['token']!r}", xref="x", yref="paper", x=x, y=1,
                                showarrow=False, xanchor="left", yanchor="top"))
    if not len(points):
        why = "a correct response has no critical token" if group.correct()[response] else "not searched yet"
        annotations.append(dict(text=f"no prefix of this response evaluated ({why})", showarrow=False,
                                xref="paper", yref="paper", x=0.5, y=0.5))
    elif critical is None:
        annotations.append(dict(text=_no_critical_reason(points, rows), showarrow=False, xref="paper", yref="paper",
                                x=0.5, y=0.5))
    if selected is not None and selected[0] == response:
        shapes.append(selection_line(selected[1]))
    ticks = rows["position"].tolist()
    return go.Figure(trace, layout=figure_layout(
        f"response #{response}: success rate after each prefix", height=300, shapes=shapes, annotations=annotations,
        yaxis=dict(title="correct completions", range=[-0.05, 1.05], tickformat=".0%"),
        xaxis=dict(title="prefix ends at token", range=[-0.5, len(ticks) - 0.5],
                   tickvals=ticks if len(ticks) <= 40 else None,
                   ticktext=[t.replace("\n", "↵") for t in rows["token"]] if len(ticks) <= 40 else None),
        margin=dict(l=60, r=20, t=40, b=60), meta={"workbench": {"position_axis": "x", "response": response}}))


def _no_critical_reason(points: pd.DataFrame, rows: pd.DataFrame) -> str:
    """Why a searched response has no critical token: every evaluated prefix still has
    correct completions (the search starts with the whole response and stops there when
    the completed response succeeds)."""
    if len(points) == 1 and points["position"].iloc[0] == rows["position"].max():
        return (f"no critical token: completed from its last token, the response is still correct "
                f"{points['success_rate'].iloc[0]:.0%} of the time, so the search stopped there")
    return "no critical token: every evaluated prefix still has correct completions"


# ----- prefix tree -----------------------------------------------------------------------------------
def prefix_tree_figure(group: Group, selected: tuple[int, int] | None = None, *, threshold: float = 0.0,
                       max_label: int = 24) -> go.Figure:
    """The group's prefix tree as an icicle (left to right): the prompt, then the shared
    beginnings, each branch as wide as the responses through it, colored by the share of
    them that are correct; the sector holding the selected token outlined."""
    nodes = _tree_nodes(group, threshold)
    correct = group.correct(threshold)

    def label(text: str) -> str:
        text = text.replace("\n", "↵")
        return text if len(text) <= max_label else text[:max_label - 1] + "…"

    ends = nodes["start"] + nodes["token_ids"].map(len) - 1  # position of each sector's last token
    points = [None] + [[int(r[0]), int(e)] for r, e in zip(nodes["responses"], ends)]
    outline = [0.5] * len(points)
    if selected is not None:
        response, position = selected
        holding = [k + 1 for k, (r, start, end) in enumerate(zip(nodes["responses"], nodes["start"], ends))
                   if response in r and start <= position <= end]
        for k in holding:
            outline[k] = 3.0
    ids = ["prompt"] + [f"n{n}" for n in nodes["node"]]
    parents = [""] + ["prompt" if p < 0 else f"n{p}" for p in nodes["parent"]]
    return go.Figure(go.Icicle(
        ids=ids, parents=parents, labels=["prompt"] + [label(t) for t in nodes["text"]],
        values=[len(group)] + nodes["count"].tolist(), branchvalues="total",
        marker=dict(colors=[float(correct.mean())] + nodes["success_rate"].tolist(), colorscale=SUCCESS_SCALE,
                    cmin=0, cmax=1, colorbar=dict(title="success", tickformat=".0%"),
                    line=dict(width=outline, color=[SELECTED_COLOR if w > 1 else "white" for w in outline])),
        customdata=[[len(group), int(correct.sum()), ""]] + [
            [c, k, ", ".join(map(str, r))] for c, k, r in zip(nodes["count"], nodes["correct"], nodes["responses"])],
        hovertemplate="%{label}<br>%{customdata[0]} responses, %{customdata[1]} correct"
                      "<br>responses %{customdata[2]}<extra></extra>",
        tiling=dict(orientation="h"), textfont=dict(family="ui-monospace, monospace"),
    ), layout=figure_layout("prefix tree: shared beginnings and where responses branch",
                            height=max(300, 40 * len(group)), margin=dict(l=10, r=10, t=40, b=10),
                            meta={"workbench": {"points": points}}))


# Group -> {threshold: its prefix tree's nodes}. The dashboard redraws the prefix tree on every
# click; the tree (a Python pass over every token) depends only on the responses' token ids and
# rewards, which a group keeps from its making (`Group.add` adds columns).
_TREE_NODES: "weakref.WeakKeyDictionary[Group, dict[float, pd.DataFrame]]" = weakref.WeakKeyDictionary()


def _tree_nodes(group: Group, threshold: float) -> pd.DataFrame:
    """`prefix_tree(group, threshold=threshold).nodes`, computed once per group and threshold."""
    from workbench.credit import prefix_tree

    trees = _TREE_NODES.setdefault(group, {})
    if threshold not in trees:
        trees[threshold] = prefix_tree(group, threshold=threshold).nodes
    return trees[threshold]


# ----- for the dashboard -------------------------------------------------------------------------
GROUP_SECTION = "credit: the group"
for _panel in (
    Panel("credit.thr", "Token Hidden Reward per token", lambda g: "thr" in g.table,
          lambda g, selected: token_heatmap(g, selected), group=GROUP_SECTION, of="group"),
    Panel("credit.d3s", "D3S priority |A| x H per token", lambda g: "d3s" in g.table,
          lambda g, selected: token_heatmap(g, selected, signal="d3s"), group=GROUP_SECTION, of="group"),
    Panel("credit.success", "Success rate along a response", lambda g: "success_rate" in g.table,
          lambda g, selected, response: success_curve(g, response, selected), group=GROUP_SECTION,
          settings=("response",), of="group"),
    Panel("credit.prefix_tree", "Prefix tree", lambda g: len(g) > 0,
          lambda g, selected: prefix_tree_figure(g, selected), group=GROUP_SECTION, of="group"),
):
    register_panel(_panel)


def clicked_token(layout_meta, point: dict) -> tuple[int, int] | None:
    """The (response, position) a clicked plotly `point` of a group view stands for (see the
    module docstring), or None (a click on the prompt, or on a figure that maps no token)."""
    if not isinstance(layout_meta, dict) or not isinstance(layout_meta.get("workbench"), dict):
        return None
    mapping = layout_meta["workbench"]
    if "points" in mapping:
        number = point.get("pointNumber")
        valid = isinstance(number, int) and 0 <= number < len(mapping["points"])
        return tuple(mapping["points"][number]) if valid and mapping["points"][number] is not None else None
    position = clicked_position(layout_meta, point)
    response = clicked_index(point.get(mapping["response_axis"]) if "response_axis" in mapping
                             else mapping.get("response"))
    return None if position is None or response is None else (response, position)


__all__ = ["GROUP_SECTION", "GroupStrips", "clicked_token", "color_range", "diverging_limit",
           "first_searched", "group_strips", "prefix_tree_figure", "response_header", "response_label", "response_run",
           "strip_scale", "success_curve", "token_heatmap"]
