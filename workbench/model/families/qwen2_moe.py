"""Qwen2-MoE / Qwen3-MoE: Llama layout with a sparse MoE block; router `mlp.gate`
(no bias) returns (logits W h, weights, ids): softmax over all experts, top-k, weights
renormalized over the k only with `norm_topk_prob`. Qwen2-MoE also has one shared expert,
always on, whose output is scaled per token by sigmoid(`mlp.shared_expert_gate` h): that
gate is not a router, and its value is the shared expert's weight. Qwen3-MoE has no shared
expert. ChatML template when a checkpoint ships none."""
import torch
from torch import nn

from .base import FamilyAdapter, resolve
from .olmoe import softmax_topk_rule
from .qwen2 import CHATML


class Qwen2Moe(FamilyAdapter):
    name = "qwen2_moe"
    model_types = ("qwen2_moe", "qwen3_moe")
    router_path = "mlp.gate"
    shared_gate_path = "mlp.shared_expert_gate"
    default_chat_template = CHATML

    def shared_weight(self, layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor | None:
        gate = resolve(layer, self.shared_gate_path)
        return None if gate is None else torch.sigmoid(gate(hidden)).float()[:, 0]

    def weights_rule(self, config) -> str:
        return softmax_topk_rule(config)

    def shared_experts(self, config) -> int:
        return int(config.model_type == "qwen2_moe")
