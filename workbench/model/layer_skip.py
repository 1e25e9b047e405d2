"""A draft made from the model itself: its first k decoder layers, then its own final norm and
lm_head (the later layers skipped), as in layer-skipping self-speculative decoding (Zhang et al.
2023, "Draft & Verify"; Elhoushi et al. 2024, "LayerSkip"). It shares the model's vocabulary by
construction and needs no other weights; its logits are the logit lens at layer k.
"""
from __future__ import annotations

from torch import nn

from ..errors import WorkbenchError
from .families import adapter_for
from .families.base import resolve


def keep_first_layers(hf: nn.Module, k: int) -> nn.Module:
    """Cut the transformers model `hf` to its first `k` decoder layers, in place (config
    included: `num_hidden_layers` and, where the config has them, `layer_types`), and return it."""
    adapter = adapter_for(hf)
    layers = adapter.layers(hf)
    if not 1 <= k <= len(layers):
        raise WorkbenchError(f"a first-layers draft keeps 1 to {len(layers)} layers, not {k}")
    parent_path, _, name = adapter.layers_path.rpartition(".")
    parent = resolve(adapter.backbone(hf), parent_path) if parent_path else adapter.backbone(hf)
    setattr(parent, name, nn.ModuleList(list(layers)[:k]))
    hf.config.num_hidden_layers = k
    if getattr(hf.config, "layer_types", None) is not None:
        hf.config.layer_types = list(hf.config.layer_types)[:k]
    return hf
