"""Shifting Attention to Relevance (Duan et al. 2024, "Shifting Attention to Relevance: Towards
the Predictive Uncertainty Quantification of Free-Form Large Language Models", ACL 2024).

Tokens that carry little meaning ("the", "of") should not weigh as much as the ones that do.
TokenSAR weights each token's surprisal by its relevance, how much the sentence's meaning moves
when the token is removed, with g the cosine similarity of sentence embeddings (similarity.py):
    R_t = 1 - |g(s, s without token t)|,   R~_t = R_t / sum_k R_k
    TokenSAR(s) = sum_t R~_t * (-log p(y_t | y_<t, x))           contributions R~_t s_t, by sum
[NLL (.1, 2, .5), R (.1, .8, .1) -> 1.66]. The paper puts the question x before s in both texts;
we compare the scored tokens' own text, whose embedding a one-token removal moves more. When no
removal moves the embedding (sum R = 0), the weights are uniform (TokenSAR = mean surprisal).

SentenceSAR, over K sampled responses s_1..s_K of one prompt (a Group), lets responses that
agree in meaning lend each other probability, with temperature t (0.001, as LM-Polygraph):
    SentSAR(s_i) = -log( p(s_i) + (1/t) sum_{j != i} g+(s_i, s_j) p(s_j) ),   p(s) = P(s | x)
    SentenceSAR = (1/K) sum_i SentSAR(s_i)                       contributions SentSAR(s_i), by mean
with g+ = max(g, 0). The paper's g (and the authors' and LM-Polygraph's code: the cross-encoder
stsb-roberta-large, a sigmoid score) lies in [0, 1]; our cosine lies in [-1, 1], and a negative
one would take probability away, down to a negative argument of the log (NaN) [p (.01, .02),
g_12 = -.5, t = .001: -log(.01 - 10)]. Clamped, a response unrelated or opposite in meaning
lends nothing [-> (-log .01, -log .02)].
SAR, the paper's combination, puts the token-shifted p'(s) = exp(-TokenSAR(s)) in place of p(s).
"""
from __future__ import annotations

import numpy as np

from .probability import token_estimate
from .registry import Context, Estimate, combine, register_estimator
from .similarity import default_similarity
from .tokens import ScoredTokens

TEMPERATURE = 0.001


def token_relevance(tokens: ScoredTokens, similarity) -> np.ndarray:
    """R_t = 1 - |g(text, text without token t)| [N] float64."""
    similarities = similarity.cosine(tokens.text, [tokens.without(i) for i in range(len(tokens))])
    return 1.0 - np.abs(similarities.double().numpy())


def relevance_weighted(surprisal: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """R~_t s_t [N]: the surprisal weighted by the normalized relevance (uniform when sum R = 0)."""
    total = relevance.sum()
    weights = relevance / total if total > 0 else np.full(len(relevance), 1.0 / len(relevance))
    return weights * surprisal


def _similarity(context: Context):
    if context.similarity is None:
        context.similarity = default_similarity()
    return context.similarity


@register_estimator("token_sar", family="sar", needs=("similarity",),
                    description="TokenSAR: surprisal weighted by each token's relevance to the sentence's meaning "
                                "(Duan et al. 2024)")
def token_sar(tokens: ScoredTokens, context: Context) -> Estimate:
    """TokenSAR(s) = sum_t R~_t (-log p(y_t)), R_t = 1 - |g(s, s without t)| (Duan et al. 2024)."""
    relevance = token_relevance(tokens, _similarity(context))
    return token_estimate("token_sar", tokens, relevance_weighted(tokens.surprisal, relevance), "sum",
                          relevance=relevance.tolist())


def sentence_sar_terms(log_p: np.ndarray, similarity: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    """SentSAR(s_i) = -log(p_i + (1/t) sum_{j != i} max(g_ij, 0) p_j) [K], from log p_i [K] and
    the similarity matrix g [K, K] (its diagonal unused; negative similarities lend nothing)."""
    p = np.exp(log_p)
    lending = np.clip(similarity, 0.0, None)
    np.fill_diagonal(lending, 0.0)
    return -np.log(p + lending @ p / temperature)


def _group_estimate(name: str, responses: list[ScoredTokens], log_p: np.ndarray, context: Context) -> Estimate:
    vectors = _similarity(context).embed([tokens.text for tokens in responses]).double().numpy()
    terms = sentence_sar_terms(log_p, vectors @ vectors.T)
    return Estimate(name, combine("mean", terms), terms, np.arange(len(responses)), "mean",
                    {"temperature": TEMPERATURE, "log_p": log_p.tolist()})


@register_estimator("sentence_sar", family="sar", needs=("similarity", "group"),
                    description="SentenceSAR: sampled responses that agree in meaning lend each other probability "
                                "(Duan et al. 2024)")
def sentence_sar(responses: list[ScoredTokens], context: Context) -> Estimate:
    """SentenceSAR = (1/K) sum_i -log(p(s_i) + (1/t) sum_{j != i} g(s_i, s_j) p(s_j)),
    p(s) = P(s | x) = exp(-sum_t s_t) (Duan et al. 2024)."""
    log_p = np.array([-tokens.surprisal.sum() for tokens in responses])
    return _group_estimate("sentence_sar", responses, log_p, context)


@register_estimator("sar", family="sar", needs=("similarity", "group"),
                    description="SAR: SentenceSAR over the token-shifted probabilities exp(-TokenSAR) (Duan et al. 2024)")
def sar(responses: list[ScoredTokens], context: Context) -> Estimate:
    """SAR = SentenceSAR with p'(s) = exp(-TokenSAR(s)) in place of P(s | x) (Duan et al. 2024)."""
    log_p = np.array([-token_sar(tokens, context).score for tokens in responses])
    return _group_estimate("sar", responses, log_p, context)
