"""The served page: a real `serve` process on a tiny random model, fetched over HTTP (and,
when Chromium and Playwright are installed, driven in a headless browser).

Offline assets: the page must reference no CDN, and everything it loads must come from
the same server.
"""
from __future__ import annotations

import asyncio
import html
import re
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pandas as pd
import panel
import pytest

from pages import (ALL_MARKED, FIND, LATENCY_LIMIT_MS, MARKED, ROOT, WORKBENCH_SERVE, artifact, click_and_time,
                   click_latencies, click_point, fill, get, report_latencies, start_server, stop_server, wait_until,
                   watched_page)
import workbench.samplers as S
from workbench.errors import WorkbenchError
from workbench.model.tiny import tiny_model
from workbench.widgets import serve
from workbench.widgets.dashboard import DEFAULT_TEXT, SAMPLER_CHOICES, Dashboard


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


# Click token `position` in the strip; resolve with the milliseconds until every view shows it.
CLICK_AND_TIME = click_and_time(
    f"(({{plots}}, marked) => position => plots.every(plot => marked(plot, position)))(({FIND})(), {MARKED})", "arg")
# Page coordinates of the point at x = `position` of the first chart (the signal per token).
POINT = f"""
(position) => {{
  const plot = ({FIND})().plots[0], layout = plot._fullLayout, trace = plot._fullData[0];
  const i = Array.from(trace.x).indexOf(position), box = plot.getBoundingClientRect();
  return [box.left + layout._size.l + layout.xaxis.l2p(position),
          box.top + layout._size.t + layout.yaxis.l2p(trace.y[i])];
}}
"""
LATENCY_CLICKS = 12


def long_text(tokenizer, n_tokens: int) -> str:
    sentence = "The capital of France is Paris and the river runs through the valley."
    text = sentence
    while len(tokenizer(text).input_ids) < n_tokens:
        text += " " + sentence
    while len(tokenizer(text).input_ids) > n_tokens:
        text = text[:-1]
    assert len(tokenizer(text).input_ids) == n_tokens
    return text


def analyze(page, text: str, shows: str) -> None:
    """Analyze `text`; wait until the strip shows `shows` (a part of the analyzed text)."""
    page.locator("textarea").fill(text)
    page.get_by_role("button", name="Analyze").click()
    page.locator(".tw-text", has_text=shows).wait_for(timeout=60_000)
    page.locator(".tw-status", has_text="tokens analyzed").wait_for(timeout=10_000)


@pytest.mark.slow
def test_linked_views_in_a_browser(server, browser, tmp_path):
    """As a person: type a text, pick the logit lens, analyze, click a token, click a chart
    point, change the signal, download the table and a figure, see an error."""
    text = "Tokens matter:\n  the capital of France is Paris & more."
    with watched_page(browser, server, viewport={"width": 1200, "height": 900}, accept_downloads=True) as page:
        page.get_by_role("button", name="logit_lens").click()
        analyze(page, text, "Paris & more.")
        assert page.locator(".tw-text").inner_text() == text
        assert "tokens analyzed with tiny:llama" in page.locator(".tw-status").inner_text()
        page.wait_for_function(f"() => ({FIND})().plots.length === 3", timeout=20_000)

        # A token clicked in the strip is selected in every view.
        page.locator(".tw-text .t").nth(4).click()
        wait_until(page, ALL_MARKED, 4, "clicking token 4 did not select it in every view")
        assert "#4" in page.locator(".tw-info").inner_text()

        # A point clicked in the signal chart is selected in the strip and the other views.
        click_point(page, POINT, 9)
        wait_until(page, ALL_MARKED, 9, "clicking the chart's point 9 did not select token 9 in every view")

        # Another signal recolors the strip and redraws the chart; the selection stays.
        page.locator("select", has=page.locator("option", has_text="entropy")).select_option("entropy")
        page.locator(".tw-legend b", has_text="entropy").wait_for(timeout=10_000)
        wait_until(page, f"() => ({FIND})().plots[0].layout.title.text.startsWith('entropy')", None,
                   "the chart did not switch to entropy")
        wait_until(page, ALL_MARKED, 9, "the selection was lost when the signal changed")
        page.locator(".tw-text .t").nth(7).hover()
        page.screenshot(path=artifact("serve.png"), full_page=True)

        # Exports: the table as CSV and Parquet, a figure as standalone HTML.
        n_tokens = page.locator(".tw-text .t").count()
        with page.expect_download() as download:
            page.get_by_role("button", name="Table (CSV)").click()
        table = pd.read_csv(download.value.path())
        assert len(table) == n_tokens and list(table.columns[:3]) == ["position", "token_id", "token"]
        with page.expect_download() as download:
            page.get_by_role("button", name="Table (Parquet)").click()
        parquet = pd.read_parquet(download.value.path())
        assert len(parquet) == n_tokens and parquet["position"].tolist() == table["position"].tolist()
        with page.expect_download() as download:
            page.get_by_role("button", name="HTML").first.click()
        assert download.value.suggested_filename == "tokens-signal.html"
        exported = Path(download.value.path()).read_text(encoding="utf-8")
        assert "entropy per token" in exported and not re.search(r"<script[^>]*\ssrc=", exported)

        # Generation (the model has it): a greedy continuation, shown in the same views.
        page.get_by_text("generate", exact=True).click()
        page.locator("select", has=page.locator("option", has_text="greedy")).select_option("greedy")
        fill(page, "New tokens", 6)
        page.get_by_role("button", name="Generate").click()
        page.locator(".tw-status", has_text="6 tokens generated").wait_for(timeout=60_000)
        assert page.locator(".tw-text").inner_text().startswith(text)
        page.get_by_text("analyze", exact=True).click()

        # Chat messages are parsed into roles; bad input is one clear line.
        page.get_by_text("Chat messages").click()
        analyze(page, "user: What is the capital of Italy?\nassistant: Rome.", "Rome.")
        assert "capital of Italy?" in page.locator(".tw-text").inner_text()
        page.locator("textarea").fill("")
        page.get_by_role("button", name="Analyze").click()
        page.locator(".tw-status", has_text="Error: no chat messages").wait_for(timeout=10_000)


@pytest.mark.slow
def test_a_text_longer_than_5000_characters_is_analyzed_whole(server, browser):
    """The text box takes a long text whole (Panel's default cuts at 5,000 characters); what
    is too long for the model is the model's to refuse."""
    import workbench as wb

    tokenizer = wb.load("tiny:llama").tokenizer
    text = " ".join(["The capital of France is Paris and the river runs through the valley."] * 90)
    assert len(text) > 6000 and len(tokenizer(text).input_ids) < 4096  # (the server's context)
    with watched_page(browser, server, viewport={"width": 1200, "height": 900}) as page:
        analyze(page, text, text[:40])
        assert page.locator("textarea").input_value() == text
        assert f"{len(tokenizer(text).input_ids)} tokens analyzed" in page.locator(".tw-status").inner_text()


@pytest.mark.slow
def test_a_2000_token_run_is_paged_and_clicks_are_fast(server, browser):
    """Latency from a click on a token to every view showing it, on a 2,000-token run with
    the logit lens (strip paged by 400 tokens, chart decimated, heatmap binned)."""
    import workbench as wb

    text = long_text(wb.load("tiny:llama").tokenizer, 2000)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(server)
    page.get_by_role("button", name="logit_lens").click()
    analyze(page, text, text[:40])
    assert "2000 tokens analyzed" in page.locator(".tw-status").inner_text()
    page.get_by_text("tokens 0–399 of 2000").wait_for(timeout=10_000)
    assert page.locator(".tw-text .t").count() == 400  # one page in the DOM
    page.wait_for_function(f"() => ({FIND})().plots.length === 3", timeout=20_000)

    latencies = click_latencies(page, CLICK_AND_TIME, [5 + 29 * k for k in range(LATENCY_CLICKS)])
    median = report_latencies("latency.json", "click-to-all-views latency on 2000 tokens", latencies, tokens=2000)
    assert median < LATENCY_LIMIT_MS, latencies

    # A chart point on another page turns the strip to that page, with the token selected.
    click_point(page, POINT, 1500)
    wait_until(page, ALL_MARKED, 1500, "clicking position 1500 in the chart did not select it everywhere")
    assert page.get_by_text("tokens 1200–1599 of 2000").is_visible()
    page.screenshot(path=artifact("serve-long.png"), full_page=True)
    page.close()


@pytest.mark.slow
def test_the_command_on_the_embedded_model(browser, tmp_path):
    """`workbench serve` as a user starts it (the embedded SmolLM2): the capitals text, the
    logit lens, and the wrong capital selected. The screenshot is the README's."""
    log_path = tmp_path / "server.log"
    process, url = start_server(log_path, WORKBENCH_SERVE)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        page.get_by_role("button", name="logit_lens").click()
        analyze(page, "The capital of France is Paris. The capital of Italy is Madrid.", "Madrid.")
        page.wait_for_function(f"() => ({FIND})().plots.length === 3", timeout=20_000)
        page.locator(".tw-text .t", has_text="Madrid").click()
        position = int(page.locator(".tw-text .t", has_text="Madrid").get_attribute("data-i"))
        wait_until(page, ALL_MARKED, position, "selecting ' Madrid' did not reach every view")
        title = page.evaluate(f"() => ({FIND})().plots[1].layout.title.text")
        assert "Madrid" in title
        page.screenshot(path=artifact("serve-smollm2.png"), full_page=True)
        page.close()
    finally:
        stop_server(process)
    assert "127.0.0.1" in log_path.read_text() and "Traceback" not in log_path.read_text()


def temperature_fields(page):
    """The page's visible labels of a temperature input."""
    return page.locator("label", has_text=re.compile("temperature", re.IGNORECASE)).filter(visible=True)


@pytest.mark.slow
def test_one_temperature_field_per_sampling_mode_in_a_browser(server, browser):
    """Generate and rollouts modes each show one temperature field, whatever the sampler that
    uses one, and the temperature typed there is the one the sampler ran at."""
    from playwright.sync_api import expect

    with watched_page(browser, server, viewport={"width": 1200, "height": 900}, accept_downloads=True) as page:
        page.get_by_role("button", name="Analyze").wait_for(timeout=10_000)
        expect(temperature_fields(page)).to_have_count(0)  # analyze mode samples nothing
        page.get_by_text("generate", exact=True).click()
        page.get_by_role("button", name="Generate").wait_for(timeout=10_000)
        expect(temperature_fields(page)).to_have_count(1)  # (top-p)
        sampler = page.locator("select", has=page.locator("option", has_text="gumbel"))
        for name in ("top-h", "gumbel", "temperature"):  # (greedy between: each choice changes the count)
            sampler.select_option("greedy")
            expect(temperature_fields(page), "greedy uses no temperature").to_have_count(0)
            sampler.select_option(SAMPLER_CHOICES.get(name, name))  # (gumbel's option says what it is)
            expect(temperature_fields(page), f"sampler {name}").to_have_count(1)
        for field, typed, message in (("Temperature", 0, "Temperature must be greater than 0; got 0"),
                                      ("Temperature", -2, "Temperature must be greater than 0; got -2"),
                                      ("New tokens", 5000, "New tokens must be at least 1 and at most 1024, a whole "
                                                           "number; got 5000")):
            fill(page, field, typed)  # shown as typed: refused by name, not clamped to another value
            page.get_by_role("button", name="Generate").click()
            page.locator(".tw-status.error", has_text=message).wait_for(timeout=10_000)
            fill(page, field, {"Temperature": 1, "New tokens": 4}[field])
        fill(page, "Temperature", 0.5)
        fill(page, "New tokens", 4)
        page.get_by_role("button", name="Generate").click()
        page.locator(".tw-status", has_text="4 tokens generated").wait_for(timeout=60_000)
        assert "(temperature 0.5)" in page.locator(".tw-status").inner_text()
        with page.expect_download() as download:
            page.get_by_role("button", name="Table (CSV)").click()
        table = pd.read_csv(download.value.path())
        assert table.loc[table["generated"], "temperature"].tolist() == [0.5] * 4  # each step's temperature

        page.get_by_text("rollouts", exact=True).click()
        page.get_by_role("button", name="Run rollouts").wait_for(timeout=10_000)
        page.locator("label", has_text="Answer").wait_for(timeout=10_000)  # (shown after the sampler is set)
        expect(temperature_fields(page)).to_have_count(1)  # (the temperature sampler)
        fill(page, "Temperature", 0.7)
        fill(page, "Responses", 2)
        fill(page, "New tokens", 3)
        page.get_by_text("for the first wrong response").click()  # no critical-token search
        page.get_by_role("button", name="Run rollouts").click()
        page.locator(".tw-status", has_text="2 responses (").wait_for(timeout=60_000)  # (not "sampling 2 responses")
        assert "(temperature 0.7)" in page.locator(".tw-status").inner_text()


def finish(coroutine):
    """What `coroutine` returns, run in an event loop of its own thread (this thread's may be
    Playwright's, running)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_one_temperature_control_per_sampling_mode_reaches_the_sampler():
    """Each sampling mode has one temperature control for every sampler that uses one (none
    for greedy); its value is the temperature of the sampler that generate and rollouts get,
    and the one each generated step ran at."""
    model = tiny_model("llama")
    dashboard = Dashboard(model, threading.Lock())
    sampling = dashboard.sampler_controls

    def temperature_fields():
        return [w for w in sampling if w.visible and "temperature" in w.name.lower()]

    # The sampler each choice must give at temperature 0.6, with the dashboard's default parameters.
    expected = {"greedy": S.Greedy(), "temperature": S.Temperature(0.6), "gumbel": S.Gumbel(0.6),
                "top-k": S.TopK(50, 0.6), "top-p": S.TopP(0.9, 0.6), "min-p": S.MinP(0.1, 0.6),
                "top-h": S.TopH(0.4, 0.6)}
    for mode in ("generate", "rollouts"):
        dashboard.mode.value = mode
        assert len(temperature_fields()) == 1
        for name, sampler in expected.items():
            sampling.sampler.value = name
            sampling.temperature.value = 0.6
            fields = temperature_fields()
            assert fields == [] if name == "greedy" else len(fields) == 1 and fields[0] is sampling.temperature
            assert sampling.options()["sampler"] == sampler, (mode, name)

    dashboard.mode.value = "generate"
    sampling.sampler.value, sampling.temperature.value, sampling.max_new_tokens.value = "temperature", 0.5, 4
    run = finish(dashboard.compute("generate"))
    assert run.table.loc[run.table["generated"], "temperature"].tolist() == [0.5] * 4
    dashboard.mode.value = "rollouts"  # (back to the last sampler chosen in this mode: top-h)
    sampling.sampler.value, sampling.temperature.value = "temperature", 0.7
    dashboard.controls["rollouts"].n.value, sampling.max_new_tokens.value = 2, 3
    dashboard.controls["rollouts"].critical_first.value = False
    assert finish(dashboard.compute("rollouts")).meta["sampler"] == "temperature 0.7"


def test_the_status_names_the_sampler_chosen():
    """After a generation, the status line names the sampler as chosen, with its parameters,
    in the words of the sampling chart's title. (Gumbel-max at temperature T is the
    temperature sampler: every sampler draws by Gumbel-max; the status names both.)"""
    dashboard = Dashboard(tiny_model("llama"), threading.Lock())
    sampling = dashboard.sampler_controls
    dashboard.mode.value = "generate"
    sampling.max_new_tokens.value = 2
    chosen = (("gumbel", None, 1.0, "gumbel, that is temperature 1"), ("greedy", None, 1.0, "greedy"),
              ("top-p", 0.9, 0.7, "top-p 0.9, temperature 0.7"), ("top-k", 20, 1.5, "top-k 20, temperature 1.5"),
              ("top-h", 0.3, 1.0, "top-h 0.3, temperature 1"), ("temperature", None, 0.5, "temperature 0.5"))
    for name, value, temperature, label in chosen:
        sampling.sampler.value, sampling.temperature.value = name, temperature
        if value is not None:
            sampling.sampler_value.value = value
        finish(dashboard.go())
        assert f"with {dashboard.model.name} ({label}) in " in dashboard.status.object, (name, dashboard.status.object)
        assert "((" not in dashboard.status.object
        titles = [figure.layout.title.text for figure in dashboard.drawn.values()
                  if (figure.layout.title.text or "").startswith("Generation with")]
        assert titles == [f"Generation with {label.split('that is ')[-1]}: entropy and kept set per step"], name


def test_the_sampler_fields_and_the_cli_flags_read_one_table(monkeypatch):
    """A sampler's default and allowed values, changed in `workbench.sampler_parameters`,
    change the dashboard's field, the CLI's flag and a spec string's example alike."""
    from dataclasses import replace

    from workbench import sampler_parameters
    from workbench.cli.main import build_parser, sampler_from_args
    from workbench.sampler_parameters import Range

    top_p = replace(sampler_parameters.BY_NAME["top-p"], default=0.8, allowed=Range(0.5, 1))
    monkeypatch.setitem(sampler_parameters.BY_NAME, "top-p", top_p)
    dashboard = Dashboard(tiny_model("llama"), threading.Lock())
    sampling = dashboard.sampler_controls
    dashboard.mode.value = "generate"
    assert (sampling.sampler.value, sampling.sampler_value.value) == ("top-p", 0.8)
    assert sampling.options()["sampler"] == S.TopP(0.8)
    args = build_parser().parse_args(["generate", "x", "--sampler", "top-p"])
    assert sampler_from_args(args) == S.TopP(0.8)
    with pytest.raises(WorkbenchError, match="needs a value, e.g. top-p:0.8"):
        S.from_spec("top-p")
    sampling.sampler_value.value = 0.4
    with pytest.raises(WorkbenchError, match="top-p's p must be at least 0.5 and at most 1; got 0.4"):
        sampling.options()
    with pytest.raises(WorkbenchError, match=re.escape("--top-p must be in [0.5, 1], got 0.4")):
        sampler_from_args(build_parser().parse_args(["generate", "x", "--sampler", "top-k", "--top-p", "0.4"]))


@pytest.mark.parametrize("name, refused, allowed", [
    ("top-k", [0, -3], [1, 200]), ("top-p", [0, 1.01], [1e-3, 1]), ("min-p", [0, 1.5], [1e-3, 1]),
    ("top-h", [0, 1.2], [1e-3, 1]),
])
def test_the_cli_and_the_dashboard_refuse_the_same_values(name, refused, allowed):
    """At the value that switches a rule off (DESIGN.md, Sampling: top-k 0, min-p 0, top-H 0)
    and outside [0, 1] for the probability thresholds, the CLI's flag and the dashboard's
    field both refuse; just inside, both sample with that value."""
    from workbench.cli.main import build_parser, sampler_from_args

    dashboard = Dashboard(tiny_model("llama"), threading.Lock())

    sampling = dashboard.sampler_controls
    dashboard.mode.value = "generate"
    sampling.sampler.value = name
    flag = {"top-k": "--top-k", "top-p": "--top-p", "min-p": "--min-p", "top-h": "--alpha"}[name]
    for value in refused + allowed:
        sampling.sampler_value.value = value
        args = build_parser().parse_args(["generate", "x", "--sampler", name, flag, str(value)])
        if value in refused:
            with pytest.raises(WorkbenchError, match=f"{name}'s"):
                sampling.options()
            with pytest.raises(WorkbenchError, match=flag):
                sampler_from_args(args)
        else:
            assert sampler_from_args(args) == sampling.options()["sampler"] == S.from_spec(f"{name}:{value}")


def test_the_logit_lens_is_named_as_the_slow_part_while_it_runs(monkeypatch):
    """While an analysis with the logit lens runs, the status says that the lens is what takes
    longest; without it, it does not."""
    model = tiny_model("llama")
    analyze = model.analyze

    def slow_analyze(**kwargs):
        time.sleep(1.2)  # (the status is refreshed every 0.5 s while the work runs)
        return analyze(**kwargs)

    monkeypatch.setattr(model, "analyze", slow_analyze)
    dashboard = Dashboard(model, threading.Lock())
    dashboard.controls["analyze"].signals.value = ["logit_lens"]
    finish(dashboard.compute("analyze"))  # (the status still shows the work, as nothing showed the run)
    working = html.unescape(dashboard.status.object)
    assert "Working" in working and "the logit lens reads every layer through the lm_head and takes longest" in working
    dashboard.controls["analyze"].signals.value = []
    finish(dashboard.compute("analyze"))
    assert "Working" in dashboard.status.object and "logit lens" not in dashboard.status.object


@pytest.mark.slow
def test_chat_status_says_the_template_added_its_system_prompt(smol):
    """SmolLM2's chat template writes its own system prompt before messages without one: the
    status says so and how to replace it, in each mode; after a 'system:' line it says nothing."""
    dashboard = Dashboard(smol, threading.Lock())
    sampling = dashboard.sampler_controls
    dashboard.input_kind.value = "Chat messages"
    sampling.max_new_tokens.value = 2
    note = ("The model's chat template added its default system prompt (\"You are a helpful AI assistant named "
            "SmolLM, trained by Hugging Face\"); to replace it, start the chat messages with a 'system:' line.")
    for mode in ("analyze", "generate"):
        dashboard.mode.value = mode
        dashboard.text.value = "user: What is the capital of Italy?"
        finish(dashboard.go())
        assert note in html.unescape(dashboard.status.object), (mode, dashboard.status.object)
        dashboard.text.value = "system: Answer in one word.\nuser: What is the capital of Italy?"
        finish(dashboard.go())
        status = html.unescape(dashboard.status.object)
        assert "with workbench:smollm2-135m" in status and "system prompt" not in status, (mode, status)


@pytest.mark.parametrize("sampler, field, typed, message", [
    ("gumbel", "temperature", 0, "Temperature must be greater than 0; got 0"),
    ("top-p", "temperature", -2, "Temperature must be greater than 0; got -2"),
    ("greedy", "max_new_tokens", 0, "New tokens must be at least 1 and at most 1024, a whole number; got 0"),
    ("greedy", "max_new_tokens", 5000, "New tokens must be at least 1 and at most 1024, a whole number; got 5000"),
    ("top-k", "sampler_value", 0, "top-k's k must be at least 1, a whole number; got 0"),
    ("top-k", "sampler_value", 2.5, "top-k's k must be at least 1, a whole number; got 2.5"),
    ("top-p", "sampler_value", 1.5, "top-p's p must be greater than 0 and at most 1; got 1.5"),
    ("min-p", "sampler_value", 0, "min-p's m must be greater than 0 and at most 1; got 0"),
])
def test_an_out_of_range_field_is_refused_by_name(sampler, field, typed, message):
    """A value outside a field's range is never replaced by another: the run is refused and the
    status says which field and what it allows."""
    model = tiny_model("llama")
    model.generate = lambda **kwargs: pytest.fail(f"generated with {kwargs}")
    dashboard = Dashboard(model, threading.Lock())
    sampling = dashboard.sampler_controls
    dashboard.mode.value = "generate"
    sampling.sampler.value = sampler
    getattr(sampling, field).value = typed
    finish(dashboard.go())
    assert f"Error: {message}" in html.unescape(dashboard.status.object) and "error" in dashboard.status.object


def test_rollout_fields_are_checked_too():
    model = tiny_model("llama")
    dashboard = Dashboard(model, threading.Lock())
    dashboard.mode.value = "rollouts"
    dashboard.controls["rollouts"].n.value = 0
    with pytest.raises(WorkbenchError, match="Responses must be at least 1 and at most 64, a whole number; got 0"):
        finish(dashboard.compute("rollouts"))
    dashboard.controls["rollouts"].n.value, dashboard.controls["rollouts"].critical_budget.value = 2, 5000
    with pytest.raises(WorkbenchError, match="prefixes at most must be at least 1 and at most 1024"):
        dashboard.controls["rollouts"].critical_options()


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


def test_the_truncate_box_keeps_the_first_tokens_of_a_long_text():
    """A text longer than the model's context (tiny:llama: 512 tokens) is refused with advice
    the dashboard can follow, and analyzed up to the context with its 'truncate' box."""
    model = tiny_model("llama")
    dashboard = Dashboard(model, threading.Lock())
    dashboard.text.value = "word " * 600
    with pytest.raises(WorkbenchError, match="dashboard: the 'truncate' box"):
        finish(dashboard.compute("analyze"))
    dashboard.controls["analyze"].truncate.value = True
    run = finish(dashboard.compute("analyze"))
    assert len(run) == 512 and run.meta["truncated_from"] == len(model.tokenizer("word " * 600)["input_ids"])


def test_chat_messages_name_what_is_wrong():
    from workbench.widgets.dashboard import parse_messages

    assert parse_messages("system: Be brief.\nuser: Hi\nthere") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi\nthere"}]
    with pytest.raises(WorkbenchError, match="'bot' is not a role; start each chat message"):
        parse_messages("bot: hello")
    with pytest.raises(WorkbenchError, match=r"chat message 2 \(user\) is empty: write its text after 'user:'"):
        parse_messages("system: Be brief.\nuser:   \n")


def test_the_status_says_why_generation_ended_early():
    dashboard = Dashboard(tiny_model("llama"), threading.Lock())
    sampling = dashboard.sampler_controls
    dashboard.mode.value = "generate"
    sampling.sampler.value, sampling.max_new_tokens.value = "greedy", 3
    run = finish(dashboard.compute("generate"))
    dashboard.show_result(run, 1.0)
    assert run.meta["stop_reason"] == "length" and "3 tokens generated with" in dashboard.status.object
    run.meta["stop_reason"] = "eos"
    dashboard.show_result(run, 1.0)
    assert "3 tokens generated (the model ended its text) with" in dashboard.status.object


def test_the_adaptive_temperature_sampler_is_offered():
    """Issue 15, item 10: the sampler picker offers HAPO's adaptive temperature, with the
    prompt's own token entropies as its reference: the run is the one `generate` makes with
    `samplers.Adaptive` built from an analysis of the prompt (a direct re-run), and the status
    names it. A one-token prompt, too short a reference, is refused in one line."""
    model = tiny_model("llama")
    dashboard = Dashboard(model, threading.Lock())
    sampling = dashboard.sampler_controls
    dashboard.mode.value = "generate"
    sampling.sampler.value = "adaptive"
    sampling.sampler_value.value, sampling.temperature.value, sampling.max_new_tokens.value = 0.3, 0.8, 4
    sampling.seed.value = 5
    finish(dashboard.go())
    expected = model.generate(DEFAULT_TEXT, sampler=S.Adaptive(model.analyze(DEFAULT_TEXT), 0.3, 0.8),
                              max_new_tokens=4, seed=5, progress=False)
    assert dashboard.run.table["token_id"].tolist() == expected.table["token_id"].tolist()
    temperatures = dashboard.run.table.loc[dashboard.run.table["generated"], "temperature"]
    assert temperatures.tolist() == expected.table.loc[expected.table["generated"], "temperature"].tolist()
    assert "(adaptive temperature 0.8 (HAPO, tau 0.3))" in html.unescape(dashboard.status.object)
    sampling.sampler_value.value = 1.5
    finish(dashboard.go())
    assert "Error: HAPO's tau must be at least 0 and at most 0.95; got 1.5" in html.unescape(dashboard.status.object)
    sampling.sampler_value.value, dashboard.text.value = 0.3, "Hi"
    finish(dashboard.go())
    assert "write a longer one" in html.unescape(dashboard.status.object)


def test_port_0_serves_on_the_free_port_it_names(browser, tmp_path):
    """`--port 0` asks for any free port: the printed address names the port the server took,
    and a page opened there connects (its websocket origin is allowed) and shows the app."""
    log_path = tmp_path / "server.log"
    code = "import workbench as wb; from workbench.widgets import serve; serve(wb.load('tiny:llama'), port=0)"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"at (http://127\.0\.0\.1:(\d+)/)", log_path.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        url, port = found.group(1), int(found.group(2))
        assert port != 0
        while get(url)[0] != 200:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        with watched_page(browser, url) as page:
            page.get_by_role("button", name="Analyze").wait_for(timeout=20_000)
    finally:
        stop_server(process)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


def test_a_page_closed_mid_write_prints_no_traceback_and_other_errors_still_do():
    """Tornado leaves a WebSocketClosedError in a future nobody reads when a page closes while
    the server writes to it; asyncio printed it as a traceback in the server's log. The serving
    loop drops exactly that error: an unretrieved ValueError is still reported."""
    code = """
import asyncio, gc
from tornado.websocket import WebSocketClosedError
from workbench.widgets.dashboard.server import _quiet_closed_pages
_quiet_closed_pages()
async def closed_page(): raise WebSocketClosedError()
async def other_error(): raise ValueError("still reported")
async def main():
    tasks = [asyncio.ensure_future(closed_page()), asyncio.ensure_future(other_error())]
    await asyncio.sleep(0.1)
    tasks.clear()
asyncio.get_event_loop().run_until_complete(main())
gc.collect()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "ValueError: still reported" in result.stderr
    assert "WebSocketClosedError" not in result.stderr
