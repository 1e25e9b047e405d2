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

Safety: each browser session gets its own `Dashboard` (its runs, selection and settings);
the one model is shared read-only and called only under a lock, from a worker thread,
while the page shows progress. Nothing the user types is executed: text and chat messages
are data. The model is chosen when the server starts (weights load only as safetensors or
GGUF, see `workbench.load`). Bokeh, Panel and plotly.js are served by this server, never
from a CDN; exported figures inline plotly.js: everything works with no network.
"""
from __future__ import annotations

import asyncio
import html
import io
import logging
import threading
import time
import warnings
from pathlib import Path

from workbench.errors import WorkbenchError

from .figures import figure_html, figure_png, update_in_place
from .panels import clicked_position, load_builtin_panels, panels_for
from .token_strip import page_count, page_of, page_window, signal_columns, strip_page

DEFAULT_TEXT = "The capital of France is Paris."
DEFAULT_SIGNAL = "surprisal"
LOCAL_HOSTS = ("127.0.0.1", "localhost")
ROLES = ("system", "user", "assistant")
VIEW_WIDTH = 560  # px per chart: two side by side on a laptop screen
VIEW_HEIGHT = 400  # px, for figures that do not set their height
SAMPLER_VALUES = {"temperature": 0.7, "gumbel": 1.0, "top-k": 50, "top-p": 0.9, "min-p": 0.1, "top-h": 0.4}
STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)

CSS = """
.tw-status {font-size: 13px; color: #555; white-space: pre-wrap}
.tw-status.error {color: #b00020}
.tw-section h3 {margin: 14px 0 2px 0; font: 600 15px system-ui, sans-serif; color: #333;
                border-bottom: 1px solid #ddd; padding-bottom: 2px}
"""


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
            raise WorkbenchError("start each chat message with a line 'user: ...', 'assistant: ...' or 'system: ...'")
    if not messages:
        raise WorkbenchError("no chat messages: write lines such as 'user: What is the capital of Italy?'")
    for message in messages:
        message["content"] = message["content"].strip()
    return messages


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


class Dashboard:
    """One browser session's page. `model.analyze` is called only while holding `lock`."""

    def __init__(self, model, lock: threading.Lock):
        import panel as pn

        self.model, self.lock = model, lock
        self.run = None  # this session's latest Run
        self.selected: int | None = None
        self.page = 0
        self.views: list[tuple] = []  # (panel, plotly pane) for the current run
        self.drawn: dict = {}  # panel name -> the figure its pane was last drawn from (the pane's own
        # figure also takes what the browser did to it: zoom, size)
        load_builtin_panels()

        from workbench.signals import SIGNALS

        # Uncertainty is always computed (the strip and the next-token view need it); these are the others.
        signals = [name for name, spec in SIGNALS.items() if spec.unavailable(model) is None and name != "uncertainty"]
        # Modes whose result is a Run (the views show Runs); generation only where the model has it.
        self.modes = {"analyze": self._analyze}
        if hasattr(model, "generate"):
            self.modes["generate"] = self._generate
        self.mode = pn.widgets.RadioBoxGroup(name="Mode", options=list(self.modes), value="analyze", inline=True)
        self.input_kind = pn.widgets.RadioBoxGroup(name="Input", options=["Text", "Chat messages"], value="Text",
                                                   inline=True)
        self.text = pn.widgets.TextAreaInput(name="Text", value=DEFAULT_TEXT, rows=5, sizing_mode="stretch_width")
        self.signals = pn.widgets.CheckButtonGroup(name="Signals", options=signals, value=[])
        self.sampler_controls = self._sampler_controls() if "generate" in self.modes else None
        self.button = pn.widgets.Button(name="Analyze", button_type="primary", width=120)
        self.progress = pn.indicators.Progress(active=False, visible=False, width=160, bar_color="primary")
        self.status = pn.pane.HTML("", sizing_mode="stretch_width")
        self.color_by = pn.widgets.Select(name="Color by", options=[DEFAULT_SIGNAL], value=DEFAULT_SIGNAL, width=160,
                                          disabled=True)
        self.prev_page = pn.widgets.Button(name="◀ previous", width=100, visible=False)
        self.next_page = pn.widgets.Button(name="next ▶", width=100, visible=False)
        self.page_label = pn.pane.HTML("", visible=False)
        self.strip = _strip_class()(sizing_mode="stretch_width", min_height=40)
        self.sections = pn.Column(sizing_mode="stretch_width")
        self.exports = pn.Row(
            pn.widgets.FileDownload(callback=lambda: self._table_bytes("parquet"), filename="tokens.parquet",
                                    label="Table (Parquet)", button_type="light", width=150),
            pn.widgets.FileDownload(callback=lambda: self._table_bytes("csv"), filename="tokens.csv",
                                    label="Table (CSV)", button_type="light", width=130),
            visible=False,
        )

        self.button.on_click(self._on_go)
        self.mode.param.watch(self._on_mode, "value")
        self.input_kind.param.watch(self._on_input_kind, "value")
        self.color_by.param.watch(lambda _event: self._redraw(strip=True), "value")
        self.strip.param.watch(lambda event: self.select(event.new), "selected")
        self.prev_page.on_click(lambda _event: self._turn(-1))
        self.next_page.on_click(lambda _event: self._turn(+1))

        self.signals_row = pn.Row(pn.pane.HTML("<b>Signals</b> uncertainty +", margin=(12, 5, 0, 10)), self.signals)
        self.layout = pn.Column(
            pn.pane.HTML(f"<h1 style='margin:0'>Token Workbench</h1><p style='margin:4px 0'>Model: "
                         f"<code>{html.escape(model.name)}</code></p>"),
            pn.Row(pn.pane.HTML("<b>Mode</b>", margin=(5, 5, 0, 10)), self.mode,
                   pn.pane.HTML("<b>Input</b>", margin=(5, 5, 0, 30)), self.input_kind),
            self.text,
            *([self.sampler_controls] if self.sampler_controls else []),
            pn.Row(self.signals_row, self.button, self.progress),
            self.status,
            pn.Row(self.color_by, self.exports, pn.Spacer(width=20), self.prev_page, self.page_label,
                   self.next_page, align="end"),
            self.strip,
            self.sections,
            sizing_mode="stretch_width", margin=(10, 20), stylesheets=[CSS],
        )

    # ----- status ------------------------------------------------------------------------
    def say(self, message: str, *, error: bool = False) -> None:
        self.status.object = f'<div class="tw-status{" error" if error else ""}">{html.escape(message)}</div>'

    def _on_mode(self, event) -> None:
        generating = event.new == "generate"
        self.button.name = "Generate" if generating else "Analyze"
        self.sampler_controls.visible = generating
        self.signals_row.visible = not generating
        self._label_text()

    def _sampler_controls(self):
        """Sampler, its parameter, temperature, length and seed (shown in generate mode)."""
        import panel as pn

        from workbench import samplers

        self.sampler = pn.widgets.Select(name="Sampler", options=list(samplers.BY_NAME), value="top-p", width=130)
        self.sampler_value = pn.widgets.FloatInput(name="p", value=SAMPLER_VALUES["top-p"], width=90)
        self.temperature = pn.widgets.FloatInput(name="Temperature", value=1.0, start=0.01, step=0.1, width=100)
        self.max_new_tokens = pn.widgets.IntInput(name="New tokens", value=48, start=1, end=1024, width=100)
        self.seed = pn.widgets.IntInput(name="Seed", value=0, width=90)

        def on_sampler(event) -> None:
            parameter = samplers.BY_NAME[event.new][1]
            self.sampler_value.visible = parameter is not None
            if parameter is not None:
                self.sampler_value.param.update(name=parameter, value=SAMPLER_VALUES[event.new])

        self.sampler.param.watch(on_sampler, "value")
        return pn.Row(self.sampler, self.sampler_value, self.temperature, self.max_new_tokens, self.seed,
                      visible=False)

    def _on_input_kind(self, event) -> None:
        if event.new == "Chat messages" and self.text.value == DEFAULT_TEXT:
            self.text.value = "user: What is the capital of Italy?\nassistant: The capital of Italy is Rome."
        self._label_text()

    def _label_text(self) -> None:
        if self.input_kind.value == "Chat messages":
            self.text.name = "Chat messages (a line 'user:', 'assistant:' or 'system:' starts each message)"
        else:
            self.text.name = "Prompt" if self.mode.value == "generate" else "Text"

    # ----- long work: in a thread, under the lock, with progress ---------------------------
    async def _on_go(self, _event) -> None:
        started = time.monotonic()
        self.button.disabled = True
        self.progress.visible = self.progress.active = True
        try:
            run = await self.modes[self.mode.value]()
        except WorkbenchError as error:
            self.say(f"Error: {error}", error=True)
        except Exception as error:  # a bug: keep the page usable, log the traceback server-side
            log.exception("analysis failed")
            self.say(f"Unexpected error ({type(error).__name__}: {error}); details are in the server log.", error=True)
        else:
            self.show_run(run)
            done = (f"{run.meta['n_generated']} tokens generated" if "n_generated" in run.meta
                    else f"{len(run)} tokens analyzed")
            self.say(f"{done} with {self.model.name} in {time.monotonic() - started:.2g} s. "
                     "Click a token (or a point in a chart) to select it in every view.")
        finally:
            self.button.disabled = False
            self.progress.visible = self.progress.active = False

    async def _analyze(self):
        if self.input_kind.value == "Chat messages":
            kwargs = {"messages": parse_messages(self.text.value)}
        else:
            kwargs = {"text": self.text.value}
        signals = ["uncertainty", *self.signals.value]

        def work():
            with self.lock:
                return self.model.analyze(signals=signals, **kwargs)

        return await self._in_background(work)

    async def _generate(self):
        from workbench import samplers

        if self.input_kind.value == "Chat messages":
            kwargs = {"messages": parse_messages(self.text.value)}
        else:
            kwargs = {"prompt": self.text.value}
        name = self.sampler.value
        if samplers.BY_NAME[name][1] is None:
            spec = name
        else:
            spec = f"{name}:{int(self.sampler_value.value) if name == 'top-k' else self.sampler_value.value}"
        temperature = None if name in ("temperature", "gumbel", "greedy") else self.temperature.value
        sampler = samplers.from_spec(spec, temperature)
        options = {"sampler": sampler, "max_new_tokens": self.max_new_tokens.value, "seed": self.seed.value,
                   "progress": False}

        def work():
            with self.lock:
                return self.model.generate(**kwargs, **options)

        return await self._in_background(work)

    async def _in_background(self, work):
        """Run `work` in a thread; meanwhile tell the user how long it has been running and
        whether it waits for another session."""
        started = time.monotonic()
        task = asyncio.ensure_future(asyncio.to_thread(work))
        while True:
            waiting = " (waiting for another session's work to finish)" if self.lock.locked() else ""
            self.say(f"Working… {time.monotonic() - started:.0f} s{waiting}")
            done, _ = await asyncio.wait({task}, timeout=0.5)
            if done:
                return task.result()

    # ----- views ---------------------------------------------------------------------------
    def show_run(self, run) -> None:
        """Show a new run: signal choices, first page of the strip, one pane per panel."""
        import panel as pn

        self.run, self.selected, self.page = run, None, 0
        available = signal_columns(run.table)
        columns = available or [DEFAULT_SIGNAL]
        keep = self.color_by.value if self.color_by.value in columns else DEFAULT_SIGNAL
        self.color_by.param.update(options=columns, value=keep if keep in columns else columns[0],
                                   disabled=not available)
        self.views, self.drawn, sections = [], {}, {}
        for panel in panels_for(run):
            pane = pn.pane.Plotly(None, width=VIEW_WIDTH, config={"displaylogo": False})
            pane.param.watch(self._on_click, "click_data")
            self.views.append((panel, pane))
            sections.setdefault(panel.section, []).append(pn.Column(pane, self._figure_exports(panel),
                                                                    width=VIEW_WIDTH + 10))
        self.sections.objects = [
            pn.Column(pn.pane.HTML(f"<h3>{html.escape(name.replace('_', ' '))}</h3>", sizing_mode="stretch_width"),
                      pn.FlexBox(*views, sizing_mode="stretch_width"),
                      css_classes=["tw-section"], stylesheets=[CSS], sizing_mode="stretch_width")
            for name, views in sections.items()
        ]
        self.exports.visible = True
        self._redraw(strip=True)

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
        with pn.io.hold():
            if strip:
                self.strip.html = strip_page(self.run, signal, self.page).html
                pages = page_count(len(self.run.table))
                start, stop = page_window(self.page, len(self.run.table))
                self.page_label.object = (f"<span style='font-size:13px'>tokens {start}–{stop - 1} "
                                          f"of {len(self.run.table)}</span>")
                for widget in (self.prev_page, self.next_page, self.page_label):
                    widget.visible = pages > 1
                self.prev_page.disabled, self.next_page.disabled = self.page == 0, self.page == pages - 1
            self.strip.selected = self.selected
            for panel, pane in self.views:
                try:
                    figure = panel.render(self.run, self.selected, signal=signal)
                    # Sizes fixed in the figure: a redraw never falls back to plotly's or the page's.
                    figure.layout.width = VIEW_WIDTH
                    figure.layout.height = figure.layout.height or VIEW_HEIGHT
                    if pane.object is None or not update_in_place(pane.object, figure, self.drawn[panel.name]):
                        pane.param.update(object=figure, height=int(figure.layout.height))
                    self.drawn[panel.name] = figure
                except WorkbenchError as error:
                    self.say(f"{panel.title}: {error}", error=True)

    def _on_click(self, event) -> None:
        pane = event.obj
        points = (event.new or {}).get("points") or []
        if points and pane.object is not None:
            position = clicked_position(pane.object.layout.meta, points[0])
            if position is not None:
                self.select(position)

    # ----- exports -------------------------------------------------------------------------
    def _table_bytes(self, kind: str) -> io.BytesIO:
        buffer = io.BytesIO()
        if kind == "parquet":
            self.run.table.to_parquet(buffer, index=False)
        else:
            buffer.write(self.run.table.to_csv(index=False).encode("utf-8"))
        buffer.seek(0)
        return buffer

    def _figure_exports(self, panel):
        import panel as pn

        def figure():  # as shown, for the exports
            return self.drawn[panel.name]

        name = panel.name.replace(".", "-")
        buttons = [pn.widgets.FileDownload(callback=lambda: io.BytesIO(figure_html(figure()).encode("utf-8")),
                                           filename=f"{name}.html", label="HTML", button_type="light", width=70,
                                           height=28, margin=(0, 5))]
        if _png_export_available():
            buttons.append(pn.widgets.FileDownload(callback=lambda: io.BytesIO(figure_png(figure())),
                                                   filename=f"{name}.png", label="PNG", button_type="light", width=70,
                                                   height=28, margin=(0, 5)))
        return pn.Row(*buttons, align="end")


def _png_export_available() -> bool:
    """Server-side PNG needs kaleido (the charts' camera button makes PNGs in the browser anyway)."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return True


def make_app(model, lock: threading.Lock):
    """One session's page."""
    return Dashboard(model, lock).layout


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
    origins = sorted({f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"})
    print(f"Token Workbench: serving {model.name} at http://{host}:{port}/", flush=True)
    pn.serve(lambda: make_app(model, lock), address=host, port=port, show=show,
             websocket_origin=origins, title="Token Workbench", verbose=False)
