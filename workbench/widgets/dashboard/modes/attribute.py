"""Attribute mode: which tokens of the text made the model produce each token of a
continuation (typed, or generated greedily), by the chosen method (`model.attribute`), as a
Run whose views are the attribution panels (`widgets.attribution`): click a continuation token
and the source strip, the matrix row and the word bars follow it."""
from __future__ import annotations

from workbench.errors import WorkbenchError
from workbench.sampler_parameters import Range

from ..controls import field_value
from . import Mode, register, seconds_said

METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "occlusion", "reagent")  # pipelines.attribute
NEW_TOKENS = Range(1, 256, whole=True)
STEPS = Range(1, 512, whole=True)
DEFAULT_PROMPT, DEFAULT_CONTINUATION = "The capital of France is", " Paris."


class AttributeControls:
    """The continuation (empty: generate), the number of tokens to generate, the method, its
    integrated-gradient steps and occlusion level, and a foil to contrast with."""

    def __init__(self, page):
        import panel as pn

        from ..components import number_field_class

        number = number_field_class()
        self.continuation = pn.widgets.TextInput(label="Continuation", value=DEFAULT_CONTINUATION, width=200,
                                                 placeholder="empty: generate")
        self.new_tokens = number(label="New tokens (no continuation)", value=8, width=170)
        self.method = pn.widgets.Select(label="Method", options=list(METHODS), value="saliency", width=170)
        self.steps = number(label="IG steps", value=16, width=80)
        self.level = pn.widgets.Select(label="Occlusion level", options=["token", "word", "sentence"], value="token",
                                       width=120)
        self.foil = pn.widgets.TextInput(label="Foil (optional)", value="", width=110, placeholder="one token")
        self.row = pn.Row(self.continuation, self.new_tokens, self.method, self.steps, self.level, self.foil,
                          visible=False)

    def options(self) -> dict:
        """model.attribute's keyword arguments; a bad field raises a WorkbenchError naming it."""
        continuation = self.continuation.value
        options = {"method": self.method.value, "steps": field_value(self.steps, STEPS),
                   "level": self.level.value, "foil": self.foil.value or None}
        if continuation:
            return {**options, "continuation": continuation}
        return {**options, "max_new_tokens": field_value(self.new_tokens, NEW_TOKENS)}


async def attribute(page):
    controls = page.controls["attribute"]
    inputs = page.inputs("prompt")
    if "prompt" not in inputs:
        raise WorkbenchError("attribute mode takes plain text: choose 'Text' instead of chat messages")
    options = controls.options()

    def work():
        with page.worker.holding(f"attributing with {options['method'].replace('_', ' ')}") as model:
            return model.attribute(inputs["prompt"], **options)

    return await page.worker.in_background(work, page.say)


def show(page, run, seconds: float) -> None:
    page.show_run(run)
    info = run.meta["attribution"]
    page.say(f"{len(info['targets'])} tokens attributed by {info['method'].replace('_', ' ')} with {page.model.name} "
             f"in {seconds_said(seconds)}. Click a continuation token to see what it was attributed to.")


register(Mode(name="attribute", button="Attribute", compute=attribute, show=show, controls=AttributeControls,
              text_label="Prompt", default_text=DEFAULT_PROMPT))
