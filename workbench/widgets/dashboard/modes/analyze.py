"""Analyze mode: the signals of a text (uncertainty always; the others ticked), as a Run."""
from __future__ import annotations

from . import Mode, register

LOGIT_LENS_STAGE = "; the logit lens reads every layer through the lm_head and takes longest"


class AnalyzeControls:
    """The signals to compute besides uncertainty (those `model` has) and the truncate box."""

    def __init__(self, page):
        import panel as pn

        from workbench.signals import SIGNALS

        from ..components import checkbox_class

        # Uncertainty is always computed (the strip and the next-token view need it); these are the others.
        signals = [name for name, spec in SIGNALS.items()
                   if spec.unavailable(page.model) is None and name != "uncertainty"]
        self.signals = pn.widgets.CheckButtonGroup(label="Signals", options=signals, value=[])
        self.truncate = checkbox_class()(text="truncate a text longer than the model's context", value=False,
                                         margin=(12, 10, 0, 30))
        self.row = pn.Row(pn.pane.HTML("<b>Signals</b> uncertainty +", margin=(12, 5, 0, 10)), self.signals,
                          self.truncate)


async def analyze(page):
    controls = page.controls["analyze"]
    kwargs = page.inputs("text")
    signals = ["uncertainty", *controls.signals.value]
    stage = "analyzing" + (LOGIT_LENS_STAGE if "logit_lens" in signals else "")

    def work():
        with page.worker.holding(stage) as model:
            return model.analyze(signals=signals, truncate=controls.truncate.value, **kwargs)

    return await page.worker.in_background(work, page.say)


register(Mode(name="analyze", button="Analyze", compute=analyze, controls=AnalyzeControls, inline=True))
