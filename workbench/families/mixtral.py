"""Mixtral: Llama layout with a sparse MoE block; router `mlp.gate` (`MixtralTopKRouter`):
softmax over all experts, top-k, weights renormalized over the k."""
from .base import FamilyAdapter


class Mixtral(FamilyAdapter):
    name = "mixtral"
    model_types = ("mixtral",)
    router_path = "mlp.gate"
