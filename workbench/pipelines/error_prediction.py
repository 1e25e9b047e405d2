"""Which estimator predicts errors: answer a set of questions with known answers, score each
answer with every estimator, and measure how well each score separates wrong answers from right
ones (AUROC, prediction-rejection ratio; `workbench.estimators.evaluation`).

Each question is asked as a chat message and answered greedily (the most likely token at each
step, so the answer is reproducible); correctness is the problem's reward
(`workbench.rewards.exact_answer`). With `samples` > 0, that many responses are also sampled
(top-p 0.9, seeded) for the group estimators (sentence_sar, sar), which score the question.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import estimators
from ..model.handle import Model
from ..results.run import Run
from ..rewards import Problem
from .generate import generate
from .rollouts import rollouts

SAMPLER = "top-p:0.9"  # for the sampled responses of the group estimators


@dataclass
class Answered:
    problem: Problem
    run: Run  # the greedy answer
    response: str  # its generated text
    correct: bool
    estimates: dict[str, "estimators.Estimate"]  # single-sequence estimators on the answer, group ones on the samples


def answer(model: Model, problems: Sequence[Problem], names=None, *, max_new_tokens: int = 24, samples: int = 0,
           seed: int = 0, progress: bool = True) -> list[Answered]:
    """Answer each problem greedily and score the answer with each estimator in `names` (None:
    every single-sequence estimator, and the group ones when `samples` > 0)."""
    chosen = estimators.resolve(names, group=samples > 0)
    single = [e.name for e in chosen if "group" not in e.needs]
    grouped = [e.name for e in chosen if "group" in e.needs]
    out = []
    for k, problem in enumerate(tqdm(problems, desc="answering", disable=not progress)):
        messages = [{"role": "user", "content": problem.question}]
        run = generate(model, messages=messages, sampler="greedy", max_new_tokens=max_new_tokens, progress=False)
        response = run.text[int(run.table.loc[run.table["generated"], "start"].iloc[0]):]
        found = estimators.estimate(run, single, model=model) if single else {}
        if grouped:
            group = rollouts(model, messages=messages, n=samples, sampler=SAMPLER, max_new_tokens=max_new_tokens,
                             seed=seed + k, reward=problem.reward(), thr=None, progress=False)
            found.update(estimators.estimate_group(group, grouped, model=model))
        out.append(Answered(problem, run, response, bool(problem.reward()(response) > 0), found))
    return out


def scores_table(answered: Sequence[Answered]) -> pd.DataFrame:
    """One row per question: question, answer, response, correct, then one score column per estimator."""
    return pd.DataFrame([{"question": a.problem.question, "answer": a.problem.answer, "response": a.response,
                          "correct": a.correct, **estimators.scores(a.estimates)} for a in answered])


def evaluation_table(answered: Sequence[Answered]) -> pd.DataFrame:
    """One row per estimator: family, AUROC and PRR against correctness, best first (by AUROC), and
    how many answers' scores were not finite (AUROC and PRR are NaN then, not a ranking)."""
    return evaluate_scores(scores_table(answered), list(answered[0].estimates) if answered else [])


def evaluate_scores(table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """`evaluation_table` from a scores table (`scores_table`'s columns correct and one per name in
    `names`; a missing score, as a saved report's null, counts as not finite)."""
    correct = table["correct"].to_numpy(bool)
    rows = []
    for name in names:
        values = table[name].to_numpy(np.float64, na_value=np.nan)
        rows.append({"estimator": name, "family": estimators.ESTIMATORS[name].family,
                     "auroc": estimators.auroc(values, correct), "prr": estimators.prr(values, correct),
                     "non_finite": int((~np.isfinite(values)).sum())})
    return pd.DataFrame(rows, columns=["estimator", "family", "auroc", "prr", "non_finite"]).sort_values(
        "auroc", ascending=False, kind="stable", ignore_index=True)
