"""The comparison's views against the run's own table: the bars are each side's top-k, the
markers the positions where the top-1 tokens differ, the expected tokens per speculative step
the closed form recomputed here, and every view marks the selected token."""
import numpy as np
import pytest

from workbench.widgets.compare import acceptance_chart, branch_view, pair_distributions
from workbench.widgets.figures import SELECTED_COLOR
from workbench.widgets.panels import load_builtin_panels, panels_for
from test_compare import TEXT, sharpened


@pytest.fixture(scope="module")
def run():
    model, reference = sharpened("llama", 0, 30.0), sharpened("qwen2", 1, 30.0)
    return model.compare(TEXT, reference=reference, top_k=4, branches=2, branch_tokens=3, progress=False)


def test_panels_apply_to_comparisons_only(run):
    load_builtin_panels()
    names = [panel.name for panel in panels_for(run)]
    assert {"compare.distributions", "compare.branches", "compare.acceptance", "tokens.signal"} <= set(names)
    assert "kl_pq" in run.strip("kl_pq").html and "acceptance" in run.strip("acceptance").html


def test_both_distributions_at_the_selected_token(run):
    t = 5
    row = run.table.iloc[t]
    figure = pair_distributions(run, t)
    p_bars, q_bars = figure.data
    assert list(p_bars.x) == pytest.approx(row["topk_probs"]) and list(q_bars.x) == pytest.approx(row["ref_topk_probs"])
    assert list(p_bars.y) == [f"{token!r} · rank {i}" for i, token in enumerate(row["topk_tokens"])]
    for bars, ids in ((p_bars, row["topk_ids"]), (q_bars, row["ref_topk_ids"])):
        marked = [i for i, color in zip(ids, bars.marker.color) if color == SELECTED_COLOR]
        assert marked == [i for i in ids if i == row["token_id"]]
    assert f"JS {row['js']:.3g}" in figure.layout.title.text
    assert [a.text for a in figure.layout.annotations][:2] == ["p: " + run.meta["model"], "q: " + run.meta["compare"]["reference"]]
    assert "select a token" in pair_distributions(run, None).layout.annotations[-1].text
    assert "no prediction" in pair_distributions(run, 0).layout.annotations[-1].text


def test_branch_view_marks_the_divergent_positions(run):
    p_top1 = [ids[0] if ids is not None else None for ids in run.table["topk_ids"]]
    q_top1 = [ids[0] if ids is not None else None for ids in run.table["ref_topk_ids"]]
    divergent = [t for t, (a, b) in enumerate(zip(p_top1, q_top1)) if a is not None and a != b]
    branched = run.table.index[run.table["branch"].notna()].tolist()
    figure = branch_view(run, branched[0])
    assert list(figure.data[0].x) == divergent
    assert [s == "circle" for s in figure.data[0].marker.symbol] == [t in branched for t in divergent]
    text = figure.layout.annotations[0].text
    assert run.table.loc[branched[0], "branch"].strip()[:3] in text.replace("&#x27;", "'")
    assert figure.layout.shapes[0].x0 == branched[0] and figure.layout.meta["workbench"]["position_axis"] == "x"


def test_acceptance_and_expected_tokens(run):
    gamma = 3
    figure = acceptance_chart(run, 4, gamma=gamma)
    a = run.table["acceptance"].to_numpy(dtype=float, na_value=np.nan)
    np.testing.assert_allclose(figure.data[0].y, a)
    want = np.array([sum(x ** k for k in range(gamma + 1)) for x in a])  # 1 + a + ... + a^gamma
    np.testing.assert_allclose(figure.data[1].y, want, rtol=1e-12)
    assert f"mean {np.nanmean(a):.3f}" in figure.layout.title.text and figure.layout.shapes[0].x0 == 4
