"""GPT-OSS: Llama layout, alternating sliding/full attention with sinks; the MoE block
`mlp` holds its router at `mlp.router`, a linear with bias, which returns (logits W h + b,
weights, ids): top-k on the logits, then softmax over the k chosen, which equals softmax
over all experts renormalized over the k. In transformers 4.55-4.57 the router returned
the k probabilities scattered into [N, E] where logits are documented (see routing.py,
which detects that and recomputes the logits). No shared experts."""
from .base import FamilyAdapter


class GptOss(FamilyAdapter):
    name = "gpt_oss"
    model_types = ("gpt_oss",)
    router_path = "mlp.router"

    def weights_rule(self, config) -> str:
        return "top-k of the biased logits, softmax over the k (= softmax renormalized over the k)"
