"""One MoE layer's routing, normalized across families.

Every family's router scores the experts from raw logits z = W h (+ b) [N, E] (N tokens,
E routed experts) and sends each token to k of them; families differ in the scoring
function and in how the k weights are formed (each family's adapter documents its rule).
`Routing` keeps what they share: the logits before scoring, the scoring function's name,
the chosen expert ids and the weights the layer applies to their outputs, sorted by weight
(largest first, so column 0 is the top-1 expert), and the weight of always-on shared
experts where the family has them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import WorkbenchError

SCORINGS = ("softmax", "sigmoid")


@dataclass
class Routing:
    logits: torch.Tensor  # [N, E] fp32, before scoring (GPT-OSS: with the router's bias)
    scoring: str  # one of SCORINGS: how the family turns logits into expert scores
    expert_ids: torch.Tensor  # [N, k] int64, sorted by weight, largest first
    weights: torch.Tensor  # [N, k] fp32, as the layer multiplies the experts' outputs
    shared_weight: torch.Tensor | None = None  # [N] fp32 weight of the shared expert(s); None: none
    logits_recomputed: bool = False  # the router handed back probabilities; logits were recomputed


def expert_distribution(logits: torch.Tensor, scoring: str) -> torch.Tensor:
    """The router's distribution over all E experts [N, E], whose entropy is the router
    entropy: softmax(z) for softmax routers; sigmoid(z) / sum sigmoid(z) for sigmoid routers
    (DeepSeek-V3's affinities, normalized as it normalizes the chosen k)."""
    if scoring == "softmax":
        return torch.softmax(logits, dim=-1)
    if scoring == "sigmoid":
        scores = torch.sigmoid(logits)
        return scores / scores.sum(dim=-1, keepdim=True)
    raise ValueError(f"unknown scoring '{scoring}'; known: {', '.join(SCORINGS)}")


def looks_like_probabilities(values: torch.Tensor, atol: float = 1e-3) -> bool:
    """Rows that are nonnegative and sum to one: a router handed back probabilities (or
    top-k probabilities scattered into [N, E]) where raw logits are documented."""
    if values.ndim != 2 or values.shape[-1] < 2 or not bool((values >= 0).all()):
        return False
    return bool(torch.allclose(values.double().sum(-1), torch.ones(values.shape[0], dtype=torch.float64), atol=atol))


def normalize(router: nn.Module, hidden: torch.Tensor, output, scoring: str) -> Routing:
    """A transformers (>= 5) router call -> `Routing`. hidden: the router's input [N, d];
    output: what its forward returned, (logits [N, E], top-k weights [N, k], top-k ids [N, k]).

    Element 0 is checked: if its rows are probabilities rather than logits (as GPT-OSS's
    router returned in transformers 4.55-4.57: the softmax over the top k scattered into
    [N, E]), the logits are recomputed from the router's input, weight and bias.
    """
    if not (isinstance(output, tuple) and len(output) == 3):
        got = f"a tuple of {len(output)}" if isinstance(output, tuple) else type(output).__name__
        raise WorkbenchError(
            f"the router {type(router).__name__} returned {got}; routing capture expects "
            "(logits, top-k weights, top-k ids) as transformers >= 5 routers return"
        )
    first, weights, ids = output
    logits, recomputed = first.detach(), False
    if looks_like_probabilities(logits):
        logits = F.linear(hidden.to(router.weight.dtype), router.weight, getattr(router, "bias", None))
        recomputed = True
    weights = weights.detach().float()
    order = weights.argsort(dim=-1, descending=True, stable=True)
    return Routing(
        logits=logits.float(),
        scoring=scoring,
        expert_ids=ids.detach().long().gather(-1, order),
        weights=weights.gather(-1, order),
        logits_recomputed=recomputed,
    )
