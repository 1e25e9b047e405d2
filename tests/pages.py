"""What the browser tests share: Chromium driven by Playwright, a `serve` process on a free
port, a page watched for errors and foreign requests, scripts that read the dashboard's
views in the page, and click latencies measured and reported under artifacts/.
"""
from __future__ import annotations

import json
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
STARTUP_S = 60
LATENCY_LIMIT_MS = 400  # asserted with headroom for a busy 2-core CI machine; the target (200 ms) is reported


@contextmanager
def chromium():
    """Debian's Chromium launched by Playwright (never a downloaded browser); the test is
    skipped where either is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def artifact(name: str) -> Path:
    """Where a test writes `name` (a screenshot, measured latencies): ROOT/artifacts/name."""
    (ROOT / "artifacts").mkdir(exist_ok=True)
    return ROOT / "artifacts" / name


# ----- the server ---------------------------------------------------------------------------------
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


# tiny:llama's config says 512 positions; its rotary embedding has no hard limit, so the
# server lifts it to analyze the 2,000-token text of the latency test.
SERVER_CODE = ("import workbench as wb; from workbench.widgets import serve; m = wb.load('tiny:llama'); "
               "m.hf.config.max_position_embeddings = 4096; serve(m, port={port})")
# `workbench serve` as a user starts it (the embedded SmolLM2), for `start_server`'s `command`.
WORKBENCH_SERVE = [str(Path(sys.executable).parent / "workbench"), "serve", "--port"]


def start_server(log_path: Path, command: list[str] | None = None):
    """(process, base URL) of a `serve` process (on tiny:llama unless `command`, which gets
    the port appended), once it answers."""
    port = free_port()
    command = [sys.executable, "-c", SERVER_CODE.format(port=port)] if command is None else command + [str(port)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + STARTUP_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if get(url)[0] == 200:
                return process, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_server(process)
            pytest.fail(f"the server did not answer within {STARTUP_S} s:\n{log_path.read_text()}")
        time.sleep(0.5)


@contextmanager
def served(log_path: Path, command: list[str] | None = None):
    """The base URL of a `serve` process (`start_server`) for the block; stopped after it, and
    its log must show no traceback."""
    process, url = start_server(log_path, command)
    try:
        yield url
    finally:
        stop_server(process)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


def stop_server(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ----- the page -----------------------------------------------------------------------------------
@contextmanager
def watched_page(browser, url: str, **options):
    """A new page (`options`: Playwright's `new_page` keywords) at `url`. When the block
    ends, the page is closed; it must have shown no page error and loaded nothing from
    another host than `url`'s."""
    page = browser.new_page(**options)
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    yield page
    page.close()

    assert not errors, errors
    origin = urlparse(url).netloc
    foreign = [address for address in requests
               if not address.startswith(("blob:", "data:")) and urlparse(address).netloc != origin]
    assert not foreign, f"the page loaded assets from elsewhere: {foreign}"


def fill(page, label: str, value) -> None:
    """Type `value` into the input labelled `label` (the whole label) and commit it."""
    whole = page.locator("label", has_text=re.compile(f"^{re.escape(label)}$"))
    field = page.locator(".bk-input-group", has=whole).locator("input")
    field.fill(str(value))
    field.press("Enter")


def wait_until(page, script: str, arg, what: str, timeout_ms: int = 10_000) -> None:
    """Wait until page `script(arg)` holds; fail saying `what` went wrong otherwise."""
    try:
        page.wait_for_function(script, arg=arg, timeout=timeout_ms)
    except Exception:
        pytest.fail(f"{what} (within {timeout_ms} ms)")


def click_point(page, script: str, arg) -> None:
    """Move to the page coordinates `script(arg)` gives (a chart's point, a heatmap's cell)
    and click there."""
    x, y = page.evaluate(script, arg)
    page.mouse.move(x, y)
    page.mouse.click(x, y)


# Page scripts. Panel draws components in shadow roots: walk them.
FIND = """
() => {
  const found = {plots: [], strips: []};
  (function walk(root) {
    for (const e of root.querySelectorAll('*')) {
      if (e.classList.contains('js-plotly-plot')) found.plots.push(e);
      if (e.classList.contains('tw-strip')) found.strips.push(e);
      if (e.shadowRoot) walk(e.shadowRoot);
    }
  })(document);
  return found;
}
"""
# The chart whose title starts with `start`.
VIEW = f"(start) => ({FIND})().plots.find(p => ((p.layout.title || {{}}).text || '').startsWith(start))"
# The page coordinates of the data point (x, y) of `plot`, scrolled into view first.
PLOT_POINT = """
(plot, x, y) => {
  plot.scrollIntoView({block: 'center'});
  const box = plot.querySelector('.nsewdrag').getBoundingClientRect();
  return [box.left + plot._fullLayout.xaxis.l2p(x), box.top + plot._fullLayout.yaxis.l2p(y)];
}
"""
# Whether every view shows `position` selected: the strip, and each chart by its shape named
# "selection" (covering the position) or, for the next-token chart, its title.
MARKED = "(plot, position) => (plot.layout.shapes || []).some(s => s.name === 'selection' && s.x0 <= position " \
         "&& position <= s.x1) || ((plot.layout.title && plot.layout.title.text) || '').includes('#' + position + ' ')"
ALL_MARKED = f"""
(position) => {{
  const {{plots, strips}} = ({FIND})();
  const marked = {MARKED};
  return strips.length === 1 && strips[0].dataset.selected === String(position) && plots.length >= 2
    && plots.every(plot => marked(plot, position));
}}
"""


def click_and_time(done: str, position: str) -> str:
    """A page script of one argument `arg`: click the strip's token at `position` (a script
    expression of `arg`); resolve with the milliseconds until `done(arg)` holds (`done`: a
    script expression, evaluated before the click) and a frame is painted, or null after 10 s."""
    return f"""
async (arg) => {{
  const done = {done};
  const token = ({FIND})().strips[0].querySelector('.t[data-i="' + {position} + '"]');
  const frame = () => new Promise(resolve => requestAnimationFrame(resolve));
  const start = performance.now();
  token.click();
  while (!done(arg)) {{
    await frame();
    if (performance.now() - start > 10000) return null;
  }}
  await frame();  // painted
  return performance.now() - start;
}}
"""


# ----- latency ------------------------------------------------------------------------------------
def click_latencies(page, script: str, args) -> list[float]:
    """What `script` (made by `click_and_time`) resolves with for each of `args` in turn,
    each click after the previous update has settled."""
    latencies = []
    for k, arg in enumerate(args):
        page.wait_for_timeout(300)  # let the previous update settle
        latency = page.evaluate(script, arg)
        assert latency is not None, f"click {k} never reached every view"
        latencies.append(latency)
    return latencies


def report_latencies(name: str, what: str, latencies: list[float], **about) -> float:
    """Write artifacts/`name` (`about`, then the latencies' count, median, max and values),
    print `what`'s median and max; return the median."""
    median = statistics.median(latencies)
    artifact(name).write_text(json.dumps(
        {**about, "clicks": len(latencies), "median_ms": round(median, 1), "max_ms": round(max(latencies), 1),
         "latencies_ms": [round(t, 1) for t in latencies]}, indent=2))
    print(f"{what}: median {median:.0f} ms, max {max(latencies):.0f} ms")
    return median
