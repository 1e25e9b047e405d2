"""Mixtral: Llama layout with a sparse MoE block; router `mlp.gate` (`MixtralTopKRouter`,
no bias) returns (logits W h, weights, ids): softmax over all experts, top-k, weights
renormalized over the k. No shared experts."""
from .base import FamilyAdapter


class Mixtral(FamilyAdapter):
    name = "mixtral"
    model_types = ("mixtral",)
    router_path = "mlp.gate"

    def weights_rule(self, config) -> str:
        return "softmax over all experts, top-k, renormalized over the k"
