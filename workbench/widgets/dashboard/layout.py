"""One browser session's page (`Dashboard`): the widgets and their layout, the selection
shared by every view, and the redraws that send only what changed. The modes (what the
button computes and how its result is shown) come from the registry in `modes`; the long
work runs in the session's `Worker`.
"""
from __future__ import annotations

import html
import logging
import threading
import time

from workbench.errors import WorkbenchError
from workbench.results.group import Group

from ..credit import clicked_token, first_searched, response_header, response_label, response_run, strip_scale
from ..figures import update_in_place
from ..panels import clicked_position, load_builtin_panels, panels_for
from ..token_strip import page_count, page_of, page_window, signal_columns, strip_page
from .components import CSS, VIEW_HEIGHT, VIEW_WIDTH, button, clicked, download, plotly_pane, strip_class
from .controls import SamplerControls, parse_messages
from .exports import figure_buttons, png_export_available, table_bytes
from .modes import load_modes, seconds_said
from .worker import Cancelled, Worker

DEFAULT_SIGNAL, GROUP_SIGNAL = "surprisal", "thr"
MAX_TEXT = 200_000  # characters in the text box: more than the context of the models served (the model
# refuses a text too long for its context, by name; Panel's default would cut the text at 5,000)
CHAT_LABEL = "Chat messages (a line 'user:', 'assistant:' or 'system:' starts each message)"
log = logging.getLogger(__name__)


class Dashboard:
    """One browser session's page. The model (and the models served beside it: the reference
    for the compare mode, the draft for the generate mode's speculative sampling) is called only
    in `worker` (holding `lock`). `corpus`: a corpus folder the corpus mode opens (the page then
    starts in that mode)."""

    def __init__(self, model, lock: threading.Lock, reference=None, draft=None, corpus=None):
        import panel as pn

        self.model, self.reference, self.draft, self.corpus = model, reference, draft, corpus
        self.view_settings: dict = {}  # settings a mode gives the panels that declare them (compare: gamma)
        self.worker = Worker(model, lock, reference, draft)
        self.run = None  # this session's latest Run (in rollouts mode: the response on show)
        self.group = None  # rollouts mode: this session's latest Group
        self.selected: int | None = None
        self.page = 0
        self.views: list[tuple] = []  # (panel, plotly pane) for the current run
        self.group_views: list[tuple] = []  # (group view, plotly pane) for the current group
        self.drawn: dict = {}  # view name -> the figure its pane was last drawn from (the pane's own
        # figure also takes what the browser did to it: zoom, size)
        self.png_export = png_export_available()  # once: each view's export buttons ask
        load_builtin_panels()

        # The modes this model can do (sampling modes only where the model has them), by name.
        self.modes = {name: mode for name, mode in load_modes().items() if mode.available(model)}
        first = self.modes["corpus"] if corpus is not None else next(iter(self.modes.values()))
        self.mode = pn.widgets.RadioBoxGroup(label="Mode", options=list(self.modes), value=first.name, inline=True)
        self.input_kind = pn.widgets.RadioBoxGroup(label="Input", options=["Text", "Chat messages"], value="Text",
                                                   inline=True)
        self.text = pn.widgets.TextAreaInput(label=first.text_label, value=first.default_text, rows=5,
                                             max_length=MAX_TEXT, sizing_mode="stretch_width")
        sampling = {name: mode.sampling for name, mode in self.modes.items() if mode.sampling is not None}
        self.sampler_controls = SamplerControls() if sampling else None
        for name, (sampler, temperature, new_tokens) in sampling.items():
            self.sampler_controls.start(name, sampler, temperature, new_tokens)
        built = {name: mode.controls(self) for name, mode in self.modes.items() if mode.controls is not None}
        self.controls = {name: controls for name, controls in built.items() if controls is not None}
        self.below = {name: controls.below for name, controls in self.controls.items() if hasattr(controls, "below")}
        for name, controls in self.controls.items():
            controls.row.visible = name == first.name
        for name, below in self.below.items():
            below.visible = name == first.name
        self.input_label = pn.pane.HTML("<b>Input</b>", margin=(5, 5, 0, 30))
        self.text.visible = self.input_kind.visible = self.input_label.visible = first.takes_text
        self.button = button(first.button, color="primary", width=120)
        self.cancel_button = button("Cancel", width=90, visible=False)
        self.progress = pn.indicators.Progress(active=False, visible=False, width=160, bar_color="primary")
        self.status = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CSS])  # (its own shadow root)
        self.color_by = pn.widgets.Select(label="Color by", options=[DEFAULT_SIGNAL], value=DEFAULT_SIGNAL, width=160,
                                          disabled=True)
        self.prev_page = button("◀ previous", width=100, visible=False)
        self.next_page = button("next ▶", width=100, visible=False)
        self.page_label = pn.pane.HTML("", visible=False)
        self.response_picker = pn.widgets.Select(label="Response", options={}, width=320)
        self.critical_button = button("Find its critical token", width=170, align="end", disabled=True)
        self.response_info = pn.pane.HTML("", align="end")
        self.response_row = pn.Row(self.response_picker, self.critical_button, self.response_info, visible=False)
        self.strip = strip_class()(sizing_mode="stretch_width", min_height=40)
        self.sections = pn.Column(sizing_mode="stretch_width")
        self.table_downloads = (
            download("Table (Parquet)", "tokens.parquet", lambda: self._table_bytes("parquet"), width=170),
            download("Table (CSV)", "tokens.csv", lambda: self._table_bytes("csv"), width=150),
        )
        self.exports = pn.Row(*self.table_downloads, visible=False)

        self.button.on_click(self._on_go)
        self.critical_button.on_click(self._on_critical)
        self.cancel_button.on_click(lambda _event: self.worker.cancel.set())
        self.mode.param.watch(self._on_mode, "value")
        self.input_kind.param.watch(self._on_input_kind, "value")
        self.color_by.param.watch(lambda _event: self._redraw(strip=True), "value")
        self.strip.param.watch(lambda event: self.select(event.new), "selected")
        self.response_picker.param.watch(lambda event: self.show_response(event.new), "value")
        self.prev_page.on_click(lambda _event: self._turn(-1))
        self.next_page.on_click(lambda _event: self._turn(+1))

        inline = [self.controls[name].row for name, mode in self.modes.items() if mode.inline and name in self.controls]
        rows = [self.controls[name].row for name, mode in self.modes.items()
                if not mode.inline and name in self.controls]
        if self.sampler_controls is not None:
            self.sampler_controls.row.visible = first.sampling is not None
            rows.append(self.sampler_controls.row)
        self.layout = pn.Column(
            pn.pane.HTML(f"<h1 style='margin:0'>Token Workbench</h1><p style='margin:4px 0'>Model: "
                         f"<code>{html.escape(model.name)}</code></p>"),
            pn.Row(pn.pane.HTML("<b>Mode</b>", margin=(5, 5, 0, 10)), self.mode,
                   self.input_label, self.input_kind),
            self.text,
            *rows,
            pn.Row(*inline, self.button, self.cancel_button, self.progress),
            self.status,
            *self.below.values(),
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
        old, new = self.modes[event.old], self.modes[event.new]
        self.button.label = new.button
        if self.sampler_controls is not None:
            if old.sampling is not None:  # keep each sampling mode's own settings
                self.sampler_controls.keep(old.name)
            if new.sampling is not None:
                self.sampler_controls.recall(new.name)
            self.sampler_controls.row.visible = new.sampling is not None
        for name, controls in self.controls.items():
            controls.row.visible = name == new.name
        for name, below in self.below.items():
            below.visible = name == new.name
        self.text.visible = self.input_kind.visible = self.input_label.visible = new.takes_text
        if self.input_kind.value == "Text" and self.text.value in self._default_texts():
            self.text.value = new.default_text
        self._label_text()

    def _default_texts(self) -> set[str]:
        return {mode.default_text for mode in self.modes.values()}

    def _on_input_kind(self, event) -> None:
        if event.new == "Chat messages" and self.text.value in self._default_texts():
            self.text.value = self.modes[self.mode.value].default_chat
        self._label_text()

    def _label_text(self) -> None:
        self.text.label = (CHAT_LABEL if self.input_kind.value == "Chat messages"
                           else self.modes[self.mode.value].text_label)

    def inputs(self, text_key: str) -> dict:
        """The text box as keyword arguments: chat messages, or the text under `text_key`."""
        if self.input_kind.value == "Chat messages":
            return {"messages": parse_messages(self.text.value)}
        return {text_key: self.text.value}

    # ----- long work: in the worker's thread, with progress ---------------------------------
    async def compute(self, mode: str | None = None):
        """The result of `mode` (default: the mode chosen) for the controls as they are; a
        WorkbenchError for a control's bad value, or from the model."""
        return await self.modes[mode or self.mode.value].compute(self)

    def show_result(self, result, seconds: float) -> None:
        """Show `result` of the mode chosen, which took `seconds`."""
        self.modes[self.mode.value].show(self, result, seconds)

    async def go(self) -> None:
        """What the button does: compute the chosen mode's result and show it, reporting errors."""
        await self._busy(self.compute, self.show_result)

    async def _on_go(self, _event) -> None:
        await self.go()

    async def _on_critical(self, _event) -> None:
        from .modes.rollouts import critical_columns

        group, response, worker = self.group, self.response, self.worker

        async def find():
            options = self.controls["rollouts"].critical_options()

            def work():
                with worker.holding(f"critical token of response #{response}"):
                    return critical_columns(worker, group, response, options)

            return await worker.in_background(work, self.say)

        def show(columns, seconds: float) -> None:
            group.add(columns)
            self.show_group(group, response)
            self.say(f"{response_header(group, response)} (found in {seconds_said(seconds)})"
                     if columns["critical"].any() else
                     f"Response #{response}: no prefix without a correct completion among those tried "
                     f"({seconds_said(seconds)}); allow more prefixes to search them all")

        await self._busy(find, show)

    async def _busy(self, work, show) -> None:
        """Await `work()` with the buttons disabled and progress shown, then `show(result,
        seconds)`; errors are reported on the page."""
        started = time.monotonic()
        self.worker.cancel.clear()
        self.button.disabled = self.critical_button.disabled = True
        self.progress.visible = self.progress.active = self.cancel_button.visible = True
        try:
            result = await work()
        except Cancelled:
            self.say(f"Cancelled after {seconds_said(time.monotonic() - started)}; the views show the previous "
                     "result.")
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
        self.group_views = [(view, plotly_pane(self._on_group_click, view.name)) for view in panels_for(group, of="group")]
        self._show(response_run(group, response))
        options = {f"{response_label(group, i)}  {preview(text)}": i for i, text in enumerate(group.responses)}
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
        self.views = [(panel, plotly_pane(self._on_click, panel.name)) for panel in panels_for(run)]

        def shown(view, pane):
            exports = figure_buttons(view, lambda: self.drawn[view.name], self.png_export)
            return pn.Column(pane, exports, width=VIEW_WIDTH + 10)

        sections: dict[str, list] = {}  # the group's panels first
        for panel, pane in [*self.group_views, *self.views]:
            sections.setdefault(panel.section, []).append(shown(panel, pane))
        self.run, self.selected, self.page = run, None, 0
        self.sections.objects = [
            pn.Column(pn.pane.HTML(f"<h3>{html.escape(name.replace('_', ' '))}</h3>", sizing_mode="stretch_width"),
                      pn.FlexBox(*views, sizing_mode="stretch_width"),
                      css_classes=["tw-section"], stylesheets=[CSS], sizing_mode="stretch_width")
            for name, views in sections.items()
        ]
        grouped = self.group is not None
        for table_download, kind in zip(self.table_downloads, ("Parquet", "CSV")):
            table_download.param.update(filename=f"{'rollouts' if grouped else 'tokens'}.{kind.lower()}",
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

    def redraw(self) -> None:
        """Draw the views again (a view setting changed)."""
        self._redraw(strip=False)

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
                self._draw(view, pane, lambda: view.render(self.group, token, response=self.response))
            for panel, pane in self.views:
                self._draw(panel, pane, lambda: panel.render(self.run, self.selected, signal=signal,
                                                             **self.view_settings))

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
        position = clicked(event, clicked_position)
        if position is not None:
            self.select(position)

    def _on_group_click(self, event) -> None:
        token = clicked(event, clicked_token)
        if token is not None and 0 <= token[0] < len(self.group):
            self.show_response(*token)

    # ----- exports -------------------------------------------------------------------------
    def _table_bytes(self, kind: str):
        """The table as a file: the group's (every response's tokens) in rollouts mode."""
        return table_bytes(self.group.table if self.group is not None else self.run.table, kind)


def preview(text: str, width: int = 40) -> str:
    """The start of a response on one line, for the response picker."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[:width - 1] + "…"


def _signal_choice(run, column: str) -> str:
    """How the Color-by picker names signal `column`: with the logit lens on show, whether the
    lens draws it (rank, surprisal, entropy) or falls back to rank."""
    if "lens_rank" not in run.arrays or f"lens_{column}" in run.arrays:
        return column
    return f"{column} (logit lens: rank)"
