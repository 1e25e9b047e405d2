"""DeepSeek-V2 / V3: Llama layout with multi-head latent attention; the first
`first_k_dense_replace` layers have a dense MLP (no router), the rest an MoE block with
`n_shared_experts` always-on shared experts (weight 1) and router `mlp.gate` (fp32, no
bias), which returns (logits W h, weights, ids) with the ids in no particular order.

V2 scores with softmax and takes the top k (greedy, or within the `topk_group` best of
`n_group` expert groups), weights = the k softmax scores x `routed_scaling_factor`, not
renormalized. V3 scores with sigmoid; the k are chosen on sigmoid + `e_score_correction_bias`
(a load-balancing bias, not part of the weights) within the `topk_group` groups whose two
best corrected scores sum highest; weights = the chosen uncorrected sigmoid scores,
renormalized over the k with `norm_topk_prob`, x `routed_scaling_factor`."""
import torch
from torch import nn

from .base import FamilyAdapter


class Deepseek(FamilyAdapter):
    name = "deepseek"
    model_types = ("deepseek_v2", "deepseek_v3")
    router_path = "mlp.gate"

    def router_scoring(self, config) -> str:
        return "sigmoid" if config.model_type == "deepseek_v3" else "softmax"

    def shared_weight(self, layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor | None:
        shared = getattr(layer.mlp, "shared_experts", None)
        return None if shared is None else torch.ones(hidden.shape[0], dtype=torch.float32, device=hidden.device)

    def weights_rule(self, config) -> str:
        scale = config.routed_scaling_factor
        groups = f" within the best {config.topk_group} of {config.n_group} expert groups" if (config.n_group or 1) > 1 else ""
        if config.model_type == "deepseek_v3":
            renorm = "renormalized over the k" if config.norm_topk_prob else "not renormalized"
            return (f"top-k of sigmoid + e_score_correction_bias{groups}; weights = sigmoid of the chosen, "
                    f"{renorm}, x {scale}")
        method = "greedy" if config.topk_method == "greedy" else f"group-limited{groups}"
        return f"softmax over all experts, top-k ({method}), x {scale}, not renormalized"

    def shared_experts(self, config) -> int:
        return int(config.n_shared_experts or 0)
