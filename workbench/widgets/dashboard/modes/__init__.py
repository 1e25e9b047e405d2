"""The dashboard's modes, one module each, in one registry (`MODES`).

A mode is what the Mode picker offers: its own controls, the work its button starts, and
how its result is shown. To add a mode:

1. Write `workbench/widgets/dashboard/modes/<name>.py` that ends with
   `register(Mode(name=..., button=..., compute=..., ...))` (see `Mode`'s fields; analyze.py
   is the smallest example, rollouts.py has its own controls and shows a Group):
   - `compute(page)`: an async function; it reads the controls first (a bad value raises a
     WorkbenchError, shown on the page, before any work), then returns
     `await page.worker.in_background(work, page.say)` where `work()` runs in a thread and calls
     the model only inside `with page.worker.holding("what it does") as model:`.
   - `show(page, result, seconds)`: shows the result; the default, `show_run`, shows a Run
     (`page.show_run`) and says what was done. A Group: `page.show_group(group)`.
   - `controls(page)`: builds the mode's own controls once per session: an object whose
     `row` (a Panel row) is shown in this mode only (or None: none on this page, e.g. generate's
     Draft row where the server has no draft model); the page keeps it as
     `page.controls[name]`, where `compute` reads it. `sampling=(sampler, temperature, new
     tokens)` instead (or as well) shows the shared sampler row (`page.sampler_controls`,
     keyword arguments by `page.sampler_controls.options()`). A controls object may also have
     a `below` (a Panel object), shown under the status line in this mode only (corpus.py: its
     overview charts).
   - `takes_text=False`: the mode reads no text, and the text box is hidden in it (corpus).
   - `available(model)`: whether this model can do it (default: always).
2. Add the module's name to `MODULES` below (the picker's order).

No other module changes: the page builds the picker, the button label, the rows, the text
box's label and default text from the registry. Views are not registered here: a result's
views are the panels of the one view registry (`widgets.panels`) that apply to it:
`panels_for(run)`, and for a Group `panels_for(group, of="group")` as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from ..layout import Dashboard

DEFAULT_TEXT = "The capital of France is Paris."
DEFAULT_CHAT = "user: What is the capital of Italy?\nassistant: The capital of Italy is Rome."
STOPPED = {"eos": " (the model ended its text)", "stop": " (a stop string appeared)"}  # why generation ended early
MODULES = ("analyze", "generate", "rollouts", "compare", "attribute", "corpus")  # one per mode, in the Mode picker's order


def show_run(page: Dashboard, run, seconds: float, note: str = "") -> None:
    """Show `run` on `page` and say what was done (tokens analyzed or generated, and why
    generation ended early), with what model and sampler, in how long, then `note` (a sentence
    a mode adds)."""
    page.show_run(run)
    done = (f"{run.meta['n_generated']} tokens generated{STOPPED.get(run.meta.get('stop_reason'), '')}"
            if "n_generated" in run.meta else f"{len(run)} tokens analyzed")
    sampler = f" ({page.sampler_controls.said(run.meta)})" if "sampler" in run.meta else ""
    page.say(f"{done} with {page.model.name}{sampler} in {seconds_said(seconds)}.{template_note(run.meta)}"
             f"{' ' + note if note else ''} Click a token (or a point in a chart) to select it in every view.")


@dataclass(frozen=True)
class Mode:
    """One mode of the dashboard (see the module's docstring for how to add one)."""

    name: str  # the Mode picker's option
    button: str  # the label of the button that starts its work
    compute: Callable[[Dashboard], Awaitable[Any]]  # async: the result (a Run or a Group)
    show: Callable[[Dashboard, Any, float], None] = show_run  # (page, result, seconds it took)
    controls: Callable[[Dashboard], Any] | None = None  # its own controls (an object with a `row`)
    inline: bool = False  # its controls' row stands beside the button (short rows)
    sampling: tuple[str, float, int] | None = None  # (sampler, temperature, new tokens) it starts with
    text_label: str = "Text"  # the text box's label (with chat messages: the messages')
    default_text: str = DEFAULT_TEXT  # the text box's text it starts with
    default_chat: str = DEFAULT_CHAT  # the same as chat messages
    available: Callable[[Any], bool] = lambda model: True  # whether `model` can do it
    takes_text: bool = True  # whether it reads the text box (hidden in a mode that does not)


MODES: dict[str, Mode] = {}  # name -> Mode, in the picker's order


def register(mode: Mode) -> Mode:
    """Add `mode` to `MODES` (called once by its module, on import)."""
    MODES[mode.name] = mode
    return mode


def load_modes() -> dict[str, Mode]:
    """Every mode of `MODULES`, registered by importing its module."""
    for module in MODULES:
        import_module(f".{module}", __name__)
    return dict(MODES)


def seconds_said(seconds: float) -> str:
    return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"


def template_note(meta: dict) -> str:
    """The status line's note on a system prompt that the chat template added on its own."""
    system = meta.get("template_system_prompt")
    if system is None:
        return ""
    return (f' The model\'s chat template added its default system prompt ("{system}"); to replace it, start the '
            "chat messages with a 'system:' line.")
