"""Quantile and max aggregations of token uncertainty (Gupta et al. 2024, "Language Model
Cascades: Token-level uncertainty and beyond", ICLR 2024).

Sum and mean of the per-token uncertainties (msp, perplexity in probability.py) let a long
answer's many easy tokens hide one guessed token; the paper defers on quantiles of the
per-token uncertainty instead ("Chow-Quantile"). With u_t = -log p(y_t | y_<t, x) (or H_t):
    surprisal_max      max_t u_t                 (the least confident token)
    surprisal_q90      Q_0.9(u_1..u_N)           0.9-quantile, linear interpolation
    surprisal_median   Q_0.5(u_1..u_N)
    entropy_max        max_t H_t
The contributions are the u_t themselves; the score is their max or quantile.
"""
from __future__ import annotations

from .probability import token_estimate
from .registry import register_estimator

QUANTILES = {"surprisal_max": ("surprisal", None), "surprisal_q90": ("surprisal", 0.9),
             "surprisal_median": ("surprisal", 0.5), "entropy_max": ("entropy", None)}


def _register(name: str, values: str, q: float | None) -> None:
    what = f"{q:g}-quantile" if q is not None else "max"
    description = f"{what} of the tokens' {values} (LM cascades, Gupta et al. 2024)"

    def compute(tokens, context):
        rule = "max" if q is None else "quantile"
        return token_estimate(name, tokens, getattr(tokens, values), rule, **({} if q is None else {"q": q}))

    compute.__doc__ = f"{what} over the scored tokens of u_t = {values}_t (Gupta et al. 2024, Chow-Quantile)."
    register_estimator(name, family="cascades", description=description)(compute)


for _name, (_values, _q) in QUANTILES.items():
    _register(_name, _values, _q)
