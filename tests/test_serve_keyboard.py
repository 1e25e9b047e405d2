"""The dashboard by keyboard and for assistive technology, in a browser (a `serve` process on
tiny:llama): tokens reached by Tab and moved along by the arrow keys, each named with its
value; a visible focus ring; every control named; readable contrast."""
from __future__ import annotations

import pandas as pd
import pytest

from pages import ALL_MARKED, FIND, wait_until, watched_page

VIEWPORT = {"width": 1200, "height": 900}
TEXT = "The capital of France is Paris."
# The focused element, through the shadow roots Panel draws in: (its tag, data-i, text).
FOCUSED = """() => {
  let element = document.activeElement;
  while (element && element.shadowRoot && element.shadowRoot.activeElement) element = element.shadowRoot.activeElement;
  return element ? [element.tagName, element.dataset.i || null, element.textContent] : null;
}"""


def tab_until(page, wanted, limit: int = 30):
    """Press Tab until `wanted(focused)` holds (`focused`: what FOCUSED returns); that focused."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused and wanted(focused):
            return focused
    pytest.fail(f"{limit} presses of Tab never reached it")


def contrast(color: str) -> float:
    """WCAG contrast ratio of the CSS color 'rgb(r, g, b)' on white."""
    def linear(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (float(v) for v in color[color.index("(") + 1:color.index(")")].split(",")[:3])
    luminance = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    return 1.05 / (luminance + 0.05)


@pytest.mark.slow
def test_tokens_by_keyboard(server, browser):
    """Issue 15, item 11: Tab reaches the strip's tokens; the arrow keys move the selection
    along it, into every view; each token's accessible name holds its value (the run's table,
    downloaded, says which); the focused button shows a ring; the 'truncate' box has a name;
    the model's name in the strip reads at 4.5:1 or more."""
    with watched_page(browser, server, viewport=VIEWPORT, accept_downloads=True) as page:
        page.get_by_role("checkbox", name="truncate a text longer than the model's context").wait_for(timeout=10_000)
        page.locator("textarea").fill(TEXT)
        page.locator("textarea").focus()
        tab_until(page, lambda focused: focused[0] == "BUTTON" and focused[2].strip() == "Analyze")
        ring = page.get_by_role("button", name="Analyze").evaluate(
            "b => [getComputedStyle(b).outlineStyle, parseFloat(getComputedStyle(b).outlineWidth)]")
        assert ring[0] == "solid" and ring[1] >= 2, ring
        page.keyboard.press("Enter")
        page.locator(".tw-status", has_text="tokens analyzed").wait_for(timeout=60_000)
        page.wait_for_function(f"() => ({FIND})().plots.length === 2", timeout=20_000)
        with page.expect_download() as download:
            page.get_by_role("button", name="Table (CSV)").click()
        table = pd.read_csv(download.value.path())

        assert tab_until(page, lambda focused: focused[1] is not None)[1] == "0"  # the first token
        for key, position in (("ArrowRight", 1), ("ArrowRight", 2), ("ArrowRight", 3), ("ArrowLeft", 2),
                              ("End", len(table) - 1), ("Home", 0), ("ArrowRight", 1), ("ArrowRight", 2)):
            page.keyboard.press(key)
            wait_until(page, ALL_MARKED, position, f"{key} did not select token {position} in every view",
                       timeout_ms=30_000)  # a busy 2-core machine; a lost key press still fails
            assert page.evaluate(FOCUSED)[1] == str(position)
            page.wait_for_timeout(300)  # the server's batch for this key settles before the next (as a user's pace)
        name = f"#2 {table.loc[2, 'token']!r}: {table.loc[2, 'surprisal']:.4g}"
        assert page.get_by_role("option", name=name, exact=True).count() == 1
        assert page.get_by_role("option", name=name, exact=True).get_attribute("aria-selected") == "true"
        model_color = page.locator(".tw-model").evaluate("element => getComputedStyle(element).color")
        assert contrast(model_color) >= 4.5, model_color


@pytest.mark.slow
def test_a_tooltip_at_the_right_edge_stays_on_the_page(server, browser):
    """Issue 15, item 9: at a 900 px viewport, the tooltip of the last token of a long line
    opens leftwards: the page stays 900 px wide (it grew to 1,008 px)."""
    width = 900
    with watched_page(browser, server, viewport={"width": width, "height": 900}) as page:
        page.locator("textarea").fill("The capital of France is Paris and the river runs through the valley. " * 3)
        page.get_by_role("button", name="Analyze").click()
        page.locator(".tw-status", has_text="tokens analyzed").wait_for(timeout=60_000)
        rightmost = page.evaluate(f"""() => {{
          const tokens = Array.from(({FIND})().strips[0].querySelectorAll('.t'));
          const right = t => t.getBoundingClientRect().right;
          return tokens.reduce((a, b) => right(b) > right(a) ? b : a).dataset.i;
        }}""")
        page.locator(f'.tw-text .t[data-i="{rightmost}"]').hover()
        page.wait_for_timeout(300)
        assert page.evaluate("() => document.scrollingElement.scrollWidth") <= width
