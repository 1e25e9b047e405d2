"""Attention views on a hand-built run: the figures show exactly the arrays they are given,
and the keep/evict view keeps what H2O's rule keeps (DESIGN.md vector)."""
import numpy as np
import pandas as pd

from workbench.run import Run
from workbench.widgets import attention as views


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
