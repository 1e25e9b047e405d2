"""OLMoE: Llama layout (plus q/k norms) with a sparse MoE block; router `mlp.gate`
(no bias) returns (logits W h, weights, ids): softmax over all experts, top-k, weights
renormalized over the k only with `norm_topk_prob` (off in OLMoE-1B-7B: the k weights sum
to less than one). No shared experts."""
from .base import FamilyAdapter


def softmax_topk_rule(config) -> str:
    """The weights of the softmax-then-top-k routers (OLMoE, Qwen-MoE), per `norm_topk_prob`."""
    if getattr(config, "norm_topk_prob", False):
        return "softmax over all experts, top-k, renormalized over the k (norm_topk_prob)"
    return "softmax over all experts, top-k, not renormalized (norm_topk_prob off)"


class Olmoe(FamilyAdapter):
    name = "olmoe"
    model_types = ("olmoe",)
    router_path = "mlp.gate"

    def weights_rule(self, config) -> str:
        return softmax_topk_rule(config)
