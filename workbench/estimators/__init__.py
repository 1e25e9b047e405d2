"""Sequence-level uncertainty estimators, each with the per-token contributions that give its
score, and their evaluation against answer correctness (AUROC, prediction-rejection ratio).

    wb.estimators.estimate(run)                       # every single-sequence estimator
    wb.estimators.estimate(run, ["msp", "token_sar"]) # {name: Estimate(score, contributions, ...)}
    wb.estimators.estimate_group(group, ["sentence_sar", "msp"])
    wb.estimators.contributions_table(run, estimates) # one row per scored token, one column each
    wb.estimators.annotate(run, estimates)            # into the run, for the views (annotate_group: a group)

One module per family registers its estimators (registry.py): probability.py (msp, perplexity,
mean_entropy), cascades.py (quantiles and max of token uncertainty), sar.py (token_sar,
sentence_sar, sar), attention.py (rauq), information.py (pmi: the answer's pointwise mutual
information with the context before it; named, not a default, since an analyzed text has no
context).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import attention, cascades, information, probability, sar  # noqa: F401  (each registers its estimators)
from .evaluation import auroc, prr
from .registry import (ESTIMATORS, Context, Estimate, Estimator, combine, list_estimators, register_estimator,
                       resolve)
from .tokens import ScoredTokens, from_response, from_run, scored_rows

if TYPE_CHECKING:
    from ..model.handle import Model
    from ..results.group import Group
    from ..results.run import Run
    from .similarity import Similarity


def estimate(run: "Run", names=None, *, model: "Model | None" = None,
             similarity: "Similarity | None" = None) -> dict[str, Estimate]:
    """Each named estimator (None: every single-sequence one) on the scored tokens of `run`
    (`tokens.scored_rows`). `model` lets rauq compute attention the run does not hold;
    `similarity` replaces the default all-MiniLM-L6-v2 for SAR's relevance."""
    tokens = from_run(run)
    context = Context(ids=run.table["token_id"].tolist(), arrays=dict(run.arrays), model=model, similarity=similarity)
    return {e.name: e.compute(tokens, context) for e in resolve(names)}


def estimate_group(group: "Group", names=None, *, model: "Model | None" = None,
                   similarity: "Similarity | None" = None) -> dict[str, Estimate]:
    """Each named estimator (None: every one) over the G responses of `group`. A group
    estimator (sentence_sar, sar) gives its own score; a single-sequence estimator is applied to
    each response and its group score is the mean over responses, with contributions the
    per-response scores [G] and details["responses"] the per-response estimates."""
    responses = [from_response(group, i) for i in range(len(group))]
    out = {}
    contexts = [Context(ids=group.prompt_ids + group.response_ids(i), model=model, similarity=similarity)
                for i in range(len(group))]
    for estimator in resolve(names, group=True):
        if "group" in estimator.needs:
            out[estimator.name] = estimator.compute(responses, Context(model=model, similarity=similarity))
            continue
        each = [estimator.compute(tokens, context) for tokens, context in zip(responses, contexts)]
        scores = np.array([e.score for e in each])
        out[estimator.name] = Estimate(estimator.name, combine("mean", scores), scores, np.arange(len(group)), "mean",
                                       {"responses": each})
    return out


def scores(estimates: dict[str, Estimate]) -> dict[str, float]:
    """{name: sequence score}."""
    return {name: e.score for name, e in estimates.items()}


CONTRIBUTION_PREFIX = "contrib_"  # run.table column of an estimator's per-token contributions: contrib_<name>


def annotate(run: "Run", estimates: dict[str, Estimate]) -> "Run":
    """Put single-sequence estimates into `run` for the views: a column contrib_<name> of
    per-token contributions at the estimate's positions (<NA> elsewhere: outside the scored tokens,
    or a scored token an estimator leaves out) and meta["estimators"][name] = {score, combine,
    family, details}. Returns the run, for chaining."""
    record = run.meta.setdefault("estimators", {})
    for name, e in estimates.items():
        column = pd.array([pd.NA] * len(run.table), dtype="Float64")
        column[np.searchsorted(run.table["position"].to_numpy(), e.positions)] = e.contributions
        run.table[CONTRIBUTION_PREFIX + name] = column
        record[name] = _record(name, e)
    return run


def annotate_group(group: "Group", estimates: dict[str, Estimate]) -> "Group":
    """Put `estimate_group` results into `group` for the views: for each single-sequence
    estimator a table column contrib_<name> (each response's per-token contributions), and
    meta["estimators"] = {"group": {name: record}, "responses": [{name: record} per response]},
    records as `annotate` writes them. Returns the group, for chaining."""
    record = group.meta.setdefault("estimators", {"group": {}, "responses": [{} for _ in range(len(group))]})
    for name, e in estimates.items():
        record["group"][name] = _record(name, e)
        for i, each in enumerate(e.details.get("responses", [])):
            record["responses"][i][name] = _record(name, each)
        if "responses" in e.details:
            index = np.concatenate([_rows_at(group.rows(i), each.positions) for i, each in enumerate(e.details["responses"])])
            values = np.concatenate([each.contributions for each in e.details["responses"]])
            group.add(pd.Series(pd.array(values, dtype="Float64"), index=index, name=CONTRIBUTION_PREFIX + name))
    return group


def _rows_at(rows: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
    """The table index of the `rows` (sorted by position) at these `positions`."""
    return rows.index.to_numpy()[np.searchsorted(rows["position"].to_numpy(), positions)]


def _record(name: str, e: Estimate) -> dict:
    """An estimate as JSON-ready metadata: score (None when not finite), rule, family, details."""
    details = {k: v for k, v in e.details.items() if isinstance(v, (int, float, str))}
    return {"score": e.score if np.isfinite(e.score) else None, "combine": e.combine,
            "family": ESTIMATORS[name].family, "details": details}


def contributions_table(run: "Run", estimates: dict[str, Estimate]) -> pd.DataFrame:
    """One row per scored token of `run` (position, token), one column of contributions per
    single-sequence estimate (<NA> where an estimator leaves the token out)."""
    rows = run.table[scored_rows(run)]
    positions = rows["position"].to_numpy()
    table = pd.DataFrame({"position": positions, "token": rows["token"].tolist()})
    for name, e in estimates.items():
        column = pd.array([pd.NA] * len(positions), dtype="Float64")
        column[np.searchsorted(positions, e.positions)] = e.contributions
        table[name] = column
    return table


__all__ = ["CONTRIBUTION_PREFIX", "ESTIMATORS", "Context", "Estimate", "Estimator", "ScoredTokens", "annotate", "annotate_group", "auroc", "combine", "contributions_table",
           "estimate", "estimate_group", "from_response", "from_run", "list_estimators", "prr", "register_estimator",
           "resolve", "scores"]
