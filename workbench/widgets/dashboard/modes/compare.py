"""Compare mode: the same tokens under two predictors, as a Run with the pair's columns
(`model.compare`): the model (p) against the reference model the server was started with
(`workbench serve --reference MODEL`), or the model under two contexts (texts before the
scored text; with chat messages, two system prompts). Its views are the compare panels
(widgets/compare.py); the draft length gamma of the acceptance view is a control here."""
from __future__ import annotations

from workbench.compare.signals import PAIR_SIGNALS
from workbench.errors import WorkbenchError
from workbench.sampler_parameters import Range

from ...compare import DEFAULT_GAMMA
from ..controls import GAMMA, field_value
from . import Mode, register, seconds_said

TWO_CONTEXTS = "this model under two contexts"
DEFAULT_CONTEXT = "Paris is the capital and largest city of France. "
CONTEXT_LABEL = "Context of p, the model (in a chat: its system prompt)"
REFERENCE_CONTEXT_LABEL = "Context of q, the reference (empty: none)"
BRANCHES = Range(0, 64, whole=True)  # divergent positions continued by both sides
PAIR_SIGNAL = "js"  # what colors the strip after a comparison, unless another pair signal was chosen


class CompareControls:
    """What the model is compared with (the reference model, or itself under two contexts), both
    contexts, the number of branches and gamma."""

    def __init__(self, page):
        import panel as pn

        from ..components import number_field_class

        options = [TWO_CONTEXTS] + ([] if page.reference is None else [reference_choice(page.reference)])
        self.against = pn.widgets.Select(label="Compare with", options=options, value=options[-1], width=280)
        two_contexts = page.reference is None
        # one-line fields: the page keeps one text area, the text's (a context is one paragraph here;
        # the API and the CLI take any text)
        self.context = pn.widgets.TextInput(label=CONTEXT_LABEL, value=DEFAULT_CONTEXT if two_contexts else "",
                                            sizing_mode="stretch_width")
        self.reference_context = pn.widgets.TextInput(label=REFERENCE_CONTEXT_LABEL, value="",
                                                      sizing_mode="stretch_width")
        number = number_field_class()
        self.branches = number(label="Branches", value=4, width=90)
        self.gamma = number(label="γ (draft length)", value=DEFAULT_GAMMA, width=120)
        self.gamma.param.watch(lambda _event: self._gamma_changed(page), "value")
        self.row = pn.Column(pn.Row(self.against, self.branches, self.gamma),
                             pn.Row(self.context, self.reference_context, sizing_mode="stretch_width"),
                             sizing_mode="stretch_width", visible=False)

    def _gamma_changed(self, page) -> None:
        try:
            page.view_settings["gamma"] = field_value(self.gamma, GAMMA)
        except WorkbenchError as error:  # names the field and its allowed values
            page.say(f"Error: {error}", error=True)
            return
        page.redraw()

    def arguments(self, page) -> dict:
        """Keyword arguments of `model.compare` besides the text (a bad field: WorkbenchError)."""
        page.view_settings["gamma"] = field_value(self.gamma, GAMMA)
        reference = None if self.against.value == TWO_CONTEXTS else page.reference
        return {"reference": reference, "context": self.context.value or None,
                "reference_context": self.reference_context.value or None,
                "branches": field_value(self.branches, BRANCHES), "progress": False}


def reference_choice(reference) -> str:
    return f"the reference model {reference.name}"


async def compare(page):
    kwargs = {**page.inputs("text"), **page.controls["compare"].arguments(page)}
    against = "the reference model" if kwargs["reference"] is not None else "the two contexts"

    def work():
        with page.worker.holding(f"comparing with {against}: one forward per side, then the branches") as model:
            return model.compare(**kwargs)

    return await page.worker.in_background(work, page.say)


def show(page, run, seconds: float) -> None:
    page.show_run(run)
    if page.color_by.value not in PAIR_SIGNALS:
        page.color_by.value = PAIR_SIGNAL
    about = run.meta["compare"]
    against = (f"the reference {about['reference']}" if about["form"] == "models"
               else "itself under the other context")
    acceptance = run.table["acceptance"].astype("Float64").mean()
    agree = run.table["top1_agree"].astype("boolean").mean()
    page.say(f"{len(run)} tokens compared: {page.model.name} (p) against {against} (q) in {seconds_said(seconds)}; "
             f"mean acceptance {acceptance:.3f}, top-1 agreement {agree:.0%}. Click a token (or a point in a chart) "
             "to select it in every view.")


register(Mode(name="compare", button="Compare", compute=compare, show=show, controls=CompareControls,
              available=lambda model: hasattr(model, "compare")))
