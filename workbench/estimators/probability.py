"""Information-based estimators from the probabilities of the tokens themselves (the baselines
of every comparison, e.g. Fadeeva et al. 2023, "LM-Polygraph"; Malinin & Gales 2021,
"Uncertainty estimation in autoregressive structured prediction").

With s_t = -log p(y_t | y_<t, x) the surprisal and H_t the entropy of the t-th of N scored tokens:
    msp          -log P(y | x) = sum_t s_t            contributions s_t, combined by sum
    perplexity   exp((1/N) sum_t s_t)                 contributions s_t, combined by exp mean
    mean_entropy (1/N) sum_t H_t                      contributions H_t, combined by mean
"""
from __future__ import annotations

from .registry import Context, Estimate, combine, register_estimator
from .tokens import ScoredTokens


def token_estimate(name: str, tokens: ScoredTokens, values, rule: str, **details) -> Estimate:
    """An estimate whose contributions are per-token `values` [N], combined by `rule`."""
    return Estimate(name, combine(rule, values, q=details.get("q")), values, tokens.positions, rule, details)


@register_estimator("msp", family="probability",
                    description="maximum sequence probability: -log P(y|x), the sum of the tokens' surprisal")
def msp(tokens: ScoredTokens, context: Context) -> Estimate:
    """Maximum sequence probability, as uncertainty: -log P(y | x) = sum_t -log p(y_t | y_<t, x)."""
    return token_estimate("msp", tokens, tokens.surprisal, "sum")


@register_estimator("perplexity", family="probability",
                    description="perplexity exp(mean surprisal) of the scored tokens")
def perplexity(tokens: ScoredTokens, context: Context) -> Estimate:
    """Perplexity exp((1/N) sum_t -log p(y_t | y_<t, x)): the length-normalized sequence probability."""
    return token_estimate("perplexity", tokens, tokens.surprisal, "exp mean")


@register_estimator("mean_entropy", family="probability",
                    description="mean entropy of the next-token distributions over the scored tokens")
def mean_entropy(tokens: ScoredTokens, context: Context) -> Estimate:
    """Mean token entropy (1/N) sum_t H(p_t), H(p) = -sum_v p_v log p_v (Malinin & Gales 2021)."""
    return token_estimate("mean_entropy", tokens, tokens.entropy, "mean")
