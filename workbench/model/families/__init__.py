"""Family adapter registry: `adapter_for(hf)` picks the adapter by `config.model_type`."""
from __future__ import annotations

from torch import nn

from ...errors import WorkbenchError
from .base import FamilyAdapter
from .deepseek import Deepseek
from .gpt2 import GPT2
from .gpt_oss import GptOss
from .llama import Llama
from .mixtral import Mixtral
from .olmoe import Olmoe
from .qwen2 import Qwen2
from .qwen2_moe import Qwen2Moe

ADAPTERS: tuple[FamilyAdapter, ...] = (
    Llama(), Qwen2(), GPT2(), Mixtral(), Qwen2Moe(), Olmoe(), GptOss(), Deepseek(),
)


def adapter_for(hf: nn.Module) -> FamilyAdapter:
    """The adapter for this model's family; the generic decoder layout when the model type
    is unknown but has that layout; a clear error otherwise."""
    model_type = getattr(hf.config, "model_type", None)
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    generic = FamilyAdapter()
    if generic.fits(hf):
        return generic
    raise WorkbenchError(
        f"model type '{model_type}' has no family adapter and not the usual decoder layout; "
        "add one in workbench/model/families/ (see base.py)"
    )


__all__ = ["ADAPTERS", "FamilyAdapter", "adapter_for"]
