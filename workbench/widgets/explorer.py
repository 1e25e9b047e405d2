"""Linked views of a run in a notebook (ipywidgets + anywidget): `Explorer(run)`,
`run.show()`, and `explore(model)` (a text box and an Analyze button above an explorer).

One selected token for all views: clicking a token in the strip, clicking a point in a
chart or typing a position selects it everywhere. The strip is a two-way anywidget (the
same front-end module as the dashboard's, static/token_strip.js); the charts are plotly
FigureWidgets made from the registered panels (panels.py), one section per panel group,
updated in place when the selection moves. Everything is served by the Jupyter server
from installed packages (anywidget, plotly): no network needed.
"""
from __future__ import annotations

import html
from pathlib import Path

import anywidget
import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
import traitlets

from workbench.errors import WorkbenchError
from workbench.results.run import Run

from .figures import figure_html, figure_png, require_png_export, update_in_place
from .panels import clicked_position, load_builtin_panels, panels_for
from .token_strip import page_count, page_of, page_window, signal_columns, strip_page

STATIC = Path(__file__).parent / "static"
DEFAULT_SIGNAL = "surprisal"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where widgets can be displayed)."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class TokenStripWidget(anywidget.AnyWidget):
    """Two-way token strip: `html` (one page of the strip), `selected` (position or None)."""

    _esm = STATIC / "token_strip.js"
    html = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.Int(None, allow_none=True).tag(sync=True)


FIGURE_WIDTH = 520  # px: two views side by side in a JupyterLab notebook


class Explorer(widgets.VBox):
    """Linked views of `run` for a notebook: token strip (paged for long runs), signal
    picker, position box and every panel that applies to the run, one section per panel
    group. `selected` (position or None) and `signal` are traits: set them from code, or
    observe them."""

    selected = traitlets.Int(None, allow_none=True)
    signal = traitlets.Unicode(DEFAULT_SIGNAL)
    page = traitlets.Int(0)

    def __init__(self, run: Run, signal: str = DEFAULT_SIGNAL, selected: int | None = None):
        super().__init__()
        load_builtin_panels()
        columns = signal_columns(run.table)
        if columns and signal not in columns:
            raise WorkbenchError(f"unknown signal '{signal}'; this run's signal columns are: {', '.join(columns)}")
        self.run, self.n_tokens = run, len(run.table)
        self.panels = panels_for(run)
        self.signal = signal if columns else ""
        self.strip = TokenStripWidget(layout=widgets.Layout(width="100%"))
        self.picker = widgets.Dropdown(options=columns, value=self.signal or None, description="color by",
                                       layout=widgets.Layout(width="240px"))
        self.position = widgets.BoundedIntText(value=0, min=0, max=max(self.n_tokens - 1, 0), description="token #",
                                               layout=widgets.Layout(width="180px"))
        self.previous = widgets.Button(description="◀ previous", layout=widgets.Layout(width="100px"))
        self.next = widgets.Button(description="next ▶", layout=widgets.Layout(width="100px"))
        self.page_label = widgets.HTML()
        self.figures: dict[str, go.FigureWidget] = {}
        self.drawn: dict[str, go.Figure] = {}
        sections: dict[str, list] = {}
        for panel in self.panels:
            figure = self._figure_widget(panel)
            self.figures[panel.name] = figure
            sections.setdefault(panel.section, []).append(figure)
        paging = [self.previous, self.page_label, self.next] if page_count(self.n_tokens) > 1 else []
        self.children = [
            widgets.HBox([self.picker, self.position, *paging]),
            self.strip,
            *[widgets.VBox([widgets.HTML(f"<b>{html.escape(name.replace('_', ' '))}</b>"),
                            widgets.Box(figures, layout=widgets.Layout(display="flex", flex_flow="row wrap"))])
              for name, figures in sections.items()],
        ]
        self.strip.observe(lambda change: setattr(self, "selected", change.new), "selected")
        self.picker.observe(lambda change: setattr(self, "signal", change.new), "value")
        self.position.observe(lambda change: setattr(self, "selected", change.new), "value")
        self.previous.on_click(lambda _button: setattr(self, "page", max(self.page - 1, 0)))
        self.next.on_click(lambda _button: setattr(self, "page", min(self.page + 1, page_count(self.n_tokens) - 1)))
        self.observe(self._on_selected, "selected")
        self.observe(lambda _change: self._redraw(strip=True), "signal")
        self.observe(lambda _change: self._draw_strip(), "page")
        self._draw_strip()
        if selected is not None:
            self.selected = selected

    # ----- views -----------------------------------------------------------------------
    def figure(self, name: str) -> go.Figure:
        """The current figure of panel `name` (e.g. "tokens.signal"), as a plain Figure."""
        panel = next((p for p in self.panels if p.name == name), None)
        if panel is None:
            raise WorkbenchError(f"no panel '{name}' here; panels: {', '.join(p.name for p in self.panels)}")
        return panel.render(self.run, self.selected, signal=self.signal)

    def _render(self, panel) -> go.Figure:
        figure = panel.render(self.run, self.selected, signal=self.signal)
        figure.layout.width = FIGURE_WIDTH
        for trace in figure.data:  # widget messages are strict JSON: NaN (no value) goes as null
            for name, value in trace.to_plotly_json().items():
                if isinstance(value, np.ndarray) and value.dtype.kind == "f" and np.isnan(value).any():
                    trace[name] = np.where(np.isnan(value), None, value)
        return figure

    def _figure_widget(self, panel) -> go.FigureWidget:
        figure = self._render(panel)
        self.drawn[panel.name] = figure  # what the widget was drawn from (the widget also takes zooms)
        widget = go.FigureWidget(figure)

        def on_click(_trace, points, _state):
            if points.xs:
                position = clicked_position(widget.layout.meta, {"x": points.xs[0], "y": points.ys[0]})
                if position is not None and 0 <= position < self.n_tokens:
                    self.selected = position

        for trace in widget.data:
            trace.on_click(on_click)
        widget._workbench_on_click = on_click
        return widget

    def _on_selected(self, change) -> None:
        position = change.new
        if position is not None and not 0 <= position < self.n_tokens:
            self.selected = change.old
            return
        if position is not None:
            self.position.value = position
            if page_of(position) != self.page:
                self.page = page_of(position)  # draws that page; the strip then shows the selection
        self.strip.selected = position
        self._redraw(strip=False)

    def _draw_strip(self) -> None:
        if self.signal:
            self.strip.html = strip_page(self.run, self.signal, self.page).html
        start, stop = page_window(self.page, self.n_tokens)
        self.page_label.value = f"tokens {start}–{stop - 1} of {self.n_tokens}"
        self.previous.disabled, self.next.disabled = self.page == 0, self.page == page_count(self.n_tokens) - 1

    def _redraw(self, *, strip: bool) -> None:
        if strip:
            self._draw_strip()
        for panel in self.panels:
            widget, figure = self.figures[panel.name], self._render(panel)
            if not update_in_place(widget, figure, self.drawn[panel.name]):  # other traces: replace them
                widget.data = []
                widget.add_traces(figure.data)
                widget.layout = figure.layout
                for trace in widget.data:
                    trace.on_click(widget._workbench_on_click)
            self.drawn[panel.name] = figure

    # ----- export ------------------------------------------------------------------------
    def export(self, folder: str | Path, *, png: bool = False) -> list[Path]:
        """Write the table (tokens.parquet, tokens.csv) and every view as standalone HTML
        (plotly.js inlined: opens offline), plus PNG with `png=True` (needs kaleido)."""
        if png:
            require_png_export()  # before anything is written
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.run.table.to_parquet(folder / "tokens.parquet", index=False)
        self.run.table.to_csv(folder / "tokens.csv", index=False)
        written = [folder / "tokens.parquet", folder / "tokens.csv"]
        for panel in self.panels:
            figure, stem = self.figure(panel.name), panel.name.replace(".", "-")
            (folder / f"{stem}.html").write_text(figure_html(figure), encoding="utf-8")
            written.append(folder / f"{stem}.html")
            if png:
                (folder / f"{stem}.png").write_bytes(figure_png(figure))
                written.append(folder / f"{stem}.png")
        return written


def explore(model, text: str = "The capital of France is Paris.", *, signals=("uncertainty",)):
    """A small notebook app: a text box, signal choices and an Analyze button above the
    explorer of the latest run. `model` is a loaded `workbench.Model`."""
    from workbench.signals import SIGNALS

    available = [name for name, spec in SIGNALS.items() if spec.unavailable(model) is None]
    box = widgets.Textarea(value=text, layout=widgets.Layout(width="100%", height="80px"))
    chosen = widgets.SelectMultiple(options=available, value=[s for s in signals if s in available],
                                    description="signals", rows=min(len(available), 4))
    button = widgets.Button(description="Analyze", button_style="primary")
    status = widgets.HTML()
    output = widgets.VBox()
    app = widgets.VBox([box, widgets.HBox([chosen, button]), status, output])

    def analyze(_button=None):
        button.disabled = True
        status.value = "Analyzing…"
        try:
            app.run = run = model.analyze(box.value, signals=list(chosen.value))
        except WorkbenchError as error:
            status.value = f'<span style="color:#b00020">Error: {html.escape(str(error))}</span>'
        else:
            output.children = [Explorer(run)]
            status.value = f"{len(run)} tokens analyzed with {html.escape(model.name)}. Click a token to select it."
        finally:
            button.disabled = False

    button.on_click(analyze)
    app.analyze = analyze
    app.run = None
    analyze()
    return app
