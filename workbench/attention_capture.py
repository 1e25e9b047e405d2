"""Attention capture through transformers' `AttentionInterface`.

While capturing, the model's attention implementation is swapped for `workbench_stats`:
a function that receives each layer's post-RoPE queries and (un-repeated, GQA) keys,
delegates the output to the model's own implementation (SDPA, flash or eager, with the
same masks), and streams Q, K to `kernels.attention_stats`. Only the per-layer statistics
([heads, T] each) are kept; no layer's T x T matrix survives the call, and none exists at
all unless the model's own implementation makes one.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable

from .kernels import attention_stats

NAME = "workbench_stats"
_LOCK = threading.Lock()  # the interface registry is global: one capture at a time


@dataclass
class _Capturing:
    delegate_name: str
    on_layer: Callable  # (layer index, AttentionStats) -> None
    sink: int
    top_k: int


_ACTIVE: ContextVar[_Capturing | None] = ContextVar("workbench_attention_capture", default=None)


def _delegate(name: str, module) -> Callable:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name == "eager":  # each family defines its own eager function
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[name]


def stats_attention(module, query, key, value, attention_mask, **kwargs):
    """The registered attention function: output from the model's own implementation,
    statistics from Q [B, Hq, T, d] and K [B, Hkv, T, d] on the side."""
    active = _ACTIVE.get()
    output = _delegate(active.delegate_name, module)(module, query, key, value, attention_mask, **kwargs)
    stats = attention_stats(
        query.detach(), key.detach(), causal=getattr(module, "is_causal", True), mask=attention_mask,
        sink=active.sink, top_k=active.top_k, scale=kwargs.get("scaling"), sink_logits=kwargs.get("s_aux"),
    )
    active.on_layer(module.layer_idx, stats)
    return output


@contextmanager
def capturing_attention(hf, on_layer: Callable, *, sink: int = 1, top_k: int = 0):
    """Within the block, every attention call of `hf` also reports its statistics to
    `on_layer(layer_index, AttentionStats)`. The model's implementation is restored after."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    with _LOCK:
        original = hf.config._attn_implementation
        AttentionInterface.register(NAME, stats_attention)
        # the same masks as the implementation we delegate to ("eager" builds additive ones)
        AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS[original])
        token = _ACTIVE.set(_Capturing(original, on_layer, sink, top_k))
        hf.set_attn_implementation(NAME)
        try:
            yield
        finally:
            hf.set_attn_implementation(original)
            _ACTIVE.reset(token)
