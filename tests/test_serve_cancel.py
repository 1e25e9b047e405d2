"""Cancelling work in a browser (tests/slow_server.py: tiny:llama, slowed down to a minute on
a long input, well under a second on a short one): a page's Cancel button, and a page gone,
stop its work, so that another page's short analysis, queued behind it, comes at once; the
queued page says whose work it waits for."""
from __future__ import annotations

import sys
import time

import pytest

from pages import ROOT, start_server, stop_server, watched_page

LONG_TEXT = " ".join(["word"] * 40)  # over 64 tokens: slowed down to a minute
SHORT_TEXT = "The capital of France is Paris."  # not slowed down
SOON_MS = 10_000  # cancelled work gives way within this (it stops at the next module call: 2 s at most)
PAGE_GONE_MS = 30_000  # a closed page's session ends within 12 s (dashboard.server.UNUSED_SESSION_MS + CHECK_SESSIONS_MS)
VIEWPORT = {"width": 1200, "height": 900}


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("serve-slow") / "server.log"
    process, url = start_server(log_path, [sys.executable, str(ROOT / "tests" / "slow_server.py")])
    try:
        yield url
    finally:
        stop_server(process)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


def start_analysis(page, text: str) -> None:
    page.locator("textarea").fill(text)
    page.get_by_role("button", name="Analyze").click()


def analyzing_long_text(page) -> None:
    """Start the long analysis on `page`; return once it holds the model."""
    start_analysis(page, LONG_TEXT)
    page.locator(".tw-status", has_text="s: analyzing").wait_for(timeout=20_000)


@pytest.mark.slow
def test_cancel_gives_way_to_the_page_queued_behind(slow_server, browser):
    """Issue 15, item 3: page B's short analysis waits for page A's long one and says so
    (another page, what it does, for how long); A's Cancel button stops it within seconds
    (where it would run for a minute): A shows no result, B gets its own."""
    with watched_page(browser, slow_server, viewport=VIEWPORT) as first, \
            watched_page(browser, slow_server, viewport=VIEWPORT) as second:
        analyzing_long_text(first)
        start_analysis(second, SHORT_TEXT)
        second.locator(".tw-status", has_text="waiting for another page's work to finish: analyzing, running for "
                       ).wait_for(timeout=10_000)
        cancelled = time.monotonic()
        first.get_by_role("button", name="Cancel").click()
        first.locator(".tw-status", has_text="Cancelled after").wait_for(timeout=SOON_MS)
        second.locator(".tw-status", has_text="tokens analyzed").wait_for(timeout=SOON_MS)
        assert time.monotonic() - cancelled < SOON_MS / 1000
        assert second.locator(".tw-text").inner_text() == SHORT_TEXT
        assert first.locator(".tw-text").count() == 0  # nothing shown from the cancelled work
        assert not first.get_by_role("button", name="Cancel").is_visible()


@pytest.mark.slow
def test_a_page_gone_cancels_its_work(slow_server, browser):
    """Issue 15, item 3: a page closed during its long analysis stops that work when its
    session ends, so the next page's short analysis comes within seconds, not after a minute."""
    first = browser.new_page(viewport=VIEWPORT)
    first.goto(slow_server)
    analyzing_long_text(first)
    first.close()
    with watched_page(browser, slow_server, viewport=VIEWPORT) as second:
        start_analysis(second, SHORT_TEXT)
        second.locator(".tw-status", has_text="tokens analyzed").wait_for(timeout=PAGE_GONE_MS)
        assert second.locator(".tw-text").inner_text() == SHORT_TEXT
