"""GPT-OSS: Llama layout, alternating sliding/full attention with sinks; the MoE block
`mlp` holds its router at `mlp.router` (a linear with bias): top-k on the logits, then
softmax over the k chosen."""
from .base import FamilyAdapter


class GptOss(FamilyAdapter):
    name = "gpt_oss"
    model_types = ("gpt_oss",)
    router_path = "mlp.router"
