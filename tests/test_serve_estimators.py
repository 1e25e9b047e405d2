"""Uncertainty estimators in the dashboard (a `serve` process on tiny:llama): after a
generation, the sequence-score panel shows each estimator's score, the strip can be colored by
an estimator's per-token contributions, and a click on a token selects it there as in every
view. Expected values come from the run's own table, downloaded as CSV."""
from __future__ import annotations

import pandas as pd
import pytest

from pages import ALL_MARKED, FIND, wait_until, watched_page
from test_serve_generate import VIEW, VIEWPORT, generate


@pytest.mark.slow
def test_generate_mode_shows_the_estimators(server, browser):
    with watched_page(browser, server, viewport=VIEWPORT, accept_downloads=True) as page:
        table = generate(page, 6, "greedy")
        generated = table[table["generated"]]
        names = page.evaluate(f"() => ({VIEW})('Sequence scores').data.map(t => t.name)")
        assert [name.split(" = ")[0] for name in names] == ["msp", "perplexity", "mean_entropy", "surprisal_max", "rauq"]
        msp = float(names[0].split(" = ")[1])
        assert msp == pytest.approx(generated["surprisal"].sum(), rel=1e-3)  # -log P of the generated tokens
        assert float(names[3].split(" = ")[1]) == pytest.approx(generated["surprisal"].max(), rel=1e-3)
        assert table["contrib_msp"].equals(table["surprisal"].where(table["generated"]))

        # The strip colored by msp's contributions: the prompt's tokens have none.
        page.locator("select", has=page.locator("option", has_text="contrib_msp")).select_option("contrib_msp")
        page.locator(".tw-legend b", has_text="contrib_msp").wait_for(timeout=10_000)
        assert page.locator(".tw-strip").get_attribute("data-signal") == "contrib_msp"

        # A click on a generated token selects it in the score panel too.
        position = int(generated["position"].iloc[2])
        page.locator(f'.tw-text .t[data-i="{position}"]').click()
        wait_until(page, ALL_MARKED, position, f"clicking token {position} did not select it in every view")
        shapes = page.evaluate(f"() => ({VIEW})('Sequence scores').layout.shapes.map(s => s.x0)")
        assert shapes == [position]
        contributions = page.evaluate(f"() => ({VIEW})('Sequence scores').data[0].customdata.map(c => c[0])")
        assert pd.Series(contributions[len(table) - len(generated):]).round(4).tolist() == \
            generated["surprisal"].round(4).tolist()
