"""The dashboard's compare mode in a real browser: `workbench serve --model tiny:llama
--reference tiny:qwen2` as a user starts it, the mode picked, a text compared against the
reference model and then under two contexts; every view follows a clicked token, gamma
redraws the acceptance view, and the downloaded table holds the numbers `model.compare`
gives in this process (a direct re-run)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from pages import ALL_MARKED, FIND, WORKBENCH_SERVE, artifact, fill, served, wait_until, watched_page
from workbench.widgets.dashboard.modes.compare import CONTEXT_LABEL, TWO_CONTEXTS

TEXT = "The capital of France is Paris."
CONTEXT = "Paris is in France. "
TITLES = "() => (" + FIND + ")().plots.map(p => ((p.layout.title || {}).text || ''))"


@pytest.fixture(scope="module")
def pair_server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("serve-compare") / "server.log"
    command = WORKBENCH_SERVE[:2] + ["--model", "tiny:llama", "--reference", "tiny:qwen2", "--port"]
    with served(log_path, command) as url:
        yield url


def status(page, pattern: str, timeout_ms: int = 60_000):
    page.locator(".tw-status", has_text=re.compile(pattern)).wait_for(timeout=timeout_ms)
    return page.locator(".tw-status").inner_text()


def downloaded_table(page) -> pd.DataFrame:
    """The table as Parquet (the tiny models' branches hold control characters that CSV readers split on)."""
    with page.expect_download() as download:
        page.get_by_role("button", name="Table (Parquet)").click()
    return pd.read_parquet(download.value.path())


@pytest.mark.slow
def test_compare_mode_in_a_browser(pair_server, browser):
    model, reference = wb.load("tiny:llama"), wb.load("tiny:qwen2")
    with watched_page(browser, pair_server, viewport={"width": 1280, "height": 1000}, accept_downloads=True) as page:
        page.get_by_text("compare", exact=True).click()
        page.get_by_role("button", name="Compare").wait_for(timeout=10_000)
        page.locator("textarea").fill(TEXT)  # the page's one text area
        fill(page, "Branches", 2)
        page.get_by_role("button", name="Compare").click()
        said = status(page, r"tokens compared: tiny:llama \(p\) against the reference tiny:qwen2")

        page.wait_for_function(f"() => ({FIND})().plots.length === 5", timeout=20_000)
        titles = page.evaluate(TITLES)
        for expected in ("Both next-token distributions", "Where the greedy choices differ", "Acceptance (q drafts"):
            assert any(title.startswith(expected) for title in titles), (expected, titles)

        # The numbers on the page are those of model.compare run here.
        want = model.compare(TEXT, reference=reference, branches=2, progress=False)
        table = downloaded_table(page)
        np.testing.assert_allclose(table["js"].astype(float), want.table["js"].astype(float), rtol=1e-6)
        np.testing.assert_allclose(table["acceptance"].astype(float), want.table["acceptance"].astype(float), rtol=1e-6)
        assert f"mean acceptance {want.table['acceptance'].astype(float).mean():.3f}" in said
        assert table["branch"].notna().sum() == 2

        # A token clicked in the strip (colored by JS) is selected in every view.
        assert page.evaluate(f"() => ({FIND})().strips[0].dataset.signal") == "js"
        page.locator(".tw-text .t").nth(3).click()
        wait_until(page, ALL_MARKED, 3, "clicking token 3 did not select it in every view")
        page.wait_for_function(f"() => ({FIND})().plots.some(p => p.layout.title.text.startsWith("
                               "'Prediction of token #3') && p.data.length === 2)", timeout=10_000)

        # gamma redraws the acceptance view.
        fill(page, "γ (draft length)", 8)
        page.wait_for_function(f"() => ({FIND})().plots.some(p => p.layout.title.text.includes('tokens/step at γ = 8'))",
                               timeout=10_000)
        page.screenshot(path=artifact("serve-compare.png"), full_page=True)

        # The same model under two contexts.
        page.locator("select", has=page.locator("option", has_text=TWO_CONTEXTS)).select_option(label=TWO_CONTEXTS)
        fill(page, CONTEXT_LABEL, CONTEXT)
        page.get_by_role("button", name="Compare").click()
        status(page, r"tokens compared: tiny:llama \(p\) against itself under the other context")
        want = model.compare(TEXT, context=CONTEXT, branches=2, progress=False)
        np.testing.assert_allclose(downloaded_table(page)["kl_pq"].astype(float), want.table["kl_pq"].astype(float),
                                   rtol=1e-6)

        # Nothing to compare is one clear line.
        fill(page, CONTEXT_LABEL, "")
        page.get_by_role("button", name="Compare").click()
        status(page, "Error: nothing to compare", timeout_ms=10_000)


def test_cancel_stops_the_reference_model_too():
    """A session's Cancel stops the compare mode's work within the reference model's forward too."""
    import threading

    import torch

    from workbench.widgets.dashboard.worker import Cancelled, Worker

    model, reference = wb.load("tiny:llama"), wb.load("tiny:qwen2")
    worker = Worker(model, threading.Lock(), reference)
    worker.cancel.set()
    with pytest.raises(Cancelled), worker.holding("comparing"):
        reference.hf(input_ids=torch.tensor([[1, 2, 3]]))
    assert not worker.lock.locked()
