"""Rollouts mode: n sampled responses to a question, scored by a named reward against the
expected answer (`exact_answer`, or `numeric_answer` within a tolerance), with GRPO
advantages, Token Hidden Reward and D3S per token, and the critical token of the first wrong
response (rollout definition, within a budget of prefixes; any other wrong response's on
demand: `critical_columns`), as a Group. Rewards are named ones only: nothing typed is run
as code."""
from __future__ import annotations

import numpy as np

from workbench.errors import WorkbenchError
from workbench.sampler_parameters import DEFAULT_SAMPLER, Range

from ..controls import SEED, field_value, resolved
from . import Mode, register, seconds_said, template_note

DEFAULT_QUESTION, DEFAULT_ANSWER = "What is 7 times 8? Answer with a number.", "56"
REWARDS = ("exact answer", "numeric answer")
RESPONSES = Range(1, 64, whole=True)  # in a group, or after each prefix in the critical-token search
PREFIXES = Range(1, 1024, whole=True)  # searched for the critical token
TOLERANCE = Range(0)  # of the numeric reward


class RolloutControls:
    """The expected answer and its reward, the group size, the THR mode and the critical-token
    search (its seed: the sampler row's)."""

    def __init__(self, page):
        import panel as pn

        from ..components import checkbox_class, number_field_class

        self.seed = page.sampler_controls.seed
        self.answer = pn.widgets.TextInput(label="Answer", value=DEFAULT_ANSWER, placeholder="e.g. 56", width=110)
        self.reward_kind = pn.widgets.Select(label="Reward", options=list(REWARDS), value=REWARDS[0], width=140)
        number = number_field_class()
        self.tolerance = number(label="Tolerance", value=0.01, width=90, visible=False)
        self.n = number(label="Responses", value=4, width=90)
        self.thr_mode = pn.widgets.Select(label="THR", options=["auto", "exact", "cheap"], value="auto", width=90)
        self.critical_n = number(label="Critical: completions", value=4, width=140)
        self.critical_budget = number(label="prefixes at most", value=8, width=120)
        self.critical_first = checkbox_class()(text="for the first wrong response", value=True, align="end")
        self.reward_kind.param.watch(lambda event: setattr(self.tolerance, "visible", event.new == "numeric answer"),
                                     "value")
        self.row = pn.Row(self.answer, self.reward_kind, self.tolerance, self.n, self.thr_mode, pn.Spacer(width=20),
                          self.critical_n, self.critical_budget, self.critical_first, visible=False)

    def reward(self):
        """The named reward the answer box asks for."""
        from workbench import rewards

        answer = self.answer.value.strip()
        if not answer:
            raise WorkbenchError("give the expected answer (e.g. 56): a response's reward is 1 when its final "
                                 "answer equals it, else 0")
        if self.reward_kind.value == "exact answer":
            return rewards.exact_answer(answer)
        number = rewards.parse_number(answer)
        if number is None:
            raise WorkbenchError(f"the numeric reward needs a number as the answer, got {answer!r}; "
                                 "or choose the exact-answer reward")
        return rewards.numeric_answer(number, tol=field_value(self.tolerance, TOLERANCE))

    def critical_options(self) -> dict:
        """Keyword arguments of `credit.rollout_critical_tokens`: completions, prefixes, seed."""
        return {"n": field_value(self.critical_n, RESPONSES), "budget": field_value(self.critical_budget, PREFIXES),
                "seed": field_value(self.seed, SEED)}


def critical_columns(worker, group, response: int, options: dict):
    """Success rate after the prefixes of `response` and its critical token (rollout
    definition), as columns for `group.add`. Call holding the model (`worker.holding`)."""
    from workbench import credit

    worker.stage = (f"critical token of response #{response}: {options['n']} completions after each of up to "
                    f"{options['budget']} prefixes")
    return credit.rollout_critical_tokens(worker.model, group, response, progress=False, **options).columns()


async def rollouts(page):
    from workbench import credit

    controls = page.controls["rollouts"]
    kwargs = page.inputs("prompt")
    options = {"n": field_value(controls.n, RESPONSES), "reward": controls.reward(),
               **page.sampler_controls.options(), "thr": None}
    thr, critical = controls.thr_mode.value, controls.critical_options() if controls.critical_first.value else None
    worker = page.worker

    def work():
        with worker.holding(f"sampling {options['n']} responses") as model:
            group = model.rollouts(**kwargs, **resolved(options, model, kwargs))
            worker.stage = f"Token Hidden Reward ({thr})"
            group.add(credit.token_hidden_reward(model, group, mode=thr))
            wrong = np.flatnonzero(~group.correct())
            if critical is not None and len(wrong):
                group.add(critical_columns(worker, group, int(wrong[0]), critical))
            return group

    return await worker.in_background(work, page.say)


def show(page, group, seconds: float) -> None:
    page.show_group(group)
    correct = int(group.correct().sum())
    note = ("" if 0 < correct < len(group) else
            f" Every reward is {group.rewards[0]:g}, so every advantage and THR is 0.")
    page.say(f"{len(group)} responses ({len(group.table)} tokens), {correct} correct, with {page.model.name} "
             f"({page.sampler_controls.said(group.meta)}) in {seconds_said(seconds)}.{note}"
             f"{template_note(group.meta)} Click a token (or a cell) to select it in every view.")


register(Mode(name="rollouts", button="Run rollouts", compute=rollouts, show=show, controls=RolloutControls,
              sampling=(DEFAULT_SAMPLER["rollouts"], 1.0, 24), text_label="Question", default_text=DEFAULT_QUESTION,
              default_chat=f"user: {DEFAULT_QUESTION}", available=lambda model: hasattr(model, "rollouts")))
