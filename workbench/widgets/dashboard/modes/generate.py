"""Generate mode: continue the prompt with the chosen sampler (`page.sampler_controls`), as a Run,
with the sequence uncertainty estimators of `DASHBOARD_ESTIMATORS` (their per-token contributions
color the strip; the panel "estimators.scores" shows their scores)."""
from __future__ import annotations

from workbench import estimators
from workbench.sampler_parameters import DEFAULT_SAMPLER

from ..controls import resolved
from . import Mode, register

# The estimators the dashboard adds: those that need no model beyond the one loaded (SAR's
# relevance would load the sentence-similarity model; the notebook and the CLI offer it).
DASHBOARD_ESTIMATORS = ("msp", "perplexity", "mean_entropy", "surprisal_max", "rauq")


async def generate(page):
    kwargs = page.inputs("prompt")
    options = page.sampler_controls.options()

    def work():
        with page.worker.holding("generating") as model:
            run = model.generate(**kwargs, **resolved(options, model, kwargs))
            page.worker.stage = "uncertainty estimators"
            return estimators.annotate(run, estimators.estimate(run, DASHBOARD_ESTIMATORS, model=model))

    return await page.worker.in_background(work, page.say)


register(Mode(name="generate", button="Generate", compute=generate, sampling=(DEFAULT_SAMPLER["generate"], 1.0, 48),
              text_label="Prompt", available=lambda model: hasattr(model, "generate")))
