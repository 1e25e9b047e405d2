"""The dashboard's building blocks as Panel components: the two-way token strip, a labelled
checkbox, a number field that keeps what is typed, buttons with a visible focus ring and
plotly panes that report clicks. Panel is imported on first use (`import workbench.widgets`
does not import it); each component class is defined once per process (`functools.cache`).
"""
from __future__ import annotations

import functools
from pathlib import Path

STATIC = Path(__file__).parent.parent / "static"
VIEW_WIDTH = 560  # px per chart: two side by side on a laptop screen
VIEW_HEIGHT = 400  # px, for figures that do not set their height

CSS = """
.tw-status {font-size: 13px; color: #555; white-space: pre-wrap}
.tw-status.error {color: #b00020}
.tw-section h3 {margin: 14px 0 2px 0; font: 600 15px system-ui, sans-serif; color: #333;
                border-bottom: 1px solid #ddd; padding-bottom: 2px}
"""

# A keyboard focus ring that shows on every button (Panel's: 1 px dotted light grey on the blue one).
FOCUS_RING = ":host .bk-btn:focus-visible {outline: 3px solid #1a4fd6; outline-offset: 2px}"


@functools.cache
def strip_class():
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


@functools.cache
def checkbox_class():
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


@functools.cache
def number_field_class():
    """A field for a number, as a Panel widget class (defined on first use: Panel is imported
    late). It keeps what is typed: a browser's number field reverts a non-number without a
    word (and rounds a large whole number), where `controls.field_value` refuses it by name."""
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


def button(label: str, **options):
    """A button labelled `label` (`options`: Panel's Button keywords), with `FOCUS_RING`."""
    import panel as pn

    return pn.widgets.Button(label=label, stylesheets=[FOCUS_RING], **options)


def download(label: str, filename: str, callback, **options):
    """A light download button labelled `label` that saves what `callback()` returns as
    `filename` (`options`: Panel's FileDownload keywords), with `FOCUS_RING`."""
    import panel as pn

    return pn.widgets.FileDownload(callback=callback, filename=filename, label=label, color="light",
                                   stylesheets=[FOCUS_RING], **options)


def plotly_pane(on_click, name: str):
    """An empty pane for view `name`'s figure; a click on the figure calls `on_click(event)`;
    the camera button saves the chart as `name`.png (plotly's default: newplot.png)."""
    import panel as pn

    config = {"displaylogo": False, "toImageButtonOptions": {"filename": name.replace(".", "-")}}
    pane = pn.pane.Plotly(None, width=VIEW_WIDTH, config=config)
    pane.param.watch(on_click, "click_data")
    return pane


def clicked(event, read):
    """What a plotly pane's click (`event`: its `click_data` changed) stands for: `read(layout
    meta, first point)` (`clicked_position` or `clicked_token`), None without a point."""
    pane, points = event.obj, (event.new or {}).get("points") or []
    return read(pane.object.layout.meta, points[0]) if points and pane.object is not None else None
