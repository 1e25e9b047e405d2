"""The view registry: every signal family contributes its views here, and the notebook
explorer and the served dashboard show the panels that apply to a run (`panels_for(run)`)
or, for a Group (RL rollouts), to the group (`panels_for(group, of="group")`).

A panel is a pure figure builder: (run, selected position or None) -> plotly Figure. A
group's panel (`of="group"`) is (group, selected (response, position) or None) -> Figure.
It never calls a model. `applies(run)` says whether the run carries the data the panel needs
(e.g. routing arrays), so a dense model's run simply shows no routing panels.

    register_panel(Panel("routing.load", "Expert load per layer", applies=has_routing, figure=load_bars))

View settings: a panel that depends on a setting the views share (today: `signal`, the
table column the token strip is colored by; for a group's panel, `response`, the response
on show) names it in `settings`, and is then called as `figure(run, selected, signal=...)`.
Other panels are called as `figure(run, selected)`.

Linked selection: the views select a token when a point of a panel's figure is clicked,
if the figure says which axis holds token positions, in its layout's `meta`:

    fig.update_layout(meta={"workbench": {"position_axis": "x"}})

Then clicking a point selects position round(point.x) (or .y). Mark the selected token
with a layout shape named "selection" (see figures.py): when only the selection moves, the
views update a figure by a relayout (cheap) instead of drawing it anew.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from workbench.results.run import Run

# Modules that register panels when imported; optional ones may not exist yet.
BUILTIN_MODULES = ("workbench.widgets.figures",)
OPTIONAL_MODULES = ("workbench.widgets.routing", "workbench.widgets.attention", "workbench.widgets.sampling",
                    "workbench.widgets.credit", "workbench.widgets.compare", "workbench.widgets.estimators",
                    "workbench.widgets.speculative", "workbench.widgets.attribution")
KINDS = ("run", "group")  # what a panel shows


@dataclass(frozen=True)
class Panel:
    name: str  # unique, dotted: "<group>.<view>", e.g. "routing.expert_map"
    title: str
    applies: Callable[["Run"], bool]  # (of a group's panel: Callable[[Group], bool])
    figure: Callable[["Run", "int | None"], "go.Figure"]  # (run, selected position) -> figure; of a group's
    # panel: (group, selected (response, position)) -> figure
    group: str = ""  # tab or section it belongs to; defaults to the name's prefix
    settings: tuple[str, ...] = ()  # shared view settings passed to `figure` as keywords
    of: str = "run"  # what it shows: a Run, or a "group"

    def __post_init__(self):
        if self.of not in KINDS:
            raise ValueError(f"panel {self.name}: of={self.of!r}, not one of {KINDS}")

    @property
    def section(self) -> str:
        return self.group or self.name.split(".", 1)[0]

    def render(self, run: "Run", selected: int | None = None, **settings) -> "go.Figure":
        """The figure for `run` with `selected` marked; only the settings this panel
        declares are passed on."""
        return self.figure(run, selected, **{k: v for k, v in settings.items() if k in self.settings})


PANELS: dict[str, Panel] = {}


def register_panel(panel: Panel) -> Panel:
    PANELS[panel.name] = panel
    return panel


def panels_for(result, of: str = "run") -> list[Panel]:
    """The registered panels of `of` (a "run" or a "group") that have data in `result`, in
    registration order."""
    return [panel for panel in PANELS.values() if panel.of == of and panel.applies(result)]


def load_builtin_panels() -> dict[str, Panel]:
    """Import the modules that register the package's panels (the core views first, then
    those of the signal families that are installed). Idempotent."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for module in OPTIONAL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:  # the module exists but something it imports does not
                raise
    return PANELS


def clicked_position(layout_meta, point: dict) -> int | None:
    """The token position a clicked plotly `point` stands for, or None when the figure
    (its layout `meta`) names no position axis."""
    axis = (layout_meta or {}).get("workbench", {}).get("position_axis") if isinstance(layout_meta, dict) else None
    return clicked_index(point.get(axis)) if axis in ("x", "y") else None


def clicked_index(value) -> int | None:
    """A clicked point's coordinate as the whole number it stands for (a token's position,
    a response), or None when it is no number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(round(value))
    return None
