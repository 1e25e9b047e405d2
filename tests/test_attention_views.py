"""Attention views on a hand-built run: the figures show exactly the arrays they are given,
and the keep/evict view keeps what H2O's rule keeps (DESIGN.md vector)."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from workbench.kv import heavy_hitters
from workbench.results.run import Run
from workbench.widgets import attention as views
from workbench.widgets.figures import SELECTION, TEMPLATE
from workbench.widgets.panels import clicked_position


def attention_run():
    received = np.array([2.5, 0.8, 0.3, 0.4], dtype=np.float32)  # DESIGN.md's H2O column sums
    arrays = {
        "attn_received": np.broadcast_to(received, (2, 3, 4)).copy(),  # [L, H, T]
        "attn_head_entropy": np.arange(6, dtype=np.float32).reshape(2, 3),
        "attn_head_sink": np.full((2, 3), 0.5, dtype=np.float32),
        "attn_rows": np.array([[1, 0, 0, 0], [.5, .5, 0, 0], [.6, .2, .2, 0], [.4, .1, .1, .4]], dtype=np.float32),
        "attn_keyformer": np.broadcast_to(np.array([0.1, 0.2, 3.0, 0.5], dtype=np.float32), (2, 3, 4)).copy(),
    }
    table = pd.DataFrame({"position": range(4), "token": ["a", "b", "c", "d"], "start": range(4), "end": range(1, 5)})
    return Run("abcd", table, arrays, {"model": "hand-built", "attention_layers": [0, 1]})


def test_head_grid_shows_the_summary():
    fig = views.head_grid(attention_run())
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), np.arange(6).reshape(2, 3))
    assert list(fig.data[0].y) == ["L0", "L1"]


def test_keep_evict_follows_h2o():
    fig = views.keep_evict(attention_run(), heavy=1, recent=1)
    kept = [c == "#2ca02c" for c in fig.data[0].marker.color]
    assert np.flatnonzero(kept).tolist() == [0, 3]
    assert "2 kept of 4" in fig.layout.title.text


def test_received_marks_the_selected_token():
    fig = views.received(attention_run(), position=2)
    np.testing.assert_allclose(fig.data[0].y, [2.5, 0.8, 0.3, 0.4], rtol=1e-6)
    assert list(fig.data[0].marker.color).index("#ff7f0e") == 2


def test_exact_row_shows_the_selected_query_up_to_itself():
    fig = views.exact_row(attention_run(), position=2)
    np.testing.assert_allclose(fig.data[0].y, [0.6, 0.2, 0.2])
    assert list(fig.data[0].x) == [0, 1, 2] and fig.layout.meta["workbench"]["position_axis"] == "x"
    np.testing.assert_allclose(views.exact_row(attention_run()).data[0].y, [0.4, 0.1, 0.1, 0.4])  # default: last token


def test_keep_evict_by_keyformer_scores():
    fig = views.keep_evict(attention_run(), heavy=1, recent=1, score="keyformer")
    kept = [c == views.KEPT for c in fig.data[0].marker.color]
    assert np.flatnonzero(kept).tolist() == [2, 3]
    assert fig.layout.title.text.startswith("Keyformer cache")


def long_attention_run(n: int = 1000):
    """n tokens with random received and Keyformer scores [2, 3, n] and one spike at 2n/3."""
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, (2, 3, n)).astype(np.float32)
    scores[:, :, 2 * n // 3] = 9.0
    table = pd.DataFrame({"position": range(n), "token": [f" t{i}" for i in range(n)]})
    return Run("", table, {"attn_received": scores, "attn_keyformer": scores[::-1].copy()}, {"model": "hand-built"})


def test_hover_labels_show_each_tokens_repr():
    run = attention_run()
    run.table["token"] = [" a", "\n", "c", "d d"]
    reprs = [repr(t) for t in run.table["token"]]
    received, row, kept = views.received(run), views.exact_row(run), views.keep_evict(run, heavy=1, recent=1)
    for fig in (received, row, kept):
        assert "!r" not in fig.data[0].hovertemplate
    assert list(received.data[0].customdata) == reprs and list(row.data[0].customdata) == reprs
    assert [list(pair) for pair in kept.data[0].customdata] == [[reprs[0], "kept"], [reprs[1], "evicted"],
                                                               [reprs[2], "evicted"], [reprs[3], "kept"]]


def test_long_runs_are_drawn_as_a_line_that_keeps_the_highest_score():
    run = long_attention_run()
    for score, array in (("received", "attn_received"), ("keyformer", "attn_keyformer")):
        scores = run.arrays[array].mean(axis=(0, 1))
        for fig in (views.keep_evict(run, 400, score=score), views.received(run, 400)):
            line = fig.data[0]
            assert line.type == "scatter" and len(line.x) <= views.MAX_BARS < len(scores)
            assert max(line.y) == pytest.approx(9.0) and 2 * 1000 // 3 in line.x  # the spike survives
            shape = next(s for s in fig.layout.shapes if s.name == SELECTION)
            assert shape.x0 == shape.x1 == 400  # the selected token is marked
            point = {"x": int(line.x[10]), "y": float(line.y[10])}  # as the browser sends a clicked point
            assert clicked_position(fig.layout.meta, point) == line.x[10]
        kept = views.keep_evict(run, score=score, heavy=8, recent=8)
        assert list(kept.data[1].x) == np.flatnonzero(heavy_hitters(scores, 8, 8)).tolist()  # kept keys as markers
    assert list(views.received(run, 400).data[1].x) == [400]


def test_cache_titles_say_the_scores_are_averaged():
    run = attention_run()
    for fig in (views.keep_evict(run), views.keep_evict(run, score="keyformer"), views.received(run)):
        assert "(mean over layers and heads)" in fig.layout.title.text
    assert "(layer 1, head 2)" in views.keep_evict(run, layer=1, head=2).layout.title.text


def test_figures_use_the_light_template_and_say_nats():
    run = attention_run()
    light = go.layout.Template(TEMPLATE).to_plotly_json()
    for fig in (views.head_grid(run), views.received(run, 1), views.exact_row(run, 2), views.keep_evict(run),
                views.received(long_attention_run(), 3)):
        assert fig.layout.template.to_plotly_json() == light and fig.layout.title.font.size == 13
    assert views.head_grid(run).data[0].colorbar.title.text == "entropy (nats)"
