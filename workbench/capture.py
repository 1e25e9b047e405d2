"""One forward pass that captures what the requested signals need, and nothing more.

The model's own logits are never computed here: the backbone returns final hidden states
and signals turn them into vocabulary statistics chunk by chunk, so no [T, V] tensor exists.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .families.routing import Routing
from .models import Model


@dataclass
class Capture:
    model: Model
    ids: torch.Tensor  # [T] int64
    final_hidden: torch.Tensor | None = None  # [T, d], after the final norm
    layer_hidden: list[torch.Tensor] | None = None  # L+1 x [T, d], embeddings first, before the final norm
    routing: dict[int, Routing] | None = None  # MoE layer index -> its router's call, normalized


def run_forward(model: Model, ids: list[int], needs: set[str]) -> Capture:
    """Run the backbone once on `ids` (batch of one) and keep what `needs` names."""
    input_ids = torch.tensor([ids], device=model.device)
    capture = Capture(model, input_ids[0])
    hooks = []
    if "layer_hidden" in needs:
        capture.layer_hidden = []
        layers = model.adapter.layers(model.hf)
        hooks.append(layers[0].register_forward_pre_hook(_keep_input(capture.layer_hidden), with_kwargs=True))
        hooks += [layer.register_forward_hook(_keep_output(capture.layer_hidden)) for layer in layers]
    if "routing" in needs:
        capture.routing = {}
        hooks += [router.register_forward_hook(_keep_routing(model, index, capture.routing), with_kwargs=True)
                  for index, router in model.adapter.routers(model.hf)]
    try:
        with torch.inference_mode():
            output = model.adapter.backbone(model.hf)(input_ids=input_ids, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    capture.final_hidden = output.last_hidden_state[0]
    return capture


def _first_tensor(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else value[0]


def _keep_input(store: list):
    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        store.append(hidden[0].detach())

    return hook


def _keep_output(store: list):
    def hook(module, args, output):
        store.append(_first_tensor(output)[0].detach())

    return hook


def _keep_routing(model: Model, index: int, store: dict):
    """Normalize the router's call as it happens; its input [T, d] is not kept."""
    def hook(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["hidden_states"]
        store[index] = model.adapter.route(model.hf, index, module, hidden.reshape(-1, hidden.shape[-1]), output)

    return hook
