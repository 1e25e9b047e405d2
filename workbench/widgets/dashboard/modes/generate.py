"""Generate mode: continue the prompt with the chosen sampler (`page.sampler_controls`), as a Run,
with the sequence uncertainty estimators of `DASHBOARD_ESTIMATORS` (their per-token contributions
color the strip; the panel "estimators.scores" shows their scores). With a draft model served
(`workbench serve --draft MODEL`), a Draft box turns on speculative sampling with γ drafted tokens
per step (`generate(draft=..., gamma=...)`: the same distribution); the run then carries its trace,
which the panel "sampling.speculative" shows, and the status line says the measured tokens per
step beside the expected ones."""
from __future__ import annotations

from workbench import estimators
from workbench.sampler_parameters import DEFAULT_SAMPLER

from ...compare import DEFAULT_GAMMA
from ...speculative import tokens_per_step_said
from ..controls import GAMMA, field_value, resolved
from . import Mode, register, show_run

# The estimators the dashboard adds: those that need no model beyond the one loaded (SAR's
# relevance would load the sentence-similarity model; the notebook and the CLI offer it).
DASHBOARD_ESTIMATORS = ("msp", "perplexity", "mean_entropy", "surprisal_max", "rauq")
GAMMA_LABEL = "γ (drafted per step)"


class DraftControls:
    """The Draft box (speculative sampling with the served draft model, off at first) and γ,
    shown while the box is ticked."""

    def __init__(self, page):
        import panel as pn

        from ..components import checkbox_class, number_field_class

        self.draft = page.draft
        self.on = checkbox_class()(text=f"Draft with {page.draft.name} (speculative sampling)", value=False,
                                   margin=(12, 10, 0, 10))
        self.gamma = number_field_class()(label=GAMMA_LABEL, value=DEFAULT_GAMMA, width=130, visible=False)
        self.on.param.watch(lambda event: setattr(self.gamma, "visible", event.new), "value")
        self.row = pn.Row(self.on, self.gamma, visible=False)

    def arguments(self) -> dict:
        """`generate`'s draft and gamma when the box is ticked (a bad γ: WorkbenchError), else none."""
        return {"draft": self.draft, "gamma": field_value(self.gamma, GAMMA)} if self.on.value else {}


def draft_controls(page) -> DraftControls | None:
    """The page's Draft row; None where the server has no draft model."""
    return None if page.draft is None else DraftControls(page)


async def generate(page):
    kwargs = page.inputs("prompt")
    options = page.sampler_controls.options()
    if "generate" in page.controls:
        options |= page.controls["generate"].arguments()

    def work():
        drafted = f" (speculative, drafted by {options['draft'].name})" if "draft" in options else ""
        with page.worker.holding(f"generating{drafted}") as model:
            run = model.generate(**kwargs, **resolved(options, model, kwargs))
            page.worker.stage = "uncertainty estimators"
            return estimators.annotate(run, estimators.estimate(run, DASHBOARD_ESTIMATORS, model=model))

    return await page.worker.in_background(work, page.say)


def show(page, run, seconds: float) -> None:
    """`show_run`, saying for a speculative run its steps, accepted drafts and tokens per step."""
    info = run.meta.get("speculative")
    note = "" if info is None else (
        f"Speculative sampling with the draft {info['draft']}, γ {info['gamma']}: {info['steps']} steps, "
        f"{info['accepted']} of {info['drafted']} drafts accepted; mean accepted length {tokens_per_step_said(info)}.")
    show_run(page, run, seconds, note)


register(Mode(name="generate", button="Generate", compute=generate, show=show, controls=draft_controls, inline=True,
              sampling=(DEFAULT_SAMPLER["generate"], 1.0, 48), text_label="Prompt",
              available=lambda model: hasattr(model, "generate")))
