"""Attention capture through transformers' `AttentionInterface`.

While capturing, the model's attention implementation is swapped for `workbench_stats`:
a function that receives each layer's post-RoPE queries and (un-repeated, GQA) keys,
delegates the output to the model's own implementation (SDPA, flash or eager, with the
same masks), and hands Q, K and the layer's mask to a callback. `capturing_attention`
streams them to `kernels.attention_stats`: only the per-layer statistics ([heads, T] each)
are kept; no layer's T x T matrix survives the call, and none exists at all unless the
model's own implementation makes one.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import WorkbenchError
from ..kernels import AttentionStats, attention_rows, attention_stats, previous_key_mass

NAME = "workbench_stats"
_LOCK = threading.Lock()  # the interface registry is global: one capture at a time


@dataclass
class AttentionInputs:
    """What one layer's attention call sees, in the form `kernels.attention_stats` takes."""
    layer: int
    query: torch.Tensor  # [B, Hq, T, d], post-RoPE
    key: torch.Tensor  # [B, Hkv, T, d], post-RoPE, not repeated for GQA
    mask: torch.Tensor | None  # [B | 1, 1 | Hq, T, T] boolean or additive; None: causal only
    causal: bool
    scale: float | None  # None: d ** -0.5
    sink_logits: torch.Tensor | None  # [Hq] learned per-head sink logits (GPT-OSS), else None

    def stats(self, **options) -> AttentionStats:
        """`kernels.attention_stats` of this layer (options: sink, key_subset, top_k)."""
        return attention_stats(self.query, self.key, causal=self.causal, mask=self.mask, scale=self.scale,
                               sink_logits=self.sink_logits, **options)

    def rows(self, queries) -> torch.Tensor:
        """Exact attention probabilities of the chosen query positions: [B, Hq, len(queries), T]."""
        return attention_rows(self.query, self.key, queries, causal=self.causal, mask=self.mask, scale=self.scale,
                              sink_logits=self.sink_logits)

    def previous_mass(self, lse: torch.Tensor) -> torch.Tensor:
        """Each query's attention on the key before it, [B, Hq, T], from this layer's streamed
        lse [B, Hq, T] (`kernels.previous_key_mass`)."""
        return previous_key_mass(self.query, self.key, lse, mask=self.mask, scale=self.scale)


@dataclass
class _Capturing:
    delegate_name: str
    on_layer: Callable[[AttentionInputs], None]


_ACTIVE: ContextVar[_Capturing | None] = ContextVar("workbench_attention_capture", default=None)


def _delegate(name: str, module) -> Callable:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name == "eager":  # each family defines its own eager function
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[name]


def _inputs(module, query, key, attention_mask, kwargs) -> AttentionInputs:
    mask = attention_mask
    if mask is not None and mask.dim() == 2:  # flash implementations: [B, T] key padding
        mask = mask[:, None, None, :].bool()
    window = kwargs.get("sliding_window")
    if (mask is None or attention_mask.dim() == 2) and window and key.shape[2] > window:
        raise WorkbenchError(
            "attention statistics need the sliding window as a mask, which this attention implementation "
            "does not build; load the model with attn_implementation='sdpa' or 'eager'"
        )
    return AttentionInputs(module.layer_idx, query.detach(), key.detach(), mask, getattr(module, "is_causal", True),
                           kwargs.get("scaling"), kwargs.get("s_aux"))


def stats_attention(module, query, key, value, attention_mask, **kwargs):
    """The registered attention function: output from the model's own implementation,
    Q [B, Hq, T, d] and K [B, Hkv, T, d] handed to the capture's callback on the side."""
    active = _ACTIVE.get()
    output = _delegate(active.delegate_name, module)(module, query, key, value, attention_mask, **kwargs)
    active.on_layer(_inputs(module, query, key, attention_mask, kwargs))
    return output


@contextmanager
def swapped_attention(hf, name: str, function: Callable, on_layer: Callable):
    """Within the block, `hf` runs `function` (registered as `name`) as its attention, with the
    masks its own implementation builds; `function` finds the model's implementation and
    `on_layer` through `_ACTIVE`. The model's implementation is restored after."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    with _LOCK:
        original = hf.config._attn_implementation
        AttentionInterface.register(name, function)
        # the same masks as the implementation we delegate to ("eager" builds additive ones)
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[original])
        token = _ACTIVE.set(_Capturing(original, on_layer))
        hf.set_attn_implementation(name)
        try:
            yield
        finally:
            hf.set_attn_implementation(original)
            _ACTIVE.reset(token)


@contextmanager
def capturing_queries_keys(hf, on_layer: Callable[[AttentionInputs], None]):
    """Within the block, every attention call of `hf` also calls `on_layer(AttentionInputs)`
    (in layer order, once per layer and forward). The model's implementation is restored after."""
    with swapped_attention(hf, NAME, stats_attention, on_layer):
        yield


@contextmanager
def capturing_attention(hf, on_layer: Callable[[int, AttentionStats], None], *, sink: int = 1, top_k: int = 0):
    """Within the block, every attention call of `hf` also reports its statistics to
    `on_layer(layer_index, AttentionStats)`. The model's implementation is restored after."""
    with capturing_queries_keys(hf, lambda inputs: on_layer(inputs.layer, inputs.stats(sink=sink, top_k=top_k))):
        yield
