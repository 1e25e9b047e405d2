"""Qwen2-MoE / Qwen3-MoE: Llama layout with a sparse MoE block; router `mlp.gate`
(softmax over all experts, top-k, renormalized only with `norm_topk_prob`). Qwen2-MoE also
has a shared expert behind a sigmoid gate, `mlp.shared_expert_gate`, which is not a router.
ChatML template when a checkpoint ships none."""
from .base import FamilyAdapter
from .qwen2 import CHATML


class Qwen2Moe(FamilyAdapter):
    name = "qwen2_moe"
    model_types = ("qwen2_moe", "qwen3_moe")
    router_path = "mlp.gate"
    default_chat_template = CHATML
