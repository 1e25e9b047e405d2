"""GPT-2: blocks at `transformer.h`, final LayerNorm at `transformer.ln_f`."""
from .base import FamilyAdapter


class GPT2(FamilyAdapter):
    name = "gpt2"
    model_types = ("gpt2",)
    layers_path = "h"
    norm_path = "ln_f"
