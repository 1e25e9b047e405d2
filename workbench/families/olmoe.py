"""OLMoE: Llama layout (plus q/k norms) with a sparse MoE block; router `mlp.gate`
(softmax over all experts, top-k, renormalized only with `norm_topk_prob`)."""
from .base import FamilyAdapter


class Olmoe(FamilyAdapter):
    name = "olmoe"
    model_types = ("olmoe",)
    router_path = "mlp.gate"
