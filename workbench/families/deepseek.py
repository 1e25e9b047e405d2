"""DeepSeek-V2 / V3: Llama layout with multi-head latent attention; the first
`first_k_dense_replace` layers have a dense MLP (no router), the rest an MoE block with
shared experts and router `mlp.gate`. V2 scores with softmax, V3 with sigmoid plus a
correction bias and group-limited top-k; both scale the weights by `routed_scaling_factor`."""
from .base import FamilyAdapter


class Deepseek(FamilyAdapter):
    name = "deepseek"
    model_types = ("deepseek_v2", "deepseek_v3")
    router_path = "mlp.gate"
