"""Generate mode: continue the prompt with the chosen sampler (`page.sampler_controls`), as a Run."""
from __future__ import annotations

from workbench.sampler_parameters import DEFAULT_SAMPLER

from ..controls import resolved
from . import Mode, register


async def generate(page):
    kwargs = page.inputs("prompt")
    options = page.sampler_controls.options()

    def work():
        with page.worker.holding("generating") as model:
            return model.generate(**kwargs, **resolved(options, model, kwargs))

    return await page.worker.in_background(work, page.say)


register(Mode(name="generate", button="Generate", compute=generate, sampling=(DEFAULT_SAMPLER["generate"], 1.0, 48),
              text_label="Prompt", available=lambda model: hasattr(model, "generate")))
