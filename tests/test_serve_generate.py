"""Generate mode in a browser (a `serve` process on tiny:llama): after a generation, a click
on a token reaches every view, and the kept-set view shows the sampler that was chosen.
Expected values come from the run's own table (downloaded as CSV) and from the other views."""
from __future__ import annotations

import pandas as pd
import pytest

from pages import ALL_MARKED, FIND, VIEW, fill, wait_until, watched_page

VIEWPORT = {"width": 1200, "height": 900}
# The figure of each view by the start of its title.


def generate(page, new_tokens: int, sampler: str | None = None, **fields) -> pd.DataFrame:
    """Generate `new_tokens` with `sampler` (None: the default) and the fields typed as
    given (label: value); the run's table, downloaded as CSV."""
    page.get_by_text("generate", exact=True).click()
    page.get_by_role("button", name="Generate").wait_for(timeout=10_000)
    if sampler is not None:
        page.locator("select", has=page.locator("option", has_text="greedy")).select_option(sampler)
    for label, value in {"New tokens": new_tokens, **fields}.items():
        fill(page, label, value)
    page.get_by_role("button", name="Generate").click()
    page.locator(".tw-status", has_text=f"{new_tokens} tokens generated").wait_for(timeout=60_000)
    page.wait_for_function(f"() => ({FIND})().plots.length === 5", timeout=20_000)
    with page.expect_download() as download:
        page.get_by_role("button", name="Table (CSV)").click()
    return pd.read_csv(download.value.path())


def click_token(page, position: int) -> None:
    page.locator(f'.tw-text .t[data-i="{position}"]').click()
    wait_until(page, ALL_MARKED, position, f"clicking generated token {position} did not select it in every view")


@pytest.mark.slow
def test_a_click_after_generating_reaches_every_view(server, browser):
    """Issue 15, item 1: with the defaults (top-p, 8 new tokens), a click on a generated
    token updates every chart, not only the strip; the kept-set chart then shows the step
    of that token: its bars are the next-token chart's probabilities (another view, another
    array of the run), its orange bar (if any: the token may lie beyond the top 50) the
    clicked token."""
    with watched_page(browser, server, viewport=VIEWPORT) as page:
        table = generate(page, 8)
        generated = table.loc[table["generated"], "position"].tolist()
        for position in (generated[2], generated[-1]):
            click_token(page, position)
            top = page.evaluate(f"() => ({VIEW})('Prediction of').data[0].x")
            probs = page.evaluate(f"() => ({VIEW})('Step at').data[0].y")
            assert probs[:len(top) - 1] == pytest.approx(top[:len(top) - 1], rel=1e-3)
            colors = page.evaluate(f"() => ({VIEW})('Step at').data[0].marker.color")
            labels = page.evaluate(f"() => ({VIEW})('Step at').data[0].customdata")
            orange = [label for label, color in zip(labels, colors) if color == "#ff7f0e"]
            # (a random model's token may lie beyond its top 50)
            assert orange in ([], [repr(table.loc[position, "token"])[1:-1]])


@pytest.mark.slow
def test_the_kept_set_view_shows_the_chosen_sampler(server, browser):
    """Issue 15, item 2: with top-k 5 at temperature 0.7, the kept-set chart marks that
    sampler's kept set first, as large as the sampler recorded at the step (the table's
    `kept`), and compares no other top-k."""
    with watched_page(browser, server, viewport=VIEWPORT) as page:
        table = generate(page, 4, "top-k", k=5, Temperature=0.7)
        position = int(table.loc[table["generated"], "position"].iloc[1])
        click_token(page, position)
        names = page.evaluate(f"() => ({VIEW})('Step at').data.slice(1).map(t => t.name)")
        kept = int(table.loc[position, "kept"])
        assert names[0].startswith(f"top-k 5, temperature 0.7 (this run): keeps {kept}, "), names
        assert not any(name.startswith("top-k 20") for name in names), names
        assert page.evaluate(f"() => ({VIEW})('Step at').data[1].x[1]") == pytest.approx(kept - 0.6)
