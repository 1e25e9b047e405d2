"""Core figure builders and the panel registry: downsampling keeps what matters, the
selection is marked where the views look for it, the next-token chart highlights the
token that came, in-place updates give the same figure as a fresh one, exports work offline.

Runs are built by hand (no model), so every expected value is computed here independently.
"""
from __future__ import annotations

import json
import math
import re

import numpy as np
import plotly.graph_objects as go
import pandas as pd
import plotly.io as pio
import pytest

from pages import CHROMIUM
from workbench.errors import WorkbenchError
from workbench.results.run import Run
from workbench.widgets import figures, token_strip
from workbench.widgets.figures import (MAX_POINTS, SELECTED_COLOR, SELECTION, decimate, figure_html, lens_heatmap,
                                       next_token_chart, signal_chart, update_in_place)
from workbench.widgets.panels import PANELS, Panel, clicked_position, load_builtin_panels, panels_for


def make_run(n: int = 12, layers: int = 4, seed: int = 0) -> Run:
    """n tokens " w0" " w1" ...; surprisal random with one spike; top-3 lists that contain
    the actual token at even positions only; a logit lens [layers, n]."""
    rng = np.random.default_rng(seed)
    surprisal = rng.uniform(0, 3, n)
    surprisal[n // 3] = 50.0  # a spike that downsampling must keep
    tokens = [f" w{i}" for i in range(n)]
    starts = np.cumsum([0] + [len(t) for t in tokens[:-1]])
    topk_ids = [None] + [[100 + i, 7, 8] if i % 2 == 0 else [5, 7, 8] for i in range(1, n)]
    table = pd.DataFrame({
        "position": range(n), "token_id": [100 + i for i in range(n)], "token": tokens,
        "start": starts, "end": starts + [len(t) for t in tokens], "role": ["text"] * n,
        "surprisal": pd.array([None] + surprisal[1:].tolist(), dtype="Float64"),
        "entropy": pd.array([None] + [1.0] * (n - 1), dtype="Float64"),
        "rank": pd.array([None] + [0 if i % 2 == 0 else 41 for i in range(1, n)], dtype="Int64"),
        "topk_ids": topk_ids,
        "topk_tokens": [None] + [[tokens[i] if i % 2 == 0 else " x", " y", " z"] for i in range(1, n)],
        "topk_probs": [None] + [[0.5, 0.2, 0.1] for _ in range(1, n)],
    })
    lens = rng.integers(0, 5000, (layers, n)).astype("int64")
    lens[:, 0] = -1  # position 0 has no prediction
    arrays = {"lens_rank": lens, "lens_entropy": rng.uniform(0, 5, (layers, n))}
    meta = {"model": "hand", "next_token": {"topk_ids": [1, 2], "topk_tokens": [" a", " b"], "topk_probs": [0.6, 0.3]}}
    return Run("".join(tokens), table, arrays, meta)


def selection_shape(fig):
    return next(shape for shape in fig.layout.shapes if shape.name == SELECTION)


def normalized(fig) -> dict:
    """Figure JSON with empty lists and None dropped (plotly writes an emptied list as [])."""
    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if v not in ([], None)}
        return [clean(v) for v in x] if isinstance(x, list) else x
    return clean(json.loads(pio.to_json(fig)))


# ----- decimation ---------------------------------------------------------------------------
def test_short_runs_are_drawn_whole():
    assert decimate(np.arange(10.0), 20).tolist() == list(range(10))


def test_decimation_keeps_each_bins_min_and_max():
    rng = np.random.default_rng(1)
    values = rng.normal(size=10_001)
    values[[0, 17, 5000]] = np.nan
    keep = decimate(values, 400)
    assert len(keep) <= 400 and np.all(np.diff(keep) > 0)
    width = math.ceil(len(values) / 200)
    for start in range(0, len(values), width):  # brute force, bin by bin
        chunk = values[start:start + width]
        if np.isnan(chunk).all():
            continue
        assert start + int(np.nanargmax(chunk)) in keep and start + int(np.nanargmin(chunk)) in keep


def test_signal_chart_of_a_long_run_is_downsampled_but_keeps_the_spike():
    run = make_run(5000)
    fig = signal_chart(run, None, "surprisal")
    x = np.asarray(fig.data[0].x)
    assert len(x) <= MAX_POINTS and 5000 // 3 in x
    assert np.asarray(fig.data[0].y)[list(x).index(5000 // 3)] == 50.0
    assert "(5000 tokens: min/max per bin)" in fig.layout.title.text


# ----- selection ------------------------------------------------------------------------------
def test_signal_chart_marks_the_selected_token():
    run = make_run()
    fig = signal_chart(run, 5, "entropy")
    assert fig.layout.meta["workbench"]["position_axis"] == "x"
    shape = selection_shape(fig)
    assert shape.x0 == shape.x1 == 5 and "#5 ' w5'" in shape.label.text
    assert fig.layout.yaxis.title.text == "entropy (nats)"
    assert not signal_chart(run, None).layout.shapes
    with pytest.raises(WorkbenchError, match="surprisal, entropy, rank"):
        signal_chart(run, 1, "attention")


def test_next_token_chart_highlights_the_actual_token():
    run = make_run()
    fig = next_token_chart(run, 4)  # actual token 104 is first in the top-k
    assert fig.data[0].marker.color[0] == SELECTED_COLOR and set(fig.data[0].marker.color[1:]) != {SELECTED_COLOR}
    assert "#4 ' w4'" in fig.layout.title.text


def test_next_token_chart_adds_the_actual_token_when_not_in_top_k():
    run = make_run()
    fig = next_token_chart(run, 3)  # rank 41: not among the three candidates
    labels, probs = list(fig.data[0].y), list(fig.data[0].x)
    assert len(labels) == 4 and labels[-1] == "' w3' · rank 41 (actual)"
    assert probs[-1] == pytest.approx(math.exp(-run.table["surprisal"][3]))
    assert fig.data[0].marker.color[-1] == SELECTED_COLOR


def test_next_token_chart_without_selection_and_at_the_first_token():
    run = make_run()
    after = next_token_chart(run, None)
    assert list(after.data[0].x) == [0.6, 0.3] and "after the last token" in after.layout.title.text
    first = next_token_chart(run, 0)
    assert "first token has no prediction" in first.layout.annotations[0].text


def test_signal_chart_gives_units():
    run = make_run()
    surprisal = signal_chart(run, None, "surprisal")
    assert surprisal.layout.yaxis.title.text == "surprisal (nats)" and " nats<extra>" in surprisal.data[0].hovertemplate
    rank = signal_chart(run, None, "rank")  # a count: no unit; a log scale named by rank, as the strip and the lens
    assert rank.layout.yaxis.title.text == "rank (log scale; 0 = the most likely)"
    ranks = run.table["rank"].to_numpy(dtype="float64", na_value=np.nan)
    np.testing.assert_allclose(rank.data[0].y, np.log10(1 + ranks))
    np.testing.assert_array_equal(rank.data[0].text, ranks)  # the hover names the rank itself
    assert list(rank.layout.yaxis.ticktext[:2]) == ["0", "1"] and rank.layout.yaxis.tickvals[1] == pytest.approx(np.log10(2))


def test_next_token_chart_of_a_generation_ended_by_end_of_sequence():
    """No prediction after an end-of-sequence token: the chart says so, with no empty axes
    and no advice about analyzing."""
    run = make_run()
    ended = Run(run.text, run.table, run.arrays, {"model": "hand", "stop_reason": "eos"})
    fig = next_token_chart(ended, None)
    assert "ended with the end-of-sequence token" in fig.layout.annotations[0].text
    assert "analyze" not in fig.layout.annotations[0].text
    assert fig.layout.xaxis.visible is False and fig.layout.yaxis.visible is False
    assert next_token_chart(ended, 4).layout.xaxis.visible is not False  # a selected token's prediction: axes


def test_lens_heatmap_bins_long_runs_and_marks_the_column():
    run = make_run(1003, layers=3)
    fig = lens_heatmap(run, 501, "rank", max_columns=100)  # bins of 11 positions
    z, x = np.asarray(fig.data[0].z, dtype=float), np.asarray(fig.data[0].x)
    assert z.shape == (3, 92) and x[0] == 5  # centers of 11-wide bins
    ranks = run.arrays["lens_rank"].astype(float)
    log = np.where(ranks < 0, np.nan, np.log10(1 + np.maximum(ranks, 0)))
    assert z[1, 3] == pytest.approx(log[1, 33:44].mean())
    assert z[2, 0] == pytest.approx(np.nanmean(log[2, 0:11]))  # position 0 (no prediction) left out
    shape = selection_shape(fig)
    assert shape.x0 == 494.5 and shape.x1 == 505.5  # the bin 495..505 holds 501
    assert "geometric mean" in fig.data[0].hovertemplate
    short = make_run(50, layers=3)
    single = lens_heatmap(short, None, "rank")  # one column per position: the hover names the rank itself
    assert np.asarray(single.data[0].customdata, dtype=float)[1, 7] == pytest.approx(short.arrays["lens_rank"][1, 7])
    assert "rank %{customdata:,.0f}" in single.data[0].hovertemplate
    entropy = lens_heatmap(run, None, "entropy")  # the lens has this statistic: shown as is
    assert "entropy" in entropy.layout.title.text
    assert "rank" in lens_heatmap(run, None, "margin").layout.title.text  # no such lens: rank


def lens_run(lens: dict[str, np.ndarray]) -> Run:
    """make_run's tokens with the given lens arrays; the table's surprisal, entropy and rank
    are the lens's last layer (the model's own prediction), as in an analyzed run."""
    run = make_run(lens["lens_rank"].shape[1])
    for name in ("surprisal", "entropy", "rank"):
        last = lens[f"lens_{name}"][-1]
        run.table[name] = pd.array([None] + last[1:].tolist(), dtype="Int64" if name == "rank" else "Float64")
    return Run(run.text, run.table, lens, run.meta)


def heatmap_color(trace, value: float) -> str | None:
    """The color plotly gives `value` when it is at or beyond an end of the trace's range
    (zmin/zmax, or the data's extent when unset); None in between."""
    colors = [color for _, color in trace.colorscale][::-1 if trace.reversescale else 1]
    z = np.asarray(trace.z, dtype=float)
    low = np.nanmin(z) if trace.zmin is None else trace.zmin
    high = np.nanmax(z) if trace.zmax is None else trace.zmax
    return colors[0] if value <= low else colors[-1] if value >= high else None


def strip_color(run: Run, signal: str, position: int) -> str:
    """The background of token `position` in the run's token strip colored by `signal`."""
    strip = token_strip(run, signal).html
    level = re.search(rf'class="t (l\d+)[^"]*" data-i="{position}"', strip).group(1)
    return re.search(rf"\.{level}\{{background:(#[0-9a-f]{{6}})", strip).group(1)


@pytest.mark.parametrize("signal", ["surprisal", "rank", "entropy"])
def test_the_lens_colors_a_token_as_the_strip_does(signal):
    """The most and the least surprising (uncertain, badly ranked) token of the last layer
    take the same end colors in the logit lens as in the token strip: hot is hot in both."""
    rng = np.random.default_rng(3)
    n, layers = 30, 5
    lens = {"lens_surprisal": rng.uniform(0, 8, (layers, n)), "lens_entropy": rng.uniform(0, 6, (layers, n)),
            "lens_rank": rng.integers(0, 3000, (layers, n))}
    for values in lens.values():  # one clear top and bottom token in the last layer
        values[-1, 7], values[-1, 12] = values.max() * 2, 0
    run = lens_run(lens)
    trace = lens_heatmap(run, None, signal).data[0]
    z = np.asarray(trace.z, dtype=float)
    for position in (7, 12):
        assert heatmap_color(trace, z[-1, position]) == strip_color(run, signal, position)


def test_the_lens_color_range_comes_from_layers_1_to_L():
    """Layer 0 (the embeddings read through the lm_head) is extreme here: it is still drawn
    (its values unchanged, in the hover) but clipped, and the colors span layers 1..L, from
    their 2nd to their 98th percentile; the colorbar says so."""
    n = 25
    surprisal = np.vstack([np.full(n, 500.0), np.arange(100, dtype=float).reshape(4, n)])  # [5, n]: 500, then 0..99
    run = lens_run({"lens_surprisal": surprisal, "lens_entropy": surprisal, "lens_rank": surprisal.astype("int64")})
    fig = lens_heatmap(run, None, "surprisal")
    trace = fig.data[0]
    # By hand: the p-th percentile of 0, 1, ..., 99 (linear interpolation) is 0.99 p.
    assert (trace.zmin, trace.zmax) == (pytest.approx(1.98), pytest.approx(97.02))
    assert np.array_equal(np.asarray(trace.z)[0], surprisal[0])  # layer 0 drawn, its values as they are
    assert heatmap_color(trace, 500.0) == heatmap_color(trace, 99.0)  # clipped to the top color
    assert "percentiles 2–98 of layers 1–4" in trace.colorbar.title.text
    ranks = lens_heatmap(run, None, "rank").data[0]  # rank: on log10(1 + rank), ticks inside the range
    assert ranks.zmax == pytest.approx(np.percentile(np.log10(1 + np.arange(100)), 98))
    # Ticks: its ends, about ranks 2 and 97 (the 2nd and 98th percentiles of ranks 0..99: 1.98
    # and 97.02, nearly the same on the log scale), and rank 10 in between.
    assert list(ranks.colorbar.ticktext) == ["≤ 2", "10", "≥ 97"]


def test_clicked_position():
    meta = {"workbench": {"position_axis": "x"}}
    assert clicked_position(meta, {"x": 6.6, "y": 2}) == 7
    assert clicked_position({"workbench": {"position_axis": "y"}}, {"x": 6.6, "y": 2}) == 2
    assert clicked_position(None, {"x": 3}) is None and clicked_position(meta, {"x": "a"}) is None


# ----- updates in place ------------------------------------------------------------------------
@pytest.mark.parametrize("builder", [signal_chart, next_token_chart, lens_heatmap], ids=lambda f: f.__name__)
def test_updating_in_place_gives_the_fresh_figure(builder):
    run = make_run(40)
    for old, new in ((3, 8), (None, 8), (8, None), (2, 0), (0, None)):
        current, fresh = builder(run, old), builder(run, new)
        assert update_in_place(current, fresh)
        assert normalized(current) == normalized(fresh), (old, new)


def test_moving_the_selection_sends_only_the_moved_shape():
    run = make_run(40)
    current, messages = signal_chart(run, 3), []
    current._send_update_msg = lambda *args, **kwargs: messages.append(kwargs or args)
    update_in_place(current, signal_chart(run, 8))
    (message,) = messages
    assert not message["restyle_data"]
    assert set(message["relayout_data"]) == {"shapes.0.x0", "shapes.0.x1", "shapes.0.label.text"}


def test_a_changed_matrix_given_as_rows_is_drawn_anew():
    """A heatmap's z given as rows (z=[row], which plotly keeps as a tuple of arrays) cannot go
    in a restyle message: it is drawn anew (the attribution strip kept its first target's colors)."""
    def strip(values):
        return go.Figure(go.Heatmap(x=[0, 1, 2], y=[0], z=[np.array(values)]))

    current = strip([0.1, 0.2, np.nan])
    assert not update_in_place(current, strip([0.3, np.nan, np.nan]))
    assert current.data[0].z[0][0] == 0.1  # left untouched, for the caller to draw anew
    assert update_in_place(current, strip([0.1, 0.2, np.nan]))  # nothing changed: nothing to send


def test_different_traces_are_not_updated_in_place():
    run = make_run(40)
    assert not update_in_place(signal_chart(run, 3), lens_heatmap(run, 3))


# ----- the registry ------------------------------------------------------------------------------
def test_core_panels_are_registered_and_apply_by_data():
    load_builtin_panels()
    run = make_run()
    names = [panel.name for panel in panels_for(run)]
    assert names[:3] == ["tokens.signal", "tokens.next_token", "logit_lens.heatmap"]
    no_lens = Run(run.text, run.table, {}, run.meta)
    assert "logit_lens.heatmap" not in [panel.name for panel in panels_for(no_lens)]
    assert PANELS["logit_lens.heatmap"].section == "logit_lens"


def test_render_passes_only_declared_settings():
    calls = []
    plain = Panel("t.plain", "plain", applies=lambda run: True, figure=lambda run, selected: calls.append(selected))
    tuned = Panel("t.tuned", "tuned", applies=lambda run: True, settings=("signal",),
                  figure=lambda run, selected, signal: calls.append((selected, signal)))
    plain.render(None, 3, signal="entropy")
    tuned.render(None, 4, signal="entropy")
    assert calls == [3, (4, "entropy")]


# ----- export ---------------------------------------------------------------------------------------
def test_figure_html_is_standalone():
    page = figure_html(signal_chart(make_run(), 2))
    assert page.lower().startswith("<!doctype html>") and len(page) > 1_000_000  # plotly.js inlined
    assert not re.search(r"<script[^>]*\ssrc=", page)  # no external script


def test_exported_html_draws_with_no_network(tmp_path, browser):
    path = tmp_path / "chart.html"
    path.write_text(figure_html(signal_chart(make_run(), 2)), encoding="utf-8")
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.locator(".js-plotly-plot .scatterlayer .trace").wait_for(timeout=20_000)
    assert all(url.startswith(("file:", "data:", "blob:")) for url in requests), requests


def test_figure_png(monkeypatch):
    pytest.importorskip("kaleido", reason="PNG export needs kaleido (pip install 'kaleido>=1')")
    if not CHROMIUM.exists():
        pytest.skip("needs a Chromium")
    png = figures.figure_png(signal_chart(make_run(), 2), width=400, height=300, scale=1)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_what_the_browser_changed_stays_when_the_selection_moves():
    run = make_run(40)
    drawn = signal_chart(run, 3)
    current = signal_chart(run, 3)
    current.plotly_relayout({"xaxis.range": [10, 20], "width": 560})  # the user zoomed; the pane has a size
    assert update_in_place(current, signal_chart(run, 12), previous=drawn)
    assert list(current.layout.xaxis.range) == [10, 20] and current.layout.width == 560
    assert selection_shape(current).x0 == 12
