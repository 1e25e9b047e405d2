"""The notebook explorer: one selection for every view, from the strip, a chart, the
position box or code; pages of long runs; the signal picker; exports; `run.show()` and
`wb.explore`. The strip widget's front-end module is run in Chromium against a stand-in
for anywidget's model API (the same module the dashboard runs through Panel).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from plotly.callbacks import Points

pytest.importorskip("anywidget", reason="the explorer needs anywidget (a dependency of token-workbench)")

import workbench as wb  # noqa: E402
from workbench.results.run import Run  # noqa: E402
from workbench.widgets import explorer as explorer_module  # noqa: E402
from workbench.widgets.explorer import Explorer, TokenStripWidget  # noqa: E402
from workbench.widgets.figures import SELECTED_COLOR, SELECTION  # noqa: E402
from workbench.widgets.token_strip import PAGE_TOKENS  # noqa: E402

STRIP_JS = Path(explorer_module.__file__).parent / "static" / "token_strip.js"


@pytest.fixture(scope="module")
def tiny():
    return wb.load("tiny:llama")


@pytest.fixture(scope="module")
def run(tiny):
    return tiny.analyze("The capital of France is Paris. The river runs through the valley.",
                        signals=["uncertainty", "logit_lens"])


def long_run(n: int = 1000) -> Run:
    """A hand-built run of n one-word tokens (no model: the table is all the views need)."""
    tokens = [f" w{i}" for i in range(n)]
    starts = pd.Series([len(t) for t in tokens]).cumsum().shift(fill_value=0).tolist()
    table = pd.DataFrame({
        "position": range(n), "token_id": range(n), "token": tokens, "start": starts,
        "end": [s + len(t) for s, t in zip(starts, tokens)], "role": ["text"] * n,
        "surprisal": pd.array([None] + [float(i % 7) for i in range(1, n)], dtype="Float64"),
    })
    return Run("".join(tokens), table, {}, {"model": "hand"})


def marked(explorer, position) -> bool:
    """Every view of the explorer shows `position` as the selection."""
    strip = explorer.strip.selected == position and f'data-i="{position}"' in explorer.strip.html
    charts = []
    for name, figure in explorer.figures.items():
        shapes = [s for s in figure.layout.shapes if s.name == SELECTION]
        if shapes:
            charts.append(shapes[0].x0 <= position <= shapes[0].x1)
        elif name == "tokens.next_token":
            charts.append(f"#{position} " in figure.layout.title.text)
    return strip and all(charts) and len(charts) == len(explorer.figures)


def test_one_selection_for_every_view(run):
    explorer = Explorer(run)
    assert list(explorer.figures) == ["tokens.signal", "tokens.next_token", "logit_lens.heatmap"]
    explorer.strip.selected = 4  # what a click in the strip does (the front end sets the trait)
    assert explorer.selected == 4 and explorer.position.value == 4 and marked(explorer, 4)
    explorer.position.value = 6  # the position box
    assert marked(explorer, 6)
    explorer.selected = None  # from code: nothing selected anywhere
    assert explorer.strip.selected is None
    assert not [s for s in explorer.figures["tokens.signal"].layout.shapes if s.name == SELECTION]


def test_clicking_a_chart_point_selects_its_token(run):
    explorer = Explorer(run)
    figure = explorer.figures["tokens.signal"]
    trace = figure.data[0]
    trace._dispatch_on_click(Points(point_inds=[3], xs=[7], ys=[trace.y[6]], trace_name="", trace_index=0), None)
    assert explorer.selected == 7 and marked(explorer, 7)
    heatmap = explorer.figures["logit_lens.heatmap"].data[0]  # a heatmap cell: its x is the position
    heatmap._dispatch_on_click(Points(point_inds=[[1, 9]], xs=[9], ys=[1], trace_name="", trace_index=0), None)
    assert explorer.selected == 9
    bars = explorer.figures["tokens.next_token"].data[0]  # no position axis: nothing happens
    bars._dispatch_on_click(Points(point_inds=[0], xs=[0.4], ys=["1. 'x'"], trace_name="", trace_index=0), None)
    assert explorer.selected == 9


def test_the_next_token_view_highlights_the_actual_token(run):
    explorer = Explorer(run, selected=5)
    bars = explorer.figures["tokens.next_token"].data[0]
    assert SELECTED_COLOR in bars.marker.color
    assert repr(run.table["token"][5]) in bars.y[list(bars.marker.color).index(SELECTED_COLOR)]


def test_signal_picker_recolors_strip_and_chart(run):
    explorer = Explorer(run, selected=3)
    explorer.picker.value = "entropy"
    assert explorer.signal == "entropy" and 'data-signal="entropy"' in explorer.strip.html
    assert explorer.figures["tokens.signal"].layout.title.text.startswith("entropy")
    assert "entropy" in explorer.figures["logit_lens.heatmap"].layout.title.text
    assert marked(explorer, 3)


def test_long_runs_are_paged_and_follow_the_selection():
    explorer = Explorer(long_run(1000))
    assert explorer.strip.html.count('class="t ') == PAGE_TOKENS
    assert explorer.page_label.value == f"tokens 0–{PAGE_TOKENS - 1} of 1000"
    explorer.selected = 950  # on the last page
    assert explorer.page == 2 and 'data-i="950"' in explorer.strip.html and 'data-i="5"' not in explorer.strip.html
    assert explorer.strip.selected == 950 and marked(explorer, 950)
    explorer.previous.click()
    assert explorer.page == 1 and 'data-i="400"' in explorer.strip.html
    explorer.selected = 2000  # out of range: ignored
    assert explorer.selected == 950


def test_export_writes_table_and_offline_figures(run, tmp_path):
    written = Explorer(run, selected=2).export(tmp_path / "out")
    names = sorted(path.name for path in written)
    assert names == ["logit_lens-heatmap.html", "tokens-next_token.html", "tokens-signal.html",
                     "tokens.csv", "tokens.parquet"]
    assert len(pd.read_parquet(tmp_path / "out" / "tokens.parquet")) == len(run)
    page = (tmp_path / "out" / "tokens-signal.html").read_text(encoding="utf-8")
    assert "#2 " in page and "<script src=" not in page


def test_png_export_without_kaleido_says_what_to_install_and_writes_nothing(run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "kaleido", None)  # `import kaleido` raises ImportError
    with pytest.raises(wb.WorkbenchError, match=r"token-workbench\[png\]"):
        Explorer(run).export(tmp_path / "out", png=True)
    assert not (tmp_path / "out").exists()


def test_show_is_the_explorer_in_a_notebook_and_the_strip_elsewhere(run, monkeypatch):
    assert run.show("entropy")._repr_html_().startswith('<div class="tw-strip"')  # no kernel here
    monkeypatch.setattr(explorer_module, "in_notebook", lambda: True)
    view = run.show("entropy", selected=3)
    assert isinstance(view, Explorer) and view.signal == "entropy" and view.selected == 3
    assert run.strip("rank").signal == "rank"


def test_explore_analyzes_and_reports_errors(tiny):
    app = wb.explore(tiny, "Paris is the capital.")
    assert app.run is not None and app.run.text == "Paris is the capital."
    (explorer,) = app.children[-1].children
    assert isinstance(explorer, Explorer)
    app.children[0].value = ""
    app.analyze()
    assert "Error: the text is empty" in app.children[2].value
    assert explorer in app.children[-1].children  # the last good run stays on screen


# The strip's front-end module, in a browser, with a stand-in for anywidget's model.
HARNESS = """
async ([source, html]) => {
  const url = URL.createObjectURL(new Blob([source], {type: 'text/javascript'}));
  const module = await import(url);
  const state = {html, selected: null}, handlers = {}, sent = [];
  const model = {
    get: (name) => state[name],
    set: (name, value) => { state[name] = value; },
    save_changes: () => sent.push(state.selected),
    on: (event, callback) => { handlers[event] = callback; },
  };
  const el = document.createElement('div');
  document.body.appendChild(el);
  module.default.render({model, el});
  window.harness = {state, handlers, sent, el,
    fromPython: (name, value) => { state[name] = value; handlers['change:' + name](); }};
}
"""


def test_strip_widget_front_end(run, browser):
    widget = TokenStripWidget(html=run.strip("surprisal").html)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_content("<!DOCTYPE html><html><body></body></html>")
    page.evaluate(HARNESS, [STRIP_JS.read_text(encoding="utf-8"), widget.html])
    assert page.locator(".tw-text").inner_text() == run.text
    page.locator(".t").nth(5).click()  # a click is sent to Python once
    assert page.evaluate("harness.sent") == [5]
    page.evaluate("harness.fromPython('selected', 2)")  # Python selects another token
    assert page.locator(".tw-strip").get_attribute("data-selected") == "2"
    assert "selected #2" in page.locator(".tw-info").inner_text()
    assert page.evaluate("harness.sent") == [5]  # not echoed back
    page.evaluate("harness.fromPython('selected', null)")
    assert page.locator(".tw-strip").get_attribute("data-selected") is None
    page.evaluate("html => harness.fromPython('html', html)", run.strip("entropy").html)  # new page/signal
    assert page.locator(".tw-strip").get_attribute("data-signal") == "entropy"
    page.locator(".t").nth(3).click()
    page.locator(".t").nth(3).click()  # a second click deselects
    assert page.evaluate("harness.sent") == [5, 3, None]
    assert not errors, errors
