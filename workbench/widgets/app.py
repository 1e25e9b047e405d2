"""The served dashboard (`workbench serve`): type a text or chat messages, analyze it (or,
in generate mode, continue it with a chosen sampler), and look at the result in linked
views: the token strip (paged by 400 tokens), the per-token chart of a signal, the
next-token distribution and every registered panel that has data in the run (logit lens,
routing, ...), one section per panel group. Clicking a token in the strip or a point in a
chart selects that token in every view; only what changed is sent to the browser (a
moved marker is a relayout): on a 2,000-token run a click reaches every view in about
150 ms (measured by tests/test_serve.py). Exports: the table as Parquet or CSV, each
figure as standalone HTML (and PNG when kaleido is installed; each chart's camera button
makes a PNG in the browser).

Rollouts mode: n sampled responses to a question, scored by a named reward against the
expected answer (`exact_answer`, or `numeric_answer` within a tolerance), with GRPO
advantages, Token Hidden Reward and D3S per token, and the critical token of the first
wrong response (rollout definition, within a budget of prefixes; any other wrong response's
on demand). One response is on show, as a run like the others: its token strip (colored on
the group's common scale) and its per-position charts, which follow the group views
(widgets/credit.py: THR and D3S per token across the responses, success rate along a
response, prefix tree). A token selected anywhere, (response, position), is selected in all of
them; clicking another response's token in a group view shows that response. A click reaches
the strip and the five views of a 4-response group in about 200 ms on a busy 2-core machine
(measured by tests/test_serve_rollouts.py).

Safety: each browser session gets its own `Dashboard` (its runs, selection and settings);
the one model is shared read-only and called only under a lock, from a worker thread,
while the page shows progress and which page's work it waits for. A session's work stops
at the model's next module call when its Cancel button is pressed or its page goes away
(a page closed or reloaded: its session ends `UNUSED_SESSION_MS` later), so that it does
not hold up the others. Nothing the user types is executed: text and chat messages
are data. The model is chosen when the server starts (weights load only as safetensors or
GGUF, see `workbench.load`). Bokeh, Panel and plotly.js are served by this server, never
from a CDN; exported figures inline plotly.js: everything works with no network.
"""
from __future__ import annotations

import asyncio
import functools
import html
import io
import logging
import math
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.results.group import Group
from workbench.sampler_parameters import BY_NAME, DEFAULT_SAMPLER, Range

from .credit import (clicked_token, first_searched, response_header, response_label, response_run, strip_scale,
                     views_for)
from .figures import figure_html, figure_png, require_png_export, update_in_place
from .panels import clicked_position, load_builtin_panels, panels_for
from .token_strip import page_count, page_of, page_window, signal_columns, strip_page

DEFAULT_TEXT = "The capital of France is Paris."
DEFAULT_QUESTION, DEFAULT_ANSWER = "What is 7 times 8? Answer with a number.", "56"
DEFAULT_SIGNAL, GROUP_SIGNAL = "surprisal", "thr"
BUTTONS = {"analyze": "Analyze", "generate": "Generate", "rollouts": "Run rollouts"}
# Sampler (its own parameter at its default, `BY_NAME`), temperature and new tokens each sampling
# mode starts with: rollouts sample from the model's own distribution (temperature 1), as GRPO does.
MODE_SAMPLING = {"generate": (DEFAULT_SAMPLER["generate"], 1.0, 48), "rollouts": (DEFAULT_SAMPLER["rollouts"], 1.0, 24)}
REWARDS = ("exact answer", "numeric answer")
ADAPTIVE = "adaptive"  # the sampler picker's HAPO adaptive temperature (not a named sampler of BY_NAME)
TAU = Range(0, 0.95)  # HAPO's tau: the temperature moves by at most this fraction (T (1 + tau h), |h| <= 1)
# The sampler picker's words where the name alone would not say what a sampler is.
SAMPLER_CHOICES = {"gumbel": "gumbel (= temperature: every sampler draws by Gumbel-max)",
                   ADAPTIVE: "adaptive temperature (HAPO)"}
STOPPED = {"eos": " (the model ended its text)", "stop": " (a stop string appeared)"}  # why generation ended early
LOCAL_HOSTS = ("127.0.0.1", "localhost")
ROLES = ("system", "user", "assistant")
VIEW_WIDTH = 560  # px per chart: two side by side on a laptop screen
VIEW_HEIGHT = 400  # px, for figures that do not set their height
MAX_TEXT = 200_000  # characters in the text box: more than the context of the models served (the model
# refuses a text too long for its context, by name; Panel's default would cut the text at 5,000)
# Allowed values of the fields that are no sampler's parameter (`field_value` checks them: the
# fields have no bounds of their own, which Bokeh would clamp a typed value to, silently).
NEW_TOKENS = Range(1, 1024, whole=True)
RESPONSES = Range(1, 64, whole=True)  # in a group, or after each prefix in the critical-token search
PREFIXES = Range(1, 1024, whole=True)  # searched for the critical token
TOLERANCE = Range(0)  # of the numeric reward
SEED = Range(0, 10**9, whole=True)  # (the generator takes less than 2**64)
LOGIT_LENS_STAGE = "; the logit lens reads every layer through the lm_head and takes longest"
STATIC = Path(__file__).parent / "static"
UNUSED_SESSION_MS = 10_000  # a page gone this long ends its session (and its work); Bokeh's default: 15 s,
CHECK_SESSIONS_MS = 2_000  # checked every 2 s (Bokeh's: 17 s)
CANCEL_POLL_S = 0.2  # how often work waiting for the model checks whether it was cancelled
HOLDERS: dict[int, "Dashboard"] = {}  # id(lock) -> the session whose work holds the model now
log = logging.getLogger(__name__)

CSS = """
.tw-status {font-size: 13px; color: #555; white-space: pre-wrap}
.tw-status.error {color: #b00020}
.tw-section h3 {margin: 14px 0 2px 0; font: 600 15px system-ui, sans-serif; color: #333;
                border-bottom: 1px solid #ddd; padding-bottom: 2px}
"""


# A keyboard focus ring that shows on every button (Panel's: 1 px dotted light grey on the blue one).
FOCUS_RING = ":host .bk-btn:focus-visible {outline: 3px solid #1a4fd6; outline-offset: 2px}"


def parse_messages(text: str) -> list[dict]:
    """Chat messages from plain text: each message starts with a line `user:`,
    `assistant:` or `system:` (the rest of that line and the lines below, up to the
    next such line, are its content)."""
    messages: list[dict] = []
    for line in text.splitlines():
        head, sep, rest = line.partition(":")
        if sep and head.strip().lower() in ROLES:
            messages.append({"role": head.strip().lower(), "content": rest.strip()})
        elif messages:
            messages[-1]["content"] += "\n" + line
        elif line.strip():
            named = f"'{head.strip()}' is not a role; " if sep and head.strip() and " " not in head.strip() else ""
            raise WorkbenchError(f"{named}start each chat message with a line 'user: ...', 'assistant: ...' or "
                                 "'system: ...'")
    if not messages:
        raise WorkbenchError("no chat messages: write lines such as 'user: What is the capital of Italy?'")
    for number, message in enumerate(messages, 1):
        message["content"] = message["content"].strip()
        if not message["content"]:
            raise WorkbenchError(f"chat message {number} ({message['role']}) is empty: write its text after "
                                 f"'{message['role']}:'")
    return messages


@functools.cache
def _strip_class():
    """The token strip as a Panel component (defined on first use: Panel is imported late)."""
    import panel as pn
    import param

    class TokenStripView(pn.custom.JSComponent):
        """Two-way token strip: `html` (one page of the strip), `selected` (position or None)."""

        html = param.String(default="")
        selected = param.Integer(default=None, allow_None=True)
        _esm = STATIC / "token_strip.js"
        _priority_changes = ["selected"]  # a click is handled at once (Panel debounces others by 50 ms)

    return TokenStripView


@dataclass(frozen=True)
class AdaptiveChoice:
    """HAPO's adaptive temperature as chosen in the dashboard: tau and the base temperature.
    Its reference entropies are the prompt's own tokens' (HAPO needs a reference batch; the
    dashboard has no other), read by the model when the work holds it."""

    tau: float
    temperature: float

    def sampler(self, model, inputs: dict):
        """The Sampler, from the entropies `model` gives the prompt (`inputs`: `prompt` or
        `messages`, as for generate)."""
        from workbench import samplers

        text = {"text": inputs["prompt"]} if "prompt" in inputs else {"messages": inputs["messages"]}
        reference = model.analyze(signals=["uncertainty"], **text)
        try:
            return samplers.Adaptive(reference, self.tau, self.temperature)
        except WorkbenchError as error:
            raise WorkbenchError(f"{error}: the dashboard takes them from the prompt, write a longer one") from None


def _resolved(options: dict, model, inputs: dict) -> dict:
    """`options` (of generate or rollouts) with an `AdaptiveChoice` made a Sampler. Call
    holding the model."""
    chosen = options["sampler"]
    return options | {"sampler": chosen.sampler(model, inputs)} if isinstance(chosen, AdaptiveChoice) else options


@functools.cache
def _checkbox_class():
    """A checkbox named by its text, as a Panel component (defined on first use: Panel is
    imported late): Bokeh's draws its text beside the box, not in a <label>, so that the box
    has no accessible name and a click on the text does nothing."""
    import panel as pn
    import param

    class LabelledCheckbox(pn.custom.JSComponent):
        """`value`: whether the box is ticked; `text`: its label."""

        value = param.Boolean(default=False)
        text = param.String(default="")
        _esm = STATIC / "checkbox.js"

    return LabelledCheckbox


class Cancelled(Exception):
    """Raised in the worker thread when its session cancels its work."""


class Dashboard:
    """One browser session's page. The model is called only while holding `lock`."""

    def __init__(self, model, lock: threading.Lock):
        import panel as pn

        self.model, self.lock = model, lock
        self.run = None  # this session's latest Run (in rollouts mode: the response on show)
        self.group = None  # rollouts mode: this session's latest Group
        self.selected: int | None = None
        self.page = 0
        self.views: list[tuple] = []  # (panel, plotly pane) for the current run
        self.group_views: list[tuple] = []  # (group view, plotly pane) for the current group
        self.drawn: dict = {}  # view name -> the figure its pane was last drawn from (the pane's own
        # figure also takes what the browser did to it: zoom, size)
        self.stage = ""  # what the background work is doing (written by the worker thread)
        self.holding_since = 0.0  # when the work began to hold the model (time.monotonic)
        self.cancel = threading.Event()  # set: the work stops at the model's next module call
        self.png_export = _png_export_available()  # once: each view's export buttons ask
        load_builtin_panels()

        from workbench.signals import SIGNALS

        # Uncertainty is always computed (the strip and the next-token view need it); these are the others.
        signals = [name for name, spec in SIGNALS.items() if spec.unavailable(model) is None and name != "uncertainty"]
        # Mode -> the coroutine that computes its result (a Run, or a Group in rollouts mode);
        # sampling modes only where the model has them.
        self.modes = {"analyze": self._analyze}
        if hasattr(model, "generate"):
            self.modes["generate"] = self._generate
        if hasattr(model, "rollouts"):
            self.modes["rollouts"] = self._rollouts
        self.mode = pn.widgets.RadioBoxGroup(label="Mode", options=list(self.modes), value="analyze", inline=True)
        self.input_kind = pn.widgets.RadioBoxGroup(label="Input", options=["Text", "Chat messages"], value="Text",
                                                   inline=True)
        self.text = pn.widgets.TextAreaInput(label="Text", value=DEFAULT_TEXT, rows=5, max_length=MAX_TEXT,
                                             sizing_mode="stretch_width")
        self.signals = pn.widgets.CheckButtonGroup(label="Signals", options=signals, value=[])
        self.truncate = _checkbox_class()(text="truncate a text longer than the model's context", value=False,
                                            margin=(12, 10, 0, 30))
        sampling = [mode for mode in MODE_SAMPLING if mode in self.modes]
        self.sampler_controls = self._sampler_controls() if sampling else None
        # Each mode's last settings: sampler, its parameter's value (None: its default), temperature, new tokens.
        self.mode_sampling = {mode: (name, None, temperature, new_tokens)
                              for mode, (name, temperature, new_tokens) in MODE_SAMPLING.items() if mode in sampling}
        self.rollout_controls = self._rollout_controls() if "rollouts" in self.modes else None
        self.button = _button("Analyze", color="primary", width=120)
        self.cancel_button = _button("Cancel", width=90, visible=False)
        self.progress = pn.indicators.Progress(active=False, visible=False, width=160, bar_color="primary")
        self.status = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CSS])  # (its own shadow root)
        self.color_by = pn.widgets.Select(label="Color by", options=[DEFAULT_SIGNAL], value=DEFAULT_SIGNAL, width=160,
                                          disabled=True)
        self.prev_page = _button("◀ previous", width=100, visible=False)
        self.next_page = _button("next ▶", width=100, visible=False)
        self.page_label = pn.pane.HTML("", visible=False)
        self.response_picker = pn.widgets.Select(label="Response", options={}, width=320)
        self.critical_button = _button("Find its critical token", width=170, align="end",
                                                 disabled=True)
        self.response_info = pn.pane.HTML("", align="end")
        self.response_row = pn.Row(self.response_picker, self.critical_button, self.response_info, visible=False)
        self.strip = _strip_class()(sizing_mode="stretch_width", min_height=40)
        self.sections = pn.Column(sizing_mode="stretch_width")
        self.table_downloads = (
            _download("Table (Parquet)", "tokens.parquet", lambda: self._table_bytes("parquet"), width=170),
            _download("Table (CSV)", "tokens.csv", lambda: self._table_bytes("csv"), width=150),
        )
        self.exports = pn.Row(*self.table_downloads, visible=False)

        self.button.on_click(self._on_go)
        self.critical_button.on_click(self._on_critical)
        self.cancel_button.on_click(lambda _event: self.cancel.set())
        self.mode.param.watch(self._on_mode, "value")
        self.input_kind.param.watch(self._on_input_kind, "value")
        self.color_by.param.watch(lambda _event: self._redraw(strip=True), "value")
        self.strip.param.watch(lambda event: self.select(event.new), "selected")
        self.response_picker.param.watch(lambda event: self.show_response(event.new), "value")
        self.prev_page.on_click(lambda _event: self._turn(-1))
        self.next_page.on_click(lambda _event: self._turn(+1))

        self.signals_row = pn.Row(pn.pane.HTML("<b>Signals</b> uncertainty +", margin=(12, 5, 0, 10)), self.signals,
                                  self.truncate)
        self.layout = pn.Column(
            pn.pane.HTML(f"<h1 style='margin:0'>Token Workbench</h1><p style='margin:4px 0'>Model: "
                         f"<code>{html.escape(model.name)}</code></p>"),
            pn.Row(pn.pane.HTML("<b>Mode</b>", margin=(5, 5, 0, 10)), self.mode,
                   pn.pane.HTML("<b>Input</b>", margin=(5, 5, 0, 30)), self.input_kind),
            self.text,
            *[controls for controls in (self.rollout_controls, self.sampler_controls) if controls is not None],
            pn.Row(self.signals_row, self.button, self.cancel_button, self.progress),
            self.status,
            pn.Row(self.color_by, self.exports, pn.Spacer(width=20), self.prev_page, self.page_label,
                   self.next_page, align="end"),
            self.response_row,
            self.strip,
            self.sections,
            sizing_mode="stretch_width", margin=(10, 20), stylesheets=[CSS],
        )

    # ----- controls ------------------------------------------------------------------------
    def say(self, message: str, *, error: bool = False) -> None:
        self.status.object = f'<div class="tw-status{" error" if error else ""}">{html.escape(message)}</div>'

    def _on_mode(self, event) -> None:
        self.button.label = BUTTONS[event.new]
        if self.sampler_controls is not None:
            if event.old in self.mode_sampling:  # keep each sampling mode's own settings
                self.mode_sampling[event.old] = (self.sampler.value, self.sampler_value.value,
                                                 self.temperature.value, self.max_new_tokens.value)
            if event.new in self.mode_sampling:
                name, value, temperature, new_tokens = self.mode_sampling[event.new]
                self.sampler.value = name  # first: choosing a sampler resets its value
                if value is not None:
                    self.sampler_value.value = value
                self.temperature.value, self.max_new_tokens.value = temperature, new_tokens
            self.sampler_controls.visible = event.new in self.mode_sampling
        if self.rollout_controls is not None:
            self.rollout_controls.visible = event.new == "rollouts"
        self.signals_row.visible = event.new == "analyze"
        if self.input_kind.value == "Text" and self.text.value in (DEFAULT_TEXT, DEFAULT_QUESTION):
            self.text.value = DEFAULT_QUESTION if event.new == "rollouts" else DEFAULT_TEXT
        self._label_text()

    def _sampler_controls(self):
        """Sampler, its own parameter (top-p's p, ...), temperature, length and seed (shown in
        the sampling modes). The Temperature field is the one temperature control: the
        parameter of the temperature and Gumbel samplers, applied before the truncation of the
        others; hidden for greedy, which takes the most likely token at any temperature."""
        import panel as pn

        self.sampler = pn.widgets.Select(label="Sampler", options={SAMPLER_CHOICES.get(name, name): name
                                                                  for name in [*BY_NAME, ADAPTIVE]}, width=200)
        number = _number_field_class()
        self.sampler_value = number(width=90)
        self.temperature = number(label="Temperature", value=1.0, width=100)
        self.max_new_tokens = number(label="New tokens", value=48, width=100)
        self.seed = number(label="Seed", value=0, width=90)

        def show(name: str) -> None:  # the fields of sampler `name`, its own parameter at its default
            if name == ADAPTIVE:
                self.temperature.visible = self.sampler_value.visible = True
                self.sampler_value.param.update(label="tau", value=0.5)
                return
            parameter = BY_NAME[name]
            self.temperature.visible = parameter is not None
            self.sampler_value.visible = parameter is not None and parameter.rule != "temperature"
            if self.sampler_value.visible:
                self.sampler_value.param.update(label=parameter.name, value=parameter.default)

        show(self.sampler.value)
        self.sampler.param.watch(lambda event: show(event.new), "value")
        return pn.Row(self.sampler, self.sampler_value, self.temperature, self.max_new_tokens, self.seed,
                      visible=False)

    def _rollout_controls(self):
        """The expected answer and its reward, the group size, the THR mode and the critical-token
        search (shown in rollouts mode). Rewards are named ones only: nothing typed is run as code."""
        import panel as pn

        self.answer = pn.widgets.TextInput(label="Answer", value=DEFAULT_ANSWER, placeholder="e.g. 56", width=110)
        self.reward_kind = pn.widgets.Select(label="Reward", options=list(REWARDS), value=REWARDS[0], width=140)
        number = _number_field_class()
        self.tolerance = number(label="Tolerance", value=0.01, width=90, visible=False)
        self.n = number(label="Responses", value=4, width=90)
        self.thr_mode = pn.widgets.Select(label="THR", options=["auto", "exact", "cheap"], value="auto", width=90)
        self.critical_n = number(label="Critical: completions", value=4, width=140)
        self.critical_budget = number(label="prefixes at most", value=8, width=120)
        self.critical_first = _checkbox_class()(text="for the first wrong response", value=True, align="end")
        self.reward_kind.param.watch(lambda event: setattr(self.tolerance, "visible", event.new == "numeric answer"),
                                     "value")
        return pn.Row(self.answer, self.reward_kind, self.tolerance, self.n, self.thr_mode, pn.Spacer(width=20),
                      self.critical_n, self.critical_budget, self.critical_first, visible=False)

    def _on_input_kind(self, event) -> None:
        if event.new == "Chat messages" and self.text.value in (DEFAULT_TEXT, DEFAULT_QUESTION):
            self.text.value = ("user: What is the capital of Italy?\nassistant: The capital of Italy is Rome."
                               if self.mode.value != "rollouts" else f"user: {DEFAULT_QUESTION}")
        self._label_text()

    def _label_text(self) -> None:
        if self.input_kind.value == "Chat messages":
            self.text.label = "Chat messages (a line 'user:', 'assistant:' or 'system:' starts each message)"
        else:
            self.text.label = {"generate": "Prompt", "rollouts": "Question"}.get(self.mode.value, "Text")

    def _inputs(self, text_key: str) -> dict:
        """The text box as keyword arguments: chat messages, or the text under `text_key`."""
        if self.input_kind.value == "Chat messages":
            return {"messages": parse_messages(self.text.value)}
        return {text_key: self.text.value}

    def _sampling(self) -> dict:
        """The sampler controls as keyword arguments of `generate` and `rollouts`. The
        Temperature field is the temperature and Gumbel samplers' own parameter, and comes
        before the truncation of the others (greedy has none), or is HAPO's base temperature. A
        field outside its allowed values (`BY_NAME`, `TAU`) is refused. HAPO's sampler is an
        `AdaptiveChoice` until the model reads its reference (`_resolved`)."""
        from workbench import samplers

        name = self.sampler.value
        parameter = BY_NAME.get(name)
        if name == ADAPTIVE:
            sampler = AdaptiveChoice(field_value(self.sampler_value, TAU, "HAPO's tau"),
                                     field_value(self.temperature, BY_NAME["temperature"].allowed))
        elif parameter is None:
            sampler = samplers.Greedy()
        else:
            rules = {"temperature": field_value(self.temperature, BY_NAME["temperature"].allowed)}
            if parameter.rule != "temperature":
                rules[parameter.rule] = field_value(self.sampler_value, parameter.allowed, f"{name}'s {parameter.name}")
            sampler = samplers.Sampler(**rules)
        return {"sampler": sampler, "seed": field_value(self.seed, SEED), "progress": False,
                "max_new_tokens": field_value(self.max_new_tokens, NEW_TOKENS)}

    def _reward(self):
        """The named reward the answer box asks for."""
        from workbench import rewards

        answer = self.answer.value.strip()
        if not answer:
            raise WorkbenchError("give the expected answer (e.g. 56): a response's reward is 1 when its final "
                                 "answer equals it, else 0")
        if self.reward_kind.value == "exact answer":
            return rewards.exact_answer(answer)
        number = rewards.parse_number(answer)
        if number is None:
            raise WorkbenchError(f"the numeric reward needs a number as the answer, got {answer!r}; "
                                 "or choose the exact-answer reward")
        return rewards.numeric_answer(number, tol=field_value(self.tolerance, TOLERANCE))

    # ----- long work: in a thread, under the lock, with progress ---------------------------
    async def _on_go(self, _event) -> None:
        await self._busy(self.modes[self.mode.value], self._show_result)

    async def _on_critical(self, _event) -> None:
        group, response = self.group, self.response

        async def find():
            options = self._critical_options()

            def work():
                with self._holding_model(f"critical token of response #{response}"):
                    return self._critical_columns(group, response, options)

            return await self._in_background(work)

        def show(columns, seconds: float) -> None:
            group.add(columns)
            self.show_group(group, response)
            self.say(f"{response_header(group, response)} (found in {_seconds(seconds)})"
                     if columns["critical"].any() else
                     f"Response #{response}: no prefix without a correct completion among those tried "
                     f"({_seconds(seconds)}); allow more prefixes to search them all")

        await self._busy(find, show)

    async def _busy(self, work, show) -> None:
        """Await `work()` with the buttons disabled and progress shown, then `show(result,
        seconds)`; errors are reported on the page."""
        started = time.monotonic()
        self.cancel.clear()
        self.button.disabled = self.critical_button.disabled = True
        self.progress.visible = self.progress.active = self.cancel_button.visible = True
        try:
            result = await work()
        except Cancelled:
            self.say(f"Cancelled after {_seconds(time.monotonic() - started)}; the views show the previous result.")
        except WorkbenchError as error:
            self.say(f"Error: {error}", error=True)
        except Exception as error:  # a bug: keep the page usable, log the traceback server-side
            log.exception("analysis failed")
            self.say(f"Unexpected error ({type(error).__name__}: {error}); details are in the server log.", error=True)
        else:
            show(result, time.monotonic() - started)
        finally:
            self.button.disabled = False
            self.progress.visible = self.progress.active = self.cancel_button.visible = False
            self._update_critical_button()

    def _show_result(self, result, seconds: float) -> None:
        if isinstance(result, Group):
            self.show_group(result)
            correct = int(result.correct().sum())
            note = ("" if 0 < correct < len(result) else
                    f" Every reward is {result.rewards[0]:g}, so every advantage and THR is 0.")
            self.say(f"{len(result)} responses ({len(result.table)} tokens), {correct} correct, with {self.model.name} "
                     f"({self._sampler_said(result.meta)}) in {_seconds(seconds)}.{note}{_template_note(result.meta)} "
                     "Click a token (or a cell) to select it in every view.")
            return
        self.show_run(result)
        done = (f"{result.meta['n_generated']} tokens generated{STOPPED.get(result.meta.get('stop_reason'), '')}"
                if "n_generated" in result.meta else f"{len(result)} tokens analyzed")
        sampler = f" ({self._sampler_said(result.meta)})" if "sampler" in result.meta else ""
        self.say(f"{done} with {self.model.name}{sampler} in {_seconds(seconds)}.{_template_note(result.meta)} "
                 "Click a token (or a point in a chart) to select it in every view.")

    def _sampler_said(self, meta: dict) -> str:
        """The sampler a run's `meta` names, as the status line says it: a choice that `meta`
        names otherwise (gumbel: the temperature sampler's distribution) says both."""
        chosen = self.sampler.value
        return meta["sampler"] if meta["sampler"].startswith(chosen) else f"{chosen}, that is {meta['sampler']}"

    async def _analyze(self):
        kwargs = self._inputs("text")
        signals = ["uncertainty", *self.signals.value]
        stage = "analyzing" + (LOGIT_LENS_STAGE if "logit_lens" in signals else "")

        def work():
            with self._holding_model(stage) as model:
                return model.analyze(signals=signals, truncate=self.truncate.value, **kwargs)

        return await self._in_background(work)

    async def _generate(self):
        kwargs = self._inputs("prompt")
        options = self._sampling()

        def work():
            with self._holding_model("generating") as model:
                return model.generate(**kwargs, **_resolved(options, model, kwargs))

        return await self._in_background(work)

    async def _rollouts(self):
        from workbench import credit

        kwargs = self._inputs("prompt")
        options = {"n": field_value(self.n, RESPONSES), "reward": self._reward(), **self._sampling(), "thr": None}
        thr, critical = self.thr_mode.value, self._critical_options() if self.critical_first.value else None

        def work():
            with self._holding_model(f"sampling {options['n']} responses") as model:
                group = model.rollouts(**kwargs, **_resolved(options, model, kwargs))
                self.stage = f"Token Hidden Reward ({thr})"
                group.add(credit.token_hidden_reward(model, group, mode=thr))
                wrong = np.flatnonzero(~group.correct())
                if critical is not None and len(wrong):
                    group.add(self._critical_columns(group, int(wrong[0]), critical))
                return group

        return await self._in_background(work)

    def _critical_options(self) -> dict:
        return {"n": field_value(self.critical_n, RESPONSES), "budget": field_value(self.critical_budget, PREFIXES),
                "seed": field_value(self.seed, SEED)}

    def _critical_columns(self, group, response: int, options: dict):
        """Success rate after the prefixes of `response` and its critical token (rollout
        definition), as columns for `group.add`. Call holding the lock."""
        from workbench import credit

        self.stage = (f"critical token of response #{response}: {options['n']} completions after each of up to "
                      f"{options['budget']} prefixes")
        return credit.rollout_critical_tokens(self.model, group, response, progress=False, **options).columns()

    @contextmanager
    def _holding_model(self, stage: str):
        """The model, while holding its lock (in a worker thread); `stage` says what is done.
        Raises Cancelled when the session cancels its work, while it waits for the lock or
        at the model's next module call."""
        while not self.lock.acquire(timeout=CANCEL_POLL_S):
            if self.cancel.is_set():
                raise Cancelled
        try:
            self.stage, self.holding_since = stage, time.monotonic()
            HOLDERS[id(self.lock)] = self
            with self._cancellable():
                yield self.model
        finally:
            HOLDERS.pop(id(self.lock), None)
            self.lock.release()

    @contextmanager
    def _cancellable(self):
        """While in this block, every call of a module of the model (a layer, a projection, the
        lm_head) first checks whether the session cancelled its work (a cooperative check:
        a long forward pass stops within one layer, a generation within one step)."""
        def check(_module, _inputs):
            if self.cancel.is_set():
                raise Cancelled

        network = getattr(self.model, "hf", None)
        handles = [] if network is None else [module.register_forward_pre_hook(check) for module in network.modules()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _waiting_for(self) -> str:
        """What work waiting for the model waits for: the session that holds it, what that one
        does and for how long."""
        holder = HOLDERS.get(id(self.lock))
        if holder is None:
            return " (waiting for the model)" if self.lock.locked() else ""
        return (f" (waiting for another page's work to finish: {holder.stage or 'starting'}, running for "
                f"{time.monotonic() - holder.holding_since:.0f} s)")

    async def _in_background(self, work):
        """Run `work` in a thread; meanwhile tell the user how long it has been running, what
        it is doing (`stage`) or that it waits for another session's work."""
        started = time.monotonic()
        self.stage = ""  # until `work` holds the model
        task = asyncio.ensure_future(asyncio.to_thread(work))
        while True:
            doing = f": {self.stage}" if self.stage else self._waiting_for()
            if self.cancel.is_set():
                doing = ": cancelling (the model stops at its next layer)"
            self.say(f"Working… {time.monotonic() - started:.0f} s{doing}")
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()

    # ----- views ---------------------------------------------------------------------------
    def show_run(self, run) -> None:
        """Show a new run (analyze and generate modes)."""
        self.group, self.group_views = None, []
        self._show(run)

    def show_group(self, group: Group, response: int | None = None) -> None:
        """Show a new group: its views and one response (default: `first_searched`) as the
        run on show."""
        response = first_searched(group) if response is None else response
        self.group = group
        self.group_views = [(view, _plotly_pane(self._on_group_click, view.name)) for view in views_for(group)]
        self._show(response_run(group, response))
        options = {f"{response_label(group, i)}  {_preview(text)}": i for i, text in enumerate(group.responses)}
        self.response_picker.param.update(options=options, value=response)  # (its watcher finds it on show)

    @property
    def response(self) -> int | None:
        """The group's response on show (its run's meta says which); None outside rollouts mode."""
        return None if self.group is None or self.run is None else self.run.meta["response"]

    def _show(self, run) -> None:
        """Show `run` (and the group views, in rollouts mode): signal choices, first page of
        the strip, one pane per panel."""
        import panel as pn

        self.run, self.drawn = None, {}  # (nothing is redrawn until the views are built)
        available = signal_columns(run.table)
        columns = available or [DEFAULT_SIGNAL]
        default = GROUP_SIGNAL if self.group is not None else DEFAULT_SIGNAL
        keep = self.color_by.value if self.color_by.value in columns else default
        self.color_by.param.update(options={_signal_choice(run, column): column for column in columns},
                                   value=keep if keep in columns else columns[0], disabled=not available)
        self.views = [(panel, _plotly_pane(self._on_click, panel.name)) for panel in panels_for(run)]

        def shown(view, pane):
            return pn.Column(pane, self._figure_exports(view), width=VIEW_WIDTH + 10)

        sections = {"credit: the group": [shown(view, pane) for view, pane in self.group_views]} if self.group else {}
        for panel, pane in self.views:
            sections.setdefault(panel.section, []).append(shown(panel, pane))
        self.run, self.selected, self.page = run, None, 0
        self.sections.objects = [
            pn.Column(pn.pane.HTML(f"<h3>{html.escape(name.replace('_', ' '))}</h3>", sizing_mode="stretch_width"),
                      pn.FlexBox(*views, sizing_mode="stretch_width"),
                      css_classes=["tw-section"], stylesheets=[CSS], sizing_mode="stretch_width")
            for name, views in sections.items()
        ]
        grouped = self.group is not None
        for download, kind in zip(self.table_downloads, ("Parquet", "CSV")):
            download.param.update(filename=f"{'rollouts' if grouped else 'tokens'}.{kind.lower()}",
                                  label=f"{'Group table' if grouped else 'Table'} ({kind})")
        self.exports.visible = True
        self.response_row.visible = grouped
        self._describe_response()
        self._redraw(strip=True)

    def show_response(self, response: int, position: int | None = None) -> None:
        """Show another response of the group, with `position` selected (None: none)."""
        if self.group is None or response is None or (response == self.response and position is None):
            return
        if response == self.response:
            self.select(position)
            return
        run = response_run(self.group, response)
        if [panel.name for panel, _ in self.views] != [panel.name for panel in panels_for(run)]:
            self._show(run)
            self.select(position)
        else:
            self.run, self.selected = run, position if position is not None and 0 <= position < len(run.table) else None
            self.page = 0 if self.selected is None else page_of(self.selected)
            self._describe_response()
            self._redraw(strip=True)
        self.response_picker.value = response  # (its watcher then finds the response on show)

    def _describe_response(self) -> None:
        if self.group is not None:
            self.response_info.object = (f"<span style='font-size:13px'>"
                                         f"{html.escape(response_header(self.group, self.response))}</span>")
        self._update_critical_button()

    def _update_critical_button(self) -> None:
        """Enabled for a wrong response whose prefixes were not searched yet."""
        group, response = self.group, self.response
        searched = (group is not None and "success_rate" in group.table
                    and bool(group.rows(response)["success_rate"].notna().any()))
        self.critical_button.disabled = group is None or bool(group.correct()[response]) or searched

    def select(self, position: int | None) -> None:
        """Select `position` (None: no selection) in every view."""
        if self.run is None or position == self.selected:
            return
        if position is not None and not 0 <= position < len(self.run.table):
            return
        self.selected = position
        turn = position is not None and page_of(position) != self.page
        if turn:
            self.page = page_of(position)
        self._redraw(strip=turn)

    def _turn(self, step: int) -> None:
        self.page = min(max(self.page + step, 0), page_count(len(self.run.table)) - 1)
        self._redraw(strip=True)

    def _redraw(self, *, strip: bool) -> None:
        """Re-render the figures (and the strip's page, when `strip`) for the current run,
        selection and signal, sent to the browser as one batch of changes."""
        import panel as pn

        if self.run is None:
            return
        signal = self.color_by.value
        token = None if self.group is None or self.selected is None else (self.response, self.selected)
        with pn.io.hold():
            if strip:
                self.strip.html = self._strip_html(signal)
                pages = page_count(len(self.run.table))
                start, stop = page_window(self.page, len(self.run.table))
                self.page_label.object = (f"<span style='font-size:13px'>tokens {start}–{stop - 1} "
                                          f"of {len(self.run.table)}</span>")
                for widget in (self.prev_page, self.next_page, self.page_label):
                    widget.visible = pages > 1
                self.prev_page.disabled, self.next_page.disabled = self.page == 0, self.page == pages - 1
            self.strip.selected = self.selected
            for view, pane in self.group_views:
                self._draw(view, pane, lambda: view.figure(self.group, token, self.response))
            for panel, pane in self.views:
                self._draw(panel, pane, lambda: panel.render(self.run, self.selected, signal=signal))

    def _strip_html(self, signal: str) -> str:
        """The strip's current page; a response of a group on its own scale, as its heatmap row."""
        shared = self.group is not None and signal in self.group.table
        scale = strip_scale(self.group, signal, self.response) if shared else {}
        return strip_page(self.run, signal, self.page, **scale).html

    def _draw(self, view, pane, figure) -> None:
        """Update `pane` to the figure `figure()` builds, in place when it can."""
        try:
            new = figure()
        except WorkbenchError as error:
            self.say(f"{view.title}: {error}", error=True)
            return
        # Sizes fixed in the figure: a redraw never falls back to plotly's or the page's.
        new.layout.width = VIEW_WIDTH
        new.layout.height = new.layout.height or VIEW_HEIGHT
        # A figure whose `meta` changed (the success curve of another response) is drawn anew,
        # as plotly.js would do anyway; otherwise only what changed is sent.
        previous = self.drawn.get(view.name)
        if (pane.object is None or previous is None or previous.layout.meta != new.layout.meta
                or not update_in_place(pane.object, new, previous)):
            pane.param.update(object=new, height=int(new.layout.height))
        self.drawn[view.name] = new

    def _on_click(self, event) -> None:
        position = _clicked(event, clicked_position)
        if position is not None:
            self.select(position)

    def _on_group_click(self, event) -> None:
        token = _clicked(event, clicked_token)
        if token is not None and 0 <= token[0] < len(self.group):
            self.show_response(*token)

    # ----- exports -------------------------------------------------------------------------
    def _table_bytes(self, kind: str) -> io.BytesIO:
        """The table as a file: the group's (every response's tokens) in rollouts mode."""
        table = self.group.table if self.group is not None else self.run.table
        buffer = io.BytesIO()
        if kind == "parquet":
            table.to_parquet(buffer, index=False)
        else:
            buffer.write(table.to_csv(index=False).encode("utf-8"))
        buffer.seek(0)
        return buffer

    def _figure_exports(self, view):
        import panel as pn

        def figure():  # as shown, for the exports
            return self.drawn[view.name]

        def page():
            return io.BytesIO(figure_html(figure()).encode("utf-8"))

        name = view.name.replace(".", "-")
        small = dict(width=70, height=28, margin=(0, 5))
        buttons = [_download("HTML", f"{name}.html", page, **small)]
        if self.png_export:
            buttons.append(_download("PNG", f"{name}.png", lambda: io.BytesIO(figure_png(figure())), **small))
        return pn.Row(*buttons, align="end")


def _button(label: str, **options):
    """A button labelled `label` (`options`: Panel's Button keywords), with `FOCUS_RING`."""
    import panel as pn

    return pn.widgets.Button(label=label, stylesheets=[FOCUS_RING], **options)


def _download(label: str, filename: str, callback, **options):
    """A light download button labelled `label` that saves what `callback()` returns as
    `filename` (`options`: Panel's FileDownload keywords), with `FOCUS_RING`."""
    import panel as pn

    return pn.widgets.FileDownload(callback=callback, filename=filename, label=label, color="light",
                                   stylesheets=[FOCUS_RING], **options)


def _plotly_pane(on_click, name: str):
    """An empty pane for view `name`'s figure; a click on the figure calls `on_click(event)`;
    the camera button saves the chart as `name`.png (plotly's default: newplot.png)."""
    import panel as pn

    config = {"displaylogo": False, "toImageButtonOptions": {"filename": name.replace(".", "-")}}
    pane = pn.pane.Plotly(None, width=VIEW_WIDTH, config=config)
    pane.param.watch(on_click, "click_data")
    return pane


def _clicked(event, read):
    """What a plotly pane's click (`event`: its `click_data` changed) stands for: `read(layout
    meta, first point)` (`clicked_position` or `clicked_token`), None without a point."""
    pane, points = event.obj, (event.new or {}).get("points") or []
    return read(pane.object.layout.meta, points[0]) if points and pane.object is not None else None


def field_value(widget, allowed: Range, label: str | None = None):
    """The number a field holds (typed: its text), when it is `allowed` (an int when
    `allowed.whole`). Otherwise a WorkbenchError naming the field (`label`, default its
    name), the allowed values and what it holds (a text that is no number, by its text)."""
    value, shown = _typed_number(widget.value)
    if value is None or value not in allowed:
        raise WorkbenchError(f"{label or widget.label} must be {allowed.words()}; got {shown}")
    return int(value) if allowed.whole else value


def _typed_number(value) -> tuple[float | int | None, str]:
    """(the number, as the error shows it) of a field's value: a number set from Python, or
    the text typed in the browser (a whole number read exactly, however large). None for
    nothing, a text that is no number, or a number that is not finite."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "nothing"
    if not isinstance(value, str):
        return (value if math.isfinite(value) else None), f"{value:g}"
    text = value.strip()
    for parse in (int, float):
        try:
            number = parse(text)
        except ValueError:
            continue
        return (number if math.isfinite(number) else None), text
    return None, f"{text!r}, which is not a number"


@functools.cache
def _number_field_class():
    """A field for a number, as a Panel widget class (defined on first use: Panel is imported
    late). It keeps what is typed: a browser's number field reverts a non-number without a
    word (and rounds a large whole number), where `field_value` refuses it by name."""
    import panel as pn
    import param

    class NumberField(pn.widgets.TextInput):
        """`value`: a number set from Python (shown as that number), or the text typed."""

        value = param.Parameter(default=None)

        def _process_param_change(self, params):
            if "value" in params:
                params["value"] = _number_text(params["value"])
            return super()._process_param_change(params)

    return NumberField


def _number_text(value) -> str:
    """A field's value as the field shows it: a number written shortest (1.0 as '1')."""
    if value is None or isinstance(value, str):
        return value or ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _signal_choice(run, column: str) -> str:
    """How the Color-by picker names signal `column`: with the logit lens on show, whether the
    lens draws it (rank, surprisal, entropy) or falls back to rank."""
    if "lens_rank" not in run.arrays or f"lens_{column}" in run.arrays:
        return column
    return f"{column} (logit lens: rank)"


def _template_note(meta: dict) -> str:
    """The status line's note on a system prompt that the chat template added on its own."""
    system = meta.get("template_system_prompt")
    if system is None:
        return ""
    return (f' The model\'s chat template added its default system prompt ("{system}"); to replace it, start the '
            "chat messages with a 'system:' line.")


def _seconds(seconds: float) -> str:
    return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"


def _preview(text: str, width: int = 40) -> str:
    """The start of a response on one line, for the response picker."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[:width - 1] + "…"


def _png_export_available() -> bool:
    """Server-side PNG needs kaleido and a Chromium (the charts' camera button makes PNGs in
    the browser anyway)."""
    try:
        require_png_export()
    except WorkbenchError:
        return False
    return True


def make_app(model, lock: threading.Lock):
    """One session's page; its work is cancelled when the session ends (its page gone)."""
    import panel as pn

    dashboard = Dashboard(model, lock)
    pn.state.on_session_destroyed(lambda _context: dashboard.cancel.set())
    return dashboard.layout


def serve(model, *, host: str = "127.0.0.1", port: int = 5006, show: bool = False) -> None:
    """Serve the dashboard at http://host:port/ until interrupted (blocks).

    Binds 127.0.0.1 by default; any other host exposes the model to the network, so a
    warning is emitted. Assets are served locally, so the page works with no network.
    """
    import panel as pn
    from bokeh.settings import settings

    settings.resources.set_value("server")  # Bokeh/Panel/plotly JS and CSS from this server, not a CDN
    pn.extension("plotly")

    if host not in LOCAL_HOSTS:
        warnings.warn(f"serving on {host}: the dashboard is reachable from other machines; "
                      "use host='127.0.0.1' to keep it local", stacklevel=2)
    lock = threading.Lock()
    port = port or _free_port(host)  # 0: a free port, named here and in the allowed origins
    origins = sorted({f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"})
    print(f"Token Workbench: serving {model.name} at http://{host}:{port}/", flush=True)
    _quiet_closed_pages()
    pn.serve(lambda: make_app(model, lock), address=host, port=port, show=show,
             websocket_origin=origins, title="Token Workbench", verbose=False,
             unused_session_lifetime_milliseconds=UNUSED_SESSION_MS,
             check_unused_sessions_milliseconds=CHECK_SESSIONS_MS)


def _free_port(host: str) -> int:
    """A port nothing listens on at `host`, as the system picks one for port 0."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _quiet_closed_pages() -> None:
    """A page closed while the server writes to it leaves Tornado's write future holding a
    WebSocketClosedError that nobody retrieves, and asyncio prints it as a traceback ("Task
    exception was never retrieved"); Bokeh has already logged the closed connection. The
    server's event loop drops exactly those and reports every other exception as before."""
    import asyncio

    from tornado.iostream import StreamClosedError
    from tornado.websocket import WebSocketClosedError

    def handle(loop, context):
        if not isinstance(context.get("exception"), (WebSocketClosedError, StreamClosedError)):
            loop.default_exception_handler(context)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(handle)
