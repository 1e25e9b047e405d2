"""The served page: a real `serve` process on a tiny random model, fetched over HTTP (and,
when Chromium and Playwright are installed, driven in a headless browser).

Offline assets: the page must reference no CDN, and everything it loads must come from
the same server.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse

import panel
import pytest

from workbench.widgets import serve

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
STARTUP_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, ""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a `serve` process on tiny:llama; the process is killed afterwards."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    code = f"import workbench as wb; from workbench.widgets import serve; serve(wb.load('tiny:llama'), port={port})"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                if get(url)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within {STARTUP_S} s:\n{log_path.read_text()}")
            time.sleep(0.5)
        assert f"at http://127.0.0.1:{port}/" in log_path.read_text()  # the URL is printed
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class AssetParser(HTMLParser):
    """Script sources and stylesheet links of a page."""

    def __init__(self):
        super().__init__()
        self.assets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.assets.append(attrs["src"])
        elif tag == "link" and attrs.get("rel") == "stylesheet" and attrs.get("href"):
            self.assets.append(attrs["href"])


@pytest.mark.slow
def test_page_and_its_assets_come_from_the_server(server):
    status, page = get(server)
    assert status == 200 and "Token Workbench" in page
    assert "cdn." not in page.lower()
    parser = AssetParser()
    parser.feed(page)
    assert any("bokeh" in src for src in parser.assets)
    for src in parser.assets:
        assert not src.startswith(("http:", "https:", "//")), src
        assert get(urljoin(server, src))[0] == 200, src


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_analyze_in_a_browser(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    text = "Tokens matter:\n  the capital of France is Paris & more."
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 600})
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(server)
            page.locator("textarea").fill(text)
            page.get_by_role("button", name="Analyze").click()
            strip = page.locator(".tw-text")
            deadline = time.monotonic() + 60
            while not (strip.count() and strip.inner_text() == text):
                assert time.monotonic() < deadline, "the token strip never showed the new text"
                page.wait_for_timeout(200)
            assert "tokens analyzed with tiny:llama" in page.locator(".tw-status").inner_text()

            page.get_by_role("combobox").select_option("entropy")  # re-rendered, no new analysis
            page.locator(".tw-legend b", has_text="entropy").wait_for(timeout=10_000)
            tokens = page.locator(".tw-text .t")
            tokens.nth(4).click()
            assert page.locator(".tw-strip").get_attribute("data-selected") == "4"
            tokens.nth(7).hover()
            (ROOT / "artifacts").mkdir(exist_ok=True)
            page.screenshot(path=ROOT / "artifacts" / "serve.png", full_page=True)

            page.locator("textarea").fill("")
            page.get_by_role("button", name="Analyze").click()
            page.locator(".tw-status", has_text="Error: the text is empty").wait_for(timeout=10_000)
        finally:
            browser.close()
    origin = urlparse(server).netloc
    foreign = [url for url in requests if not url.startswith(("blob:", "data:")) and urlparse(url).netloc != origin]
    assert not foreign, f"the page loaded assets from elsewhere: {foreign}"


def test_serve_options_and_warning_for_public_hosts(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(panel, "serve", lambda app, **kwargs: calls.append((app, kwargs)))
    model = type("Stub", (), {"name": "stub"})()
    with pytest.warns(UserWarning, match="reachable from other machines"):
        serve(model, host="0.0.0.0", port=5999)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        serve(model, port=5998)
    (app, public), (_, local) = calls
    assert callable(app)  # one app per browser session
    assert public["address"] == "0.0.0.0" and public["port"] == 5999 and public["show"] is False
    assert set(public["websocket_origin"]) == {"0.0.0.0:5999", "localhost:5999", "127.0.0.1:5999"}
    assert local["address"] == "127.0.0.1" and set(local["websocket_origin"]) == {"localhost:5998", "127.0.0.1:5998"}
    assert "http://127.0.0.1:5998/" in capsys.readouterr().out
