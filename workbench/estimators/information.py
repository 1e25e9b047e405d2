"""Pointwise mutual information between an answer and the context before it (its prompt, its
question, a document): how much reading the context raised each answer token's probability
(van der Poel et al. 2022, "Mutual Information Alleviates Hallucinations in Abstractive
Summarization"; one of LM-Polygraph's information-based estimators, Fadeeva et al. 2023).

With x the tokens before the first scored token and y_1..y_N the scored tokens:
    PMI_t = log p(y_t | x, y_<t) - log p(y_t | y_<t)
    pmi   (1/N) sum_t -PMI_t        contributions -PMI_t, combined by mean

A token the context made likely has a large PMI_t (a small contribution); an answer that does
not follow from its context scores high. The unconditional term reads the scored tokens alone,
after the model's BOS when the sequence starts with one; without a BOS the first scored token has
no prediction of its own and is left out (N counts the tokens that have both terms).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import WorkbenchError
from .registry import Context, Estimate, combine, register_estimator
from .tokens import ScoredTokens


def unconditional_surprisal(context: Context, first: int, last: int) -> tuple[np.ndarray, int]:
    """-log p(y_t | y_<t) [n] of the whole sequence's tokens first..last read without what comes
    before them (after the sequence's BOS, kept when it has one), from one forward of the model
    (its memory estimate checked first); and how many leading scored tokens have no such
    prediction (1 without a BOS, else 0)."""
    from ..forward import memory
    from ..forward.capture import run_forward
    from ..signals import SIGNALS, resolve

    model = context.model
    bos = model.tokenizer.bos_token_id
    lead = context.ids[:1] if bos is not None and context.ids[0] == bos else []
    ids = lead + context.ids[first:last + 1]
    uncertainty = resolve(["uncertainty"], model)
    memory.check_signals_fit(model, len(ids), uncertainty)
    columns = SIGNALS["uncertainty"].compute(run_forward(model, ids, {"final_hidden"}), {"top_k": 0}).columns
    # [len(ids)]: row t holds -log p(token t | tokens before it); row 0 has none (<NA> -> NaN)
    surprisal = pd.array(columns["surprisal"], dtype="Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = 1 - len(lead)
    return surprisal[len(lead) + missing:], missing


@register_estimator("pmi", family="information", needs=("model", "context"),
                    description="pointwise mutual information of the answer with the context before it: "
                                "-(1/N) sum_t [log p(y_t | x, y_<t) - log p(y_t | y_<t)]")
def pmi(tokens: ScoredTokens, context: Context) -> Estimate:
    """Negative mean pointwise mutual information -(1/N) sum_t PMI_t, PMI_t = log p(y_t | x, y_<t)
    - log p(y_t | y_<t) (van der Poel et al. 2022)."""
    if context.model is None:
        raise WorkbenchError("pmi reads the answer without its context with the model: give it "
                             "(estimate(run, ['pmi'], model=model))")
    first = int(tokens.positions[0]) + tokens.offset
    last = int(tokens.positions[-1]) + tokens.offset
    if first <= 1 or last - first + 1 != len(tokens):
        raise WorkbenchError("pmi needs a context before the scored tokens, and the scored tokens in one run: a "
                             "generation (its prompt is the context) or a chat's response (the messages before it); "
                             "an analyzed text has none")
    unconditional, missing = unconditional_surprisal(context, first, last)
    if len(tokens) - missing < 1:
        raise WorkbenchError("pmi: no scored token has an unconditional prediction (one token, and no BOS)")
    # -PMI_t = log p(y_t | y_<t) - log p(y_t | x, y_<t) = surprisal with x - surprisal without it
    contributions = tokens.surprisal[missing:] - unconditional
    return Estimate("pmi", combine("mean", contributions), contributions, tokens.positions[missing:], "mean",
                    {"unconditional_surprisal": unconditional})
