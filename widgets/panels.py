"""The panel registry: every signal family contributes its views here, and the notebook
explorer and the served dashboard show the panels that apply to a run.

A panel is a pure figure builder: (run, selected position or None) -> plotly Figure. It
never calls a model. `applies(run)` says whether the run carries the data the panel needs
(e.g. routing arrays), so a dense model's run simply shows no routing panels.

    register_panel(Panel("routing.load", "Expert load per layer", applies=has_routing, figure=load_bars))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from workbench.run import Run


@dataclass(frozen=True)
class Panel:
    name: str  # unique, dotted: "<group>.<view>", e.g. "routing.expert_map"
    title: str
    applies: Callable[["Run"], bool]
    figure: Callable[["Run", "int | None"], "go.Figure"]  # (run, selected position) -> figure
    group: str = ""  # tab or section it belongs to; defaults to the name's prefix

    @property
    def section(self) -> str:
        return self.group or self.name.split(".", 1)[0]


PANELS: dict[str, Panel] = {}


def register_panel(panel: Panel) -> Panel:
    PANELS[panel.name] = panel
    return panel


def panels_for(run: "Run") -> list[Panel]:
    """The registered panels that have data in `run`, in registration order."""
    return [panel for panel in PANELS.values() if panel.applies(run)]
