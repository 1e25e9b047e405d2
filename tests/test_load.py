"""A bounded loopback load test of the dashboard: N browser sessions at once, each
analyzing its own text and selecting its own token, against one `serve` process.

Each session must end with its own text in its strip, its own selection in every view, no
page errors, and the server log must show no traceback: sessions share the model (under
its lock), never their runs or selections. Traffic goes to 127.0.0.1 only, and the test
stops by itself (every wait is bounded, the whole test within TIMEOUT_S).
"""
from __future__ import annotations

import asyncio
import time

import pytest

from pages import ALL_MARKED, CHROMIUM, CHROMIUM_ARGS, FIND, start_server, stop_server

N_SESSIONS = 4
TIMEOUT_S = 120
WORDS = ("river", "mountain", "harbour", "forest", "desert", "island")


def session_text(i: int) -> str:
    return f"Session {i}: the {WORDS[i]} is quiet tonight, and the {WORDS[i]} keeps its secrets."


async def one_session(browser, url: str, i: int) -> dict:
    """Analyze this session's text, select token 2 + i; return what the page shows."""
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(url)
    await page.get_by_role("button", name="logit_lens").click()
    await page.locator("textarea").fill(session_text(i))
    await page.get_by_role("button", name="Analyze").click()
    await page.locator(".tw-text", has_text=f"Session {i}:").wait_for(timeout=60_000)
    await page.wait_for_function(f"() => ({FIND})().plots.length >= 3", timeout=30_000)
    await page.locator(".tw-text .t").nth(2 + i).click()
    await page.wait_for_function(ALL_MARKED, arg=2 + i, timeout=30_000)
    return {"page": page, "context": context, "errors": errors}


async def run_sessions(url: str) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            sessions = await asyncio.gather(*(one_session(browser, url, i) for i in range(N_SESSIONS)))
            results = []
            for i, session in enumerate(sessions):  # after every session has acted: still its own state
                page = session["page"]
                results.append({
                    "text": await page.locator(".tw-text").inner_text(),
                    "status": await page.locator(".tw-status").inner_text(),
                    "marked": await page.evaluate(ALL_MARKED, 2 + i),
                    "errors": session["errors"],
                })
                await session["context"].close()
            return results
        finally:
            await browser.close()


@pytest.mark.slow
def test_concurrent_sessions_do_not_interfere(tmp_path):
    pytest.importorskip("playwright.async_api", reason="needs playwright (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")
    log_path = tmp_path / "server.log"
    process, url = start_server(log_path)
    started = time.monotonic()
    try:
        results = asyncio.run(asyncio.wait_for(run_sessions(url), TIMEOUT_S))
    finally:
        stop_server(process)
    elapsed = time.monotonic() - started
    for i, result in enumerate(results):
        assert result["text"] == session_text(i), f"session {i} shows another text: {result['text']!r}"
        assert "tokens analyzed with tiny:llama" in result["status"]
        assert result["marked"], f"session {i} lost its selection"
        assert not result["errors"], result["errors"]
    log = log_path.read_text()
    assert "Traceback" not in log and "ERROR" not in log, log
    print(f"{N_SESSIONS} concurrent sessions: {elapsed:.1f} s")
