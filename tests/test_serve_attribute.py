"""Attribute mode in a browser (a `serve` process on tiny:llama): attribute a typed
continuation, click one of its tokens, and every view follows it; the source strip then shows
that target's attributions, which equal the matrix's row (another view) and what
model.attribute computes in this process for the same model and text."""
from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from pages import ALL_MARKED, FIND, PLOT_POINT, VIEW, click_point, fill, wait_until, watched_page

VIEWPORT = {"width": 1200, "height": 900}
PROMPT, CONTINUATION = "The capital of France is", " Paris."
# Whether the source strip shows `target`'s row: its title, and a number (not null, not NaN) just before
# the target (another target's row has none there).
SOURCES_OF = f"(target) => {{ const p = ({VIEW})('Sources of ' + target + ':'); " \
             "return !!p && Number.isFinite(p.data[0].z[0][p.data[0].x.indexOf(target - 1)]); }"
# The screen point of the matrix's cell (target row, first source column).
MATRIX_ROW = f"""
(target) => {{
  const plot = ({VIEW})('Attribution: target');
  return ({PLOT_POINT})(plot, plot.data[0].x[0], target);
}}
"""


@pytest.mark.slow
def test_clicking_a_target_recolors_the_sources(server, browser):
    expected = wb.load("tiny:llama").attribute(PROMPT, continuation=CONTINUATION, method="input_x_gradient",
                                               progress=False)
    targets = expected.arrays["attr_targets"].tolist()
    with watched_page(browser, server, viewport=VIEWPORT) as page:
        page.get_by_text("attribute", exact=True).click()
        page.get_by_role("button", name="Attribute").wait_for(timeout=10_000)
        page.locator("select", has=page.locator("option", has_text="integrated_gradients")).select_option(
            "input_x_gradient")
        fill(page, "Continuation", CONTINUATION)
        page.get_by_role("button", name="Attribute").click()
        page.locator(".tw-status", has_text=f"{len(targets)} tokens attributed").wait_for(timeout=60_000)
        page.wait_for_function(f"() => ({FIND})().plots.length === 4", timeout=20_000)
        for row, target in [(0, targets[0]), (len(targets) - 1, targets[-1])]:
            page.locator(f'.tw-text .t[data-i="{target}"]').click()
            wait_until(page, ALL_MARKED, target, f"clicking target {target} did not select it in every view")
            wait_until(page, SOURCES_OF, target, f"the source strip did not recolor for target {target}")
            sources = page.evaluate(f"() => ({VIEW})('Sources of {target}:').data[0].z[0]")
            shown = np.array([np.nan if v is None else v for v in sources], dtype=float)
            np.testing.assert_allclose(shown[:target], expected.arrays["attr_input_x_gradient"][row, :target],
                                       rtol=1e-4, atol=1e-6)
            matrix_row = page.evaluate(f"() => {{ const p = ({VIEW})('Attribution: target'); "
                                       f"return p.data[0].z[p.data[0].y.indexOf({target})]; }}")
            np.testing.assert_allclose(np.array([np.nan if v is None else v for v in matrix_row], float)[:target],
                                       shown[:target], rtol=1e-6)
        # a click on the matrix's row of the first target selects it everywhere
        click_point(page, MATRIX_ROW, targets[0])
        wait_until(page, ALL_MARKED, targets[0], "clicking the matrix's first row did not select its target")
