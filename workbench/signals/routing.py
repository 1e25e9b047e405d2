"""Mixture-of-experts routing of every token at every MoE layer.

Each MoE layer's router scores the E routed experts from its logits z [T, E] and sends
each token to k of them with weights w [T, k]; the rule differs per family (softmax or
sigmoid scoring, renormalized or not, scaled or not: see `workbench/model/families/` and
`run.meta["routing"]`). Router entropy is the entropy of the router's distribution over
all experts, H = -sum_e p_e log p_e with p = softmax(z) (sigmoid routers: sigmoid(z)
normalized to sum one), in nats: log E when the router cannot tell the experts apart, 0
when it is sure.

Arrays, with m indexing the MoE layers (model layer indices in `routing_layers`):
    routing_expert_ids [m, T, k]  int64, sorted by weight, largest first (column 0: top-1)
    routing_weights    [m, T, k]  the weights the layer applies to the chosen experts
    routing_entropy    [m, T]     router entropy (nats)
    routing_logits     [m, T, E]  router logits before scoring
    routing_layers     [m]        model layer index of each MoE layer
    routing_shared_weight [m, T]  weight of the always-on shared expert(s) (Qwen2-MoE:
                                  its sigmoid gate; DeepSeek: 1); only for families with one
Table columns: `experts` (the top-1 expert at each MoE layer, a list per token) and
`router_entropy` (mean over the MoE layers). Corpus statistics (load, imbalance,
inter-layer affinity, specialization, stability) are in `workbench.routing_stats`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..model.families.routing import expert_distribution
from .registry import Column, SignalOutput, register

ROUTING_ARRAYS = ("routing_expert_ids", "routing_weights", "routing_entropy", "routing_logits", "routing_layers",
                  "routing_shared_weight")


def _unavailable(model) -> str | None:
    return ("this model has no MoE layers (workbench:tiny-moe is an embedded one to try)"
            if not model.adapter.routers(model.hf) else None)


def _memory_bytes(model, n_tokens: int) -> int:
    routers = model.adapter.routers(model.hf)
    # per token and MoE layer: fp32 logits and their distribution [E], ids and weights [k] (k <= E)
    return n_tokens * sum(router.weight.shape[0] * (4 + 8 + 8 + 4) for _, router in routers)


def router_entropy(logits: torch.Tensor, scoring: str) -> torch.Tensor:
    """H(p) in nats for each row of logits [N, E], p the router's distribution (float64)."""
    return torch.special.entr(expert_distribution(logits.double(), scoring)).sum(-1)


@register(
    "routing",
    description="top-k experts, weights and router entropy of every token at every MoE layer",
    needs=("routing",),
    columns=("experts", Column("router_entropy", label="router H", unit="nats", terminal=True)),
    arrays=ROUTING_ARRAYS,
    unavailable=_unavailable,
    memory_bytes=_memory_bytes,
)
def routing(capture, params) -> SignalOutput:
    layers = sorted(capture.routing)
    routes = [capture.routing[index] for index in layers]
    entropy = np.stack([router_entropy(r.logits, r.scoring).cpu().numpy() for r in routes])  # [m, T]
    arrays = {
        "routing_expert_ids": np.stack([r.expert_ids.cpu().numpy() for r in routes]).astype(np.int64),
        "routing_weights": np.stack([r.weights.cpu().numpy() for r in routes]).astype(np.float32),
        "routing_entropy": entropy.astype(np.float32),
        "routing_logits": np.stack([r.logits.cpu().numpy() for r in routes]).astype(np.float32),
        "routing_layers": np.array(layers, dtype=np.int64),
    }
    if routes[0].shared_weight is not None:
        arrays["routing_shared_weight"] = np.stack([r.shared_weight.cpu().numpy() for r in routes]).astype(np.float32)
    top1 = arrays["routing_expert_ids"][:, :, 0].T  # [T, m]
    columns = {
        "experts": [row.tolist() for row in top1],
        "router_entropy": pd.array(entropy.mean(axis=0), dtype="Float64"),
    }
    config = capture.model.hf.config
    meta = {"routing": {
        **capture.model.adapter.routing_rule(config),
        "top_k": int(arrays["routing_expert_ids"].shape[-1]),
        "n_experts": int(arrays["routing_logits"].shape[-1]),
        "layers": layers,
        "logits_recomputed": any(r.logits_recomputed for r in routes),
    }}
    return SignalOutput(columns=columns, arrays=arrays, meta=meta)
