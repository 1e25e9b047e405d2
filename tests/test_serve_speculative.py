"""Generate mode with a draft model: `workbench serve --model tiny:llama --draft tiny:qwen2` (two
tiny models built from configs over the one tiny tokenizer) as a user starts it, the Draft box
ticked, a generation made by speculative sampling; the trace view shows the steps and points of
`model.generate(..., draft=..., gamma=...)` re-run in this process with the same seed, the
status line its tokens per step, and the trace follows the selected token both ways."""
from __future__ import annotations

import re
import threading

import pandas as pd
import pytest

import workbench as wb
from pages import ALL_MARKED, FIND, WORKBENCH_SERVE, click_point, fill, served, wait_until, watched_page
from test_serve import finish
from test_serve_generate import VIEW, VIEWPORT
from workbench.cli.main import main
from workbench.errors import WorkbenchError
from workbench.widgets.dashboard import Dashboard
from workbench.widgets.dashboard.modes import DEFAULT_TEXT
from workbench.widgets.dashboard.modes.generate import GAMMA_LABEL
from workbench.widgets.speculative import trace_points, tokens_per_step_said

NEW_TOKENS, GAMMA, SEED = 10, 3, 5
TRACE = f"() => ({VIEW})('Speculative sampling')"
# Page coordinates of the trace's point at (position, step), scrolled into view.
POINT = f"""
([position, step]) => {{
  const plot = ({TRACE})();
  plot.scrollIntoView({{block: 'center'}});
  const layout = plot._fullLayout, box = plot.getBoundingClientRect();
  return [box.left + layout._size.l + layout.xaxis.l2p(position), box.top + layout._size.t + layout.yaxis.l2p(step)];
}}
"""
# Whether the trace boxes the point of `step` at `position` (the selected token's own step).
BOXED = f"""
([position, step]) => (({TRACE})().layout.shapes || []).some(s => s.name === 'selection' && s.yref === 'y'
  && s.x0 <= position && position <= s.x1 && s.y0 <= step && step <= s.y1)
"""


@pytest.fixture(scope="module")
def draft_server(tmp_path_factory):
    """The server on one torch thread (tiny models: faster on a shared machine, see
    tests/test_serve_rollouts.py)."""
    log_path = tmp_path_factory.mktemp("serve-speculative") / "server.log"
    command = WORKBENCH_SERVE[:2] + ["--model", "tiny:llama", "--draft", "tiny:qwen2", "--port"]
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("OMP_NUM_THREADS", "1")
        with served(log_path, command) as url:
            environment.undo()
            assert "generate mode's draft: tiny:qwen2" in log_path.read_text()
            yield url


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py: the direct re-run too


@pytest.mark.slow
def test_speculative_generation_in_a_browser(draft_server, browser):
    model, draft = wb.load("tiny:llama"), wb.load("tiny:qwen2")
    want = model.generate(DEFAULT_TEXT, sampler="top-p:0.9", max_new_tokens=NEW_TOKENS, seed=SEED, draft=draft,
                          gamma=GAMMA, progress=False)
    info = want.meta["speculative"]
    with watched_page(browser, draft_server, viewport=VIEWPORT, accept_downloads=True) as page:
        page.get_by_text("generate", exact=True).click()
        page.get_by_role("button", name="Generate").wait_for(timeout=10_000)
        page.get_by_text("Draft with tiny:qwen2").click()  # (its label ticks the box)
        fill(page, GAMMA_LABEL, GAMMA)
        fill(page, "New tokens", NEW_TOKENS)
        fill(page, "Seed", SEED)
        page.get_by_role("button", name="Generate").click()
        status = page.locator(".tw-status", has_text=f"{NEW_TOKENS} tokens generated")
        status.wait_for(timeout=60_000)
        assert f"{info['steps']} steps, {info['accepted']} of {info['drafted']} drafts accepted; mean accepted " \
               f"length {tokens_per_step_said(info)}" in status.inner_text()
        page.wait_for_function(f"() => ({FIND})().plots.length === 6", timeout=20_000)
        with page.expect_download() as download:
            page.get_by_role("button", name="Table (CSV)").click()
        table = pd.read_csv(download.value.path())
        assert table["token_id"].tolist() == want.table["token_id"].tolist()
        assert table["spec_step"].dropna().astype(int).tolist() == want.table["spec_step"].dropna().tolist()

        # The trace: one row per step, each point where the direct re-run puts it.
        assert page.evaluate(f"() => ({TRACE})().layout.title.text").endswith(tokens_per_step_said(info))
        shown = page.evaluate(f"() => ({TRACE})().data.map(t => [t.name, t.x, t.y])")
        expected = {name: points for name, points in trace_points(want).items() if points}
        assert len(shown) == len(expected)
        for (name, x, y), points in zip(shown, expected.values()):
            assert (x, y) == ([p[0] for p in points], [p[1] for p in points]), name
        assert max(max(y) for _, _, y in shown) + 1 == info["steps"] == len(want.arrays["spec_accepted"])

        # A token clicked in the strip is selected in the trace, its step's point boxed.
        last = int(want.table["position"].iloc[-1])
        step = int(want.table["spec_step"].iloc[-1])
        page.locator(f'.tw-text .t[data-i="{last}"]').click()
        wait_until(page, ALL_MARKED, last, f"clicking token {last} did not select it in every view")
        assert page.evaluate(BOXED, [last, step])

        # A point clicked in the trace (step 0's own draw) selects its token in every view.
        (position, first_step, _), = [p for p in [*expected.get("residual", []), *expected.get("bonus", [])] if p[1] == 0]
        click_point(page, POINT, [position, first_step])
        wait_until(page, ALL_MARKED, position, f"clicking the trace at token {position} did not select it everywhere")
        assert page.evaluate(BOXED, [position, 0])


def test_the_draft_row_only_with_a_draft_model():
    """Without a draft model the page has no Draft row; with one, γ is read only while the box is
    ticked and refused by name outside its allowed values."""
    model, draft = wb.load("tiny:llama"), wb.load("tiny:qwen2")
    assert "generate" not in Dashboard(model, threading.Lock()).controls
    page = Dashboard(model, threading.Lock(), draft=draft)
    controls = page.controls["generate"]
    assert controls.arguments() == {} and not controls.gamma.visible
    controls.on.value = True
    assert controls.gamma.visible and controls.arguments() == {"draft": draft, "gamma": 4}
    controls.gamma.value = 0
    page.mode.value = "generate"
    with pytest.raises(WorkbenchError, match=re.escape(GAMMA_LABEL) + " must be at least 1 and at most 64, a whole number"):
        finish(page.compute())


def test_serve_refuses_a_draft_with_another_vocabulary(capsys):
    assert main(["serve", "--model", "tiny:llama", "--draft", "workbench:tiny-moe", "--port", "0"]) == 2
    assert "speculative sampling needs two models with the same tokenizer vocabulary" in capsys.readouterr().err
