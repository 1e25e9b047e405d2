"""The core views of a run as pure figure builders, (run, selected position) -> plotly Figure,
registered as panels (see panels.py) so that the explorer and the dashboard show them the
way they show every signal family's panels.

- `signal_chart`: one signal column along the positions, the selected token marked.
  Long runs are downsampled by min/max decimation: each bin of positions keeps its lowest
  and its highest point, so spikes (a surprising token) survive at any length.
- `next_token_chart`: the model's top-k candidates at the selected position, the token
  that actually came highlighted (added below the top-k, with its rank, when it is not
  among them); with no selection, the prediction after the last token.
- `lens_heatmap`: a logit-lens statistic [layer, position], colored in the token strip's
  direction over a range set by layers 1..L (layer 0, the embeddings, drawn clipped); long
  runs are averaged over bins of positions.

Every figure tells which axis holds token positions (`layout.meta["workbench"]`), so that
clicking a point selects that token in all views, and marks the selected token with a
shape named "selection" (the next-token chart names it in its title). The selection lives
in the shapes, not in `meta`: plotly.js redraws a whole plot when its `meta` changes, but
only the shapes layer when a shape moves.

Exports: `figure_html` (standalone, plotly.js inlined: works with no network) and
`figure_png` (through kaleido and a local Chromium).
"""
from __future__ import annotations

import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.errors import WorkbenchError
from workbench.results.run import Run

from .panels import Panel, register_panel
from .token_strip import signal_columns

MAX_POINTS = 1000  # points per signal chart; longer runs are decimated
MAX_COLUMNS = 500  # heatmap columns; longer runs are averaged over bins of positions
SELECTED_COLOR = "#e4572e"  # the token strip's selection outline
SELECTION = "selection"  # name of the shape that marks the selected token
BAR_COLOR, LINE_COLOR = "#8fa8c8", "#31688e"
HEIGHT = 280
FONT = dict(family="system-ui, sans-serif", size=12)
# A light template of our own: plotly's named templates cost ~15 ms to apply per figure,
# too much for a view redrawn on every click.
TEMPLATE = dict(layout=dict(
    paper_bgcolor="white", plot_bgcolor="white", colorway=[LINE_COLOR],
    xaxis=dict(gridcolor="#ebebeb", linecolor="#bbb", zeroline=False, ticks=""),
    yaxis=dict(gridcolor="#ebebeb", linecolor="#bbb", zeroline=False, ticks=""),
))
TITLE = dict(font=dict(size=13), x=0.01, xanchor="left")
# Layout keys that give a figure built elsewhere this look: pass them when the figure is built
# (update_layout would merge TEMPLATE into plotly's default template), then set `title_text`.
LIGHT = dict(font=FONT, template=TEMPLATE, title=TITLE)
CHROMIUM = "/usr/bin/chromium"


# ----- signal along the positions ---------------------------------------------------------
def signal_chart(run: Run, selected: int | None = None, signal: str = "surprisal",
                 max_points: int = MAX_POINTS) -> go.Figure:
    """`signal` (a table column) per position, `selected` marked."""
    table = run.table
    if signal not in signal_columns(table):
        raise WorkbenchError(f"unknown signal '{signal}'; this run's signal columns are: "
                             f"{', '.join(signal_columns(table)) or '(none)'}")
    values = table[signal].to_numpy(dtype="float64", na_value=np.nan)  # [T]
    keep = decimate(values, max_points)
    tokens = token_reprs(table["token"].to_numpy()[keep])
    n = len(values)
    from workbench.signals import COLUMNS  # (imported here: the signals import torch)

    column = COLUMNS.get(signal)
    unit = f" {column.unit}" if column is not None and column.unit else ""
    yaxis = dict(title=f"{signal} ({column.unit})" if unit else signal)
    plotted = values
    if signal == "rank":  # a log scale, as the strip and the logit lens: log10(1 + rank), ticks named by rank
        plotted = np.log10(1 + values)
        yaxis = dict(title="rank (log scale; 0 = the most likely)", **_rank_ticks(plotted, None))
    trace = go.Scatter(
        x=keep, y=plotted[keep], text=values[keep], customdata=tokens, mode="lines+markers" if n <= 200 else "lines",
        line=dict(color=LINE_COLOR, width=1.5), marker=dict(size=5), connectgaps=False,
        hovertemplate="#%{x} %{customdata}<br>" + signal + " = %{text:.4g}" + unit + "<extra></extra>",
    )
    title = f"{signal} per token" + (f" ({n} tokens: min/max per bin)" if len(keep) < n else "")  # clears the toolbar
    layout = figure_layout(title, "x", xaxis=dict(title="position", range=[-0.5, n - 0.5]), yaxis=yaxis,
                           hovermode="closest")
    if selected is not None and 0 <= selected < n:
        value = values[selected]
        text = f"#{selected} {table['token'].iloc[selected]!r}" + ("" if math.isnan(value) else f"  {value:.4g}")
        label = dict(text=text, textposition="end", textangle=0, yanchor="bottom",
                     font=dict(color=SELECTED_COLOR, size=12))
        layout["shapes"] = [selection_line(selected, label=label)]
    return go.Figure(trace, layout=layout)


def token_reprs(tokens) -> np.ndarray:
    """Each token's repr (quotes and escapes show spaces and newlines), for hover labels."""
    return np.asarray([repr(t) for t in tokens], dtype=object)


def decimate(values: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Positions to draw: all of them when there are at most `max_points`; otherwise, for
    each of max_points // 2 bins of consecutive positions, the lowest and the highest
    (NaN ignored; an all-NaN bin keeps its first position). Sorted, without repeats."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    width = -(-n // max(max_points // 2, 1))
    padded = np.full(-(-n // width) * width, np.nan)
    padded[:n] = values
    bins = padded.reshape(-1, width)  # [bins, width]
    missing = np.isnan(bins)
    lows = np.where(missing, np.inf, bins).argmin(axis=1)
    highs = np.where(missing, -np.inf, bins).argmax(axis=1)
    offsets = np.arange(len(bins)) * width
    keep = np.unique(np.concatenate([offsets + lows, offsets + highs]))
    return keep[keep < n]


# ----- next-token distribution ------------------------------------------------------------
def next_token_chart(run: Run, selected: int | None = None) -> go.Figure:
    """Top-k candidates of the prediction of token `selected` (made at the position before
    it), the actual token in the selection color; with no selection, the prediction after
    the last token (`run.meta["next_token"]`). With no candidates to show, a note says why
    (no axes)."""
    table = run.table
    actual = rank = None
    if selected is None:
        prediction = run.meta.get("next_token")
        tokens, probs = (prediction["topk_tokens"], prediction["topk_probs"]) if prediction else ([], [])
        title = "Prediction after the last token"
    else:
        row = table.iloc[selected]
        tokens, probs = (row["topk_tokens"], row["topk_probs"]) if row["topk_tokens"] is not None else ([], [])
        title = f"Prediction of token #{selected} {row['token']!r}"
        actual = int(row["token_id"])
        rank = None if "rank" not in table or pd.isna(row.get("rank")) else int(row["rank"])
    labels = [f"{t!r} · rank {i}" for i, t in enumerate(tokens)]  # rank as everywhere: 0 = the most likely
    colors = [BAR_COLOR] * len(tokens)
    ids = [] if selected is None else list(table.iloc[selected]["topk_ids"] or [])
    if actual is not None and actual in ids:
        colors[ids.index(actual)] = SELECTED_COLOR
    elif actual is not None and tokens and "surprisal" in table and not pd.isna(table["surprisal"].iloc[selected]):
        labels.append(f"{table['token'].iloc[selected]!r}{'' if rank is None else f' · rank {rank}'} (actual)")
        probs = list(probs) + [math.exp(-float(table["surprisal"].iloc[selected]))]
        colors.append(SELECTED_COLOR)
    trace = go.Bar(
        x=np.asarray(probs, dtype="float64"), y=labels, orientation="h", marker_color=colors,
        text=[f"{p:.1%}" for p in probs], textposition="auto", hovertemplate="%{y}: %{x:.2%}<extra></extra>",
    )
    layout = figure_layout(title, xaxis=dict(title="probability", tickformat=".2~%", rangemode="tozero"),
                           yaxis=dict(autorange="reversed", automargin=True))
    if not tokens:
        if selected == 0:
            reason = "the first token has no prediction: nothing comes before it"
        elif selected is None and run.meta.get("stop_reason") == "eos":
            reason = "generation ended with the end-of-sequence token: nothing is predicted after it"
        else:
            reason = "no top-k candidates in this run (analyze with the 'uncertainty' signal)"
        layout["annotations"] = [dict(text=reason, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)]
        layout["xaxis"]["visible"] = layout["yaxis"]["visible"] = False
    return go.Figure(trace, layout=layout)


# ----- logit lens ---------------------------------------------------------------------------
RANK_TICKS = (0, 1, 10, 100, 1_000, 10_000, 100_000)
LENS_LABELS = {"rank": "rank of the actual token (log scale)", "surprisal": "surprisal (nats)",
               "entropy": "entropy (nats)", "top1_prob": "top-1 probability"}
LENS_PERCENTILES = (2, 98)  # of layers 1..L: the ends of the logit lens's color range


def lens_color_range(values: np.ndarray) -> tuple[float, float] | None:
    """values [L+1, columns] -> the (low, high) of the logit lens's colors: the
    `LENS_PERCENTILES` of the finite values of layers 1..L (all layers when there is only
    one). Layer 0, the embeddings read through the lm_head, is often near-uniform or extreme
    and would flatten the colors of every other layer; it is drawn clipped to this range.
    None (colors over all the values) when those layers hold no finite value, or one value only."""
    layers = values[1:] if len(values) > 1 else values
    finite = layers[np.isfinite(layers)]
    if not len(finite):
        return None
    low, high = np.percentile(finite, LENS_PERCENTILES)
    return (float(low), float(high)) if high > low else None


def lens_heatmap(run: Run, selected: int | None = None, signal: str = "rank",
                 max_columns: int = MAX_COLUMNS) -> go.Figure:
    """A logit-lens statistic [layer, position]: `signal` when the lens has it (rank,
    surprisal, entropy), rank otherwise. Rank is drawn as log10(1 + rank). Colors as in the
    token strip (low values dark, high values bright), over `lens_color_range` (layers
    1..L; values beyond, layer 0's among them, take the end colors; the hover gives them)."""
    statistic = signal if f"lens_{signal}" in run.arrays else "rank"
    if f"lens_{statistic}" not in run.arrays:
        raise WorkbenchError("this run has no logit lens; analyze with signals=['logit_lens']")
    values = run.arrays[f"lens_{statistic}"].astype("float64")  # [L+1, T]
    if statistic == "rank":
        values = np.where(values < 0, np.nan, np.log10(1 + np.maximum(values, 0)))
    n_layers, n = values.shape
    width = max(1, -(-n // max_columns))
    if width > 1:  # average over bins of `width` positions
        padded = np.full((n_layers, -(-n // width) * width), np.nan)
        padded[:, :n] = values
        with warnings.catch_warnings():  # an all-NaN bin (no prediction) stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanmean(padded.reshape(n_layers, -1, width), axis=2)
    x = np.arange(0, n, width) + (width - 1) / 2  # each column's center: a cell spans its bin's positions
    label = LENS_LABELS.get(statistic, statistic)
    span = lens_color_range(values)
    scale = {}
    if span is not None:
        scale = dict(zmin=span[0], zmax=span[1])
        layers = "all layers" if n_layers == 1 else f"layers 1–{n_layers - 1}"
        label += f"<br><sup>colors: percentiles {LENS_PERCENTILES[0]}–{LENS_PERCENTILES[1]} of {layers}</sup>"
    colorbar = dict(title=dict(text=label, side="right"), thickness=12)
    if statistic == "rank":
        colorbar.update(_rank_ticks(values, span))
    where = "#%{x}" if width == 1 else f"#%{{x:.0f}} ± {width // 2}"
    shown, value = {}, f"{statistic} %{{z:.3g}}"
    if statistic == "rank":  # the hover gives the rank, not its log (a bin: 10^mean log10(1 + rank) - 1)
        shown = dict(customdata=np.power(10.0, values) - 1)
        value = "rank %{customdata:,.0f}" if width == 1 else "rank ≈ %{customdata:,.0f} (geometric mean)"
    trace = go.Heatmap(
        z=values, x=x, y=np.arange(n_layers), colorscale="Viridis", **scale,  # the strip's direction: high = bright
        colorbar=colorbar, xgap=0, ygap=0, hovertemplate=where + "  layer %{y}<br>" + value + "<extra></extra>",
        **shown,
    )
    title = f"Logit lens: {statistic}" + (f" (mean over {width} positions per column)" if width > 1 else "")
    layout = figure_layout(title, "x", xaxis=dict(title="position"),
                           yaxis=dict(title="layer (0 = embeddings)", dtick=max(1, n_layers // 8)))
    if selected is not None and 0 <= selected < n:
        start = selected // width * width  # the selected token's column
        layout["shapes"] = [selection_box(start - 0.5, min(start + width, n) - 0.5)]
    return go.Figure(trace, layout=layout)


def _rank_ticks(values: np.ndarray, span: tuple[float, float] | None) -> dict:
    """Colorbar ticks for log10(1 + rank) `values` colored over `span` (None: over all the
    values, from 0): the ranks of `RANK_TICKS` inside it and, for a span, its two ends,
    labeled "≤ r" and "≥ r" (ranks beyond take their colors), without the inner ticks too
    close to an end to read."""
    if span is None:
        top = np.nanmax(values, initial=0.0) if not np.isnan(values).all() else 0.0
        ranks = [r for r in RANK_TICKS if math.log10(1 + r) <= top + 1e-9]
        return dict(tickvals=[math.log10(1 + r) for r in ranks], ticktext=[f"{r:,}" for r in ranks])
    low, high = span
    room = 0.08 * (high - low)
    inner = [r for r in RANK_TICKS if low + room < math.log10(1 + r) < high - room]
    return dict(tickvals=[low, *(math.log10(1 + r) for r in inner), high],
                ticktext=[f"{'≤ ' if low > 0 else ''}{10 ** low - 1:,.0f}", *(f"{r:,}" for r in inner),
                          f"≥ {10 ** high - 1:,.0f}"])


# ----- shared layout ------------------------------------------------------------------------
def selection_line(x, **extra) -> dict:
    """The shape that marks the selected token at `x` on a chart along the positions: a
    dotted vertical line across the plot."""
    return dict(type="line", name=SELECTION, xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                line=dict(color=SELECTED_COLOR, width=2, dash="dot"), **extra)


def selection_box(x0, x1, y0=0, y1=1, yref="paper", width=2) -> dict:
    """The shape that marks the selection on a heatmap: a box around its cells (default:
    the whole height of the plot)."""
    return dict(type="rect", name=SELECTION, xref="x", yref=yref, x0=x0, x1=x1, y0=y0, y1=y1,
                line=dict(color=SELECTED_COLOR, width=width))


def figure_layout(title: str, position_axis: str | None = None, **extra) -> dict:
    """The layout every view starts from: the title at the top left, the light template,
    `HEIGHT`, the same margins (views stacked in a column line up their position axes), no
    legend, no shapes, and `meta["workbench"]["position_axis"]`: the axis that holds token
    positions, None when none does (a click then selects no token). `extra` adds layout
    keys or replaces these (height, showlegend, margin, ...)."""
    return LIGHT | dict(
        title=dict(TITLE, text=title), height=HEIGHT, margin=dict(l=60, r=20, t=40, b=40),
        meta={"workbench": {"position_axis": position_axis}},
        showlegend=False, shapes=[], annotations=[],
    ) | extra


# ----- export -------------------------------------------------------------------------------
def figure_html(fig: go.Figure) -> str:
    """A standalone HTML page with plotly.js inlined: opens with no network."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})


def require_png_export() -> None:
    """Raise a WorkbenchError saying what to install unless PNG export can work: kaleido
    (pip install 'token-workbench[png]') and a Chromium, which it finds through BROWSER_PATH
    (set here to Debian's /usr/bin/chromium or a chromium / chrome on PATH)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise WorkbenchError("PNG export needs kaleido: pip install 'token-workbench[png]' (or 'kaleido>=1') "
                             "and a Chromium; HTML export works without it") from None
    if "BROWSER_PATH" not in os.environ:
        browser = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium") or shutil.which("google-chrome")
        if browser is None:
            raise WorkbenchError("PNG export needs a Chromium or Chrome browser: apt-get install chromium, "
                                 "or set BROWSER_PATH")
        os.environ["BROWSER_PATH"] = browser


def figure_png(fig: go.Figure, *, width: int = 900, height: int | None = None, scale: float = 2) -> bytes:
    """PNG bytes, rendered by kaleido in a headless Chromium (`require_png_export`); offline:
    kaleido loads plotly.js from the plotly package."""
    require_png_export()
    return fig.to_image(format="png", width=width, height=height or fig.layout.height or HEIGHT, scale=scale)


# ----- registration -------------------------------------------------------------------------
def _has_signals(run: Run) -> bool:
    return bool(signal_columns(run.table))


def _has_top_k(run: Run) -> bool:
    return "topk_tokens" in run.table.columns or "next_token" in run.meta


def _has_lens(run: Run) -> bool:
    return "lens_rank" in run.arrays


register_panel(Panel("tokens.signal", "Signal per token", applies=_has_signals, figure=signal_chart,
                     settings=("signal",)))
register_panel(Panel("tokens.next_token", "Next-token distribution", applies=_has_top_k, figure=next_token_chart))
register_panel(Panel("logit_lens.heatmap", "Logit lens", applies=_has_lens, figure=lens_heatmap, settings=("signal",)))


# ----- updates in place -----------------------------------------------------------------------
def update_in_place(current: go.Figure, new: go.Figure, previous: go.Figure | None = None) -> bool:
    """Turn `current` into `new` by a restyle of the trace properties and a relayout of the
    layout properties that changed, when both have the same kinds of traces (the usual case
    when only the selection moved). Returns False, leaving `current` untouched, otherwise.
    In the browser, a restyle or relayout redraws only what changed: several times cheaper
    than drawing a plot anew, which matters for views updated on every click.

    previous: the figure `current` was last drawn from, when the browser may have changed
    `current` since (a zoom, a resize): only what differs between `previous` and `new` is
    sent, so what the user did to the plot stays. Default: `current` itself."""
    base = current if previous is None else previous
    kinds = [t.type for t in new.data]
    if [t.type for t in current.data] != kinds or [t.type for t in base.data] != kinds:
        return False
    restyle = _restyle(base.data, new.data)
    if restyle is None:
        return False
    relayout = _changed_paths(base.layout.to_plotly_json(), new.layout.to_plotly_json())
    if restyle:
        current.plotly_restyle(restyle, list(range(len(kinds))))
    with current.batch_update():  # one relayout message at the end
        for path, value in relayout.items():
            current.layout[path] = value
    return True


def _restyle(old_traces, new_traces) -> dict | None:
    """The restyle that turns `old_traces` into `new_traces`: each trace property that changed
    in any trace, with its new value for every trace (a value per trace: Bokeh cannot send
    plotly's `Undefined`, which a restyle of some traces only would hold for the others, and
    drops the whole batch of changes that holds it). None when a trace has no such property,
    or a new matrix changed (heatmap z: restyle messages carry flat arrays): drawn anew."""
    new_json = [trace.to_plotly_json() for trace in new_traces]
    changed = set()
    for old, new in zip(old_traces, new_json):
        changed |= _changed_paths(old.to_plotly_json(), new).keys()
    restyle = {}
    for path in sorted(changed):
        if not all(path in trace for trace in new_traces):
            return None
        values = [new_traces[i][path] for i in range(len(new_json))]
        if any(_is_matrix(v) for v in values):
            return None
        restyle[path] = values
    return restyle


def _is_matrix(value) -> bool:
    """A 2-d value (heatmap z): a numpy array, or rows as a list or tuple of arrays or lists
    (plotly keeps z=[row] as a tuple of arrays)."""
    if isinstance(value, np.ndarray):
        return value.ndim > 1
    return isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], (list, tuple, np.ndarray))


def _changed_paths(old: dict, new: dict, prefix: str = "") -> dict:
    """The leaves of `new` that differ from `old`, as relayout paths ("shapes[0].x0": 5):
    moving one shape then redraws only the shapes, where replacing the `shapes` list
    would redraw the whole plot. Keys missing from `new` map to None (an emptied list: [])."""
    changes = {}
    for key in old.keys() | new.keys():
        path, a = f"{prefix}{key}", old.get(key)
        b = new.get(key, [] if isinstance(a, (list, tuple)) else None)
        if _same(a, b):
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changes.update(_changed_paths(a, b, path + "."))
        elif (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
              and all(isinstance(x, dict) and isinstance(y, dict) for x, y in zip(a, b))):
            for i, (x, y) in enumerate(zip(a, b)):
                changes.update(_changed_paths(x, y, f"{path}[{i}]."))
        else:
            changes[path] = b
    return changes


def _same(a, b) -> bool:
    """Deep equality of plotly JSON (dicts, lists, numpy arrays; NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b
