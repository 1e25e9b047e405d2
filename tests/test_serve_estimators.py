"""Uncertainty estimators in the dashboard (a `serve` process on tiny:llama): after a
generation, and for each response of a group in rollouts mode, the sequence-score panel shows
each estimator's score, the strip can be colored by an estimator's per-token contributions, and
a click on a token selects it there as in every view. Expected values are computed here from the
run's (the group's) own table, downloaded as CSV: -log P and the entropies of its tokens."""
from __future__ import annotations

import pandas as pd
import pytest

from pages import ALL_MARKED, FIND, fill, wait_until, watched_page
from test_serve_generate import VIEW, VIEWPORT, generate
from test_serve_rollouts import ANSWER, QUESTION, picker, shown_response


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


def scores(page) -> dict[str, float]:
    """The sequence-score panel's legend: estimator -> score."""
    names = page.evaluate(f"() => ({VIEW})('Sequence scores').data.map(t => t.name)")
    return {name: float(score) for name, score in (label.split(" = ") for label in names)}


@pytest.mark.slow
def test_rollouts_mode_shows_each_responses_estimators(server, browser):
    """Two responses of four tokens (no critical-token search): the panel and the strip of the
    response on show hold its own scores and contributions; another response picked, its own."""
    with watched_page(browser, server, viewport=VIEWPORT, accept_downloads=True) as page:
        page.get_by_text("rollouts", exact=True).click()
        page.get_by_role("button", name="Run rollouts").wait_for(timeout=10_000)
        page.locator("textarea").fill(QUESTION)
        fill(page, "Answer", ANSWER)
        fill(page, "Responses", 2)
        fill(page, "New tokens", 4)
        page.get_by_text("for the first wrong response").click()  # (unticks the critical-token search)
        page.get_by_role("button", name="Run rollouts").click()
        page.locator(".tw-status", has_text="2 responses").wait_for(timeout=60_000)
        page.wait_for_function(f"() => ({FIND})().plots.length === 5", timeout=20_000)
        with page.expect_download() as download:
            page.get_by_role("button", name="Group table (CSV)").click()
        table = pd.read_csv(download.value.path())

        page.locator("select", has=page.locator("option", has_text="contrib_msp")).select_option("contrib_msp")
        page.locator(".tw-legend b", has_text="contrib_msp").wait_for(timeout=10_000)
        for response in (shown_response(page), 1 - shown_response(page)):
            picker(page).select_option(index=response)
            rows = table[table["response"] == response]
            msp = -rows["logprob"].sum()  # -log P of the response
            wait_until(page, f"(msp) => Math.abs(parseFloat(({VIEW})('Sequence scores').data[0].name.split(' = ')[1])"
                       " - msp) <= 1e-3 * msp", msp, f"response {response}'s msp is not {msp:.4g} in the score panel")
            shown = scores(page)
            assert shown["mean_entropy"] == pytest.approx(rows["entropy"].mean(), rel=1e-3)
            assert shown["surprisal_max"] == pytest.approx(-rows["logprob"].min(), rel=1e-3)
            # The strip: each token's contribution to msp, its surprisal.
            assert page.locator(".tw-strip").get_attribute("data-signal") == "contrib_msp"
            strip = [float(v) for v in page.locator(".tw-text .t").evaluate_all("ts => ts.map(t => t.dataset.v)")]
            assert strip == pytest.approx((-rows["logprob"]).tolist(), rel=1e-3)

