"""Family adapters: how one model family exposes the parts we read.

Each family's quirks live in one small adapter (nnterp's idea): where the decoder layers,
the final norm and the lm_head are, how final hidden states become logits, where the
MoE routers sit and how their outputs normalize into `Routing` (routing.py), and a chat
template to fall back on. Core code asks the adapter and never reaches into a family's
module names itself.
"""
from __future__ import annotations

import functools
import inspect

import torch
from torch import nn

from .routing import Routing, normalize


def resolve(module: nn.Module, path: str) -> nn.Module | None:
    """Follow a dotted attribute path (`"model.layers"`); None where a step is missing."""
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module



@functools.cache
def _cache_keyword(backbone_class: type) -> str:
    """The keyword under which `backbone_class.forward` takes the KV cache."""
    return "cache" if "cache" in inspect.signature(backbone_class.forward).parameters else "past_key_values"

class FamilyAdapter:
    """The Llama-style layout (`model.layers`, `model.norm`, `lm_head`), shared by most
    decoder-only families; subclasses override only what differs."""

    name = "decoder"
    model_types: tuple[str, ...] = ()
    layers_path = "layers"  # relative to the backbone
    norm_path = "norm"  # relative to the backbone
    router_path: str | None = None  # relative to a decoder layer; None for dense families
    scoring = "softmax"  # MoE families: how the router turns logits into expert scores
    default_chat_template: str | None = None

    def backbone(self, hf: nn.Module) -> nn.Module:
        """The transformer without its lm_head: its forward returns final hidden states."""
        return getattr(hf, hf.base_model_prefix)

    def new_cache(self, hf: nn.Module):
        """An empty KV cache for `forward_cached`."""
        from transformers import DynamicCache

        return DynamicCache(config=hf.config)

    def forward_cached(self, hf: nn.Module, cache, **inputs):
        """The backbone's forward that reads and extends the KV cache `cache`. Transformers
        renamed the keyword `past_key_values` to `cache` in 5.25 (the old name warns until its
        removal in 5.40): pass whichever this version's forward declares."""
        backbone = self.backbone(hf)
        return backbone(**inputs, **{_cache_keyword(type(backbone)): cache}, use_cache=True)

    def layers(self, hf: nn.Module) -> nn.ModuleList:
        layers = resolve(self.backbone(hf), self.layers_path)
        if layers is None:
            raise AttributeError(f"{type(hf).__name__} has no decoder layers at '{self.layers_path}'")
        return layers

    def final_norm(self, hf: nn.Module) -> nn.Module:
        norm = resolve(self.backbone(hf), self.norm_path)
        if norm is None:
            raise AttributeError(f"{type(hf).__name__} has no final norm at '{self.norm_path}'")
        return norm

    def lm_head(self, hf: nn.Module) -> nn.Module:
        return hf.get_output_embeddings()

    def logits(self, hf: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Final-normed hidden states [..., d] -> logits [..., V], as the model's own head
        computes them (including final-logit soft-capping where a family has it)."""
        logits = self.lm_head(hf)(hidden)
        cap = self.softcap(hf)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def softcap(self, hf: nn.Module) -> float | None:
        """Final-logit soft-cap c (logits -> c tanh(logits / c)), None when the family has none."""
        return getattr(hf.config, "final_logit_softcapping", None) or None

    def head(self, hf: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, float | None] | None:
        """(weight [V, d], bias [V] or None, soft-cap or None) such that `logits` equals
        softcap(hidden @ weight^T + bias), for kernels that fuse the lm_head with the
        statistics; None when the lm_head is not a plain linear layer (then use `logits`)."""
        head = self.lm_head(hf)
        if type(head) is not nn.Linear or type(self).logits is not FamilyAdapter.logits:
            return None
        return head.weight, head.bias, self.softcap(hf)

    def routers(self, hf: nn.Module) -> list[tuple[int, nn.Module]]:
        """(layer index, router module) for every MoE layer; empty for dense models."""
        if self.router_path is None:
            return []
        found = []
        for index, layer in enumerate(self.layers(hf)):
            router = resolve(layer, self.router_path)
            if router is not None:
                found.append((index, router))
        return found

    def route(self, hf: nn.Module, index: int, router: nn.Module, hidden: torch.Tensor, output) -> Routing:
        """One call of layer `index`'s router, normalized (see routing.py). hidden: the
        router's input [N, d]; output: what its forward returned."""
        routing = normalize(router, hidden, output, self.router_scoring(hf.config))
        routing.shared_weight = self.shared_weight(self.layers(hf)[index], hidden)
        return routing

    def router_scoring(self, config) -> str:
        return self.scoring

    def shared_weight(self, layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor | None:
        """Per-token weight [N] of the layer's always-on shared expert(s); None when the
        family has none."""
        return None

    def routing_rule(self, config) -> dict:
        """How this family routes, for a run's metadata: scoring function, how the k weights
        are formed (in words), number of shared experts."""
        return {"scoring": self.router_scoring(config), "weights": self.weights_rule(config),
                "shared_experts": self.shared_experts(config)}

    def weights_rule(self, config) -> str:
        return "top-k of the scores"

    def shared_experts(self, config) -> int:
        return 0

    def fits(self, hf: nn.Module) -> bool:
        """Whether this adapter's paths exist on the model (used for unknown model types)."""
        try:
            self.layers(hf)
            self.final_norm(hf)
        except AttributeError:
            return False
        return self.lm_head(hf) is not None
