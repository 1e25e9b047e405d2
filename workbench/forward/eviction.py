"""Run the model as if its KV cache had evicted keys: each layer's queries see only the keys a
cache policy kept for them.

`evicting_keys(hf, policy)` swaps the model's attention for one that hands each layer's
post-RoPE Q and K (`forward.attention.AttentionInputs`) to `policy`, which returns the keys
each query may see, visible [B, H, T, T] (bool; H = query or KV heads); the layer's output is
then the model's own implementation under that mask. Layer l's Q and K already come from the
evicted cache of the layers below, as in a real decode. One forward over the text replays a
whole generation (teacher forcing), so the predictions' cost of eviction (KL to the full
cache, perplexity) is measured without decoding token by token.

Policies (`h2o_policy`, `keyformer_policy`, `recent_policy`) replay `kv.online_keep` per KV
head from the layer's full attention: short inputs only (T x T per head).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch

from ..errors import WorkbenchError
from ..kv import KEYFORMER_TAU, online_keep
from .attention import _ACTIVE, AttentionInputs, _delegate, _inputs, swapped_attention

NAME = "workbench_evict"
MAX_TOKENS = 1024  # the policies hold [H, T, T] per layer
Policy = Callable[[AttentionInputs], torch.Tensor]


def evicting_attention(module, query, key, value, attention_mask, **kwargs):
    """The registered attention function: the model's own implementation, under the policy's mask."""
    active = _ACTIVE.get()
    inputs = _inputs(module, query, key, attention_mask, kwargs)
    visible = active.on_layer(inputs).to(query.device)  # [B, H, T, T]
    if visible.shape[1] != query.shape[1]:  # one cache per KV head, shared by its query heads
        visible = visible.repeat_interleave(query.shape[1] // visible.shape[1], dim=1)
    if attention_mask is not None:
        if attention_mask.dtype != torch.bool:
            raise WorkbenchError("evicting keys needs a boolean attention mask: load the model with attn_implementation='sdpa'")
        visible = visible & attention_mask
    return _delegate(active.delegate_name, module)(module, query, key, value, visible, **kwargs)


@contextmanager
def evicting_keys(hf, policy: Policy):
    """Within the block, every attention layer of `hf` sees only the keys `policy` keeps."""
    if hf.config._attn_implementation != "sdpa":
        raise WorkbenchError(f"evicting keys runs on SDPA attention; this model uses {hf.config._attn_implementation!r}")
    with swapped_attention(hf, NAME, evicting_attention, policy):
        yield


def _full_weights(inputs: AttentionInputs, tau=None, seed: int | None = None) -> torch.Tensor:
    """Each query head's causal weights over the keys, grouped by KV head: [B, Hkv, G, T, T].
    tau None: the attention A itself; else Keyformer's softmax((x + g) / tau_t), tau linear over
    the queries, g Gumbel noise from a generator seeded with seed + layer."""
    query, key = inputs.query.float(), inputs.key.float()
    batch, heads, t_len, dim = query.shape
    if t_len > MAX_TOKENS:
        raise WorkbenchError(f"replaying eviction holds T x T per head; give at most {MAX_TOKENS} tokens, got {t_len}")
    kv_heads = key.shape[1]
    scale = dim ** -0.5 if inputs.scale is None else inputs.scale
    logits = torch.einsum("bhgqd,bhkd->bhgqk", query.view(batch, kv_heads, heads // kv_heads, t_len, dim), key) * scale
    causal = torch.ones(t_len, t_len, dtype=torch.bool).tril()
    if tau is not None:
        generator = torch.Generator().manual_seed((0 if seed is None else seed) + inputs.layer)
        noise = torch.empty(logits.shape).exponential_(generator=generator).log_().neg_()
        logits = (logits + noise) / torch.linspace(*map(float, tau), t_len)[:, None]
    return torch.softmax(logits.masked_fill(~causal, float("-inf")), -1)


def h2o_policy(heavy: int, recent: int) -> Policy:
    """H2O online (Zhang et al. 2023): scores from the attention each cached key receives."""
    return lambda inputs: online_keep(_full_weights(inputs), heavy, recent)


def keyformer_policy(heavy: int, recent: int, *, tau=KEYFORMER_TAU, seed: int = 0) -> Policy:
    """Keyformer online (Adnan et al. 2024): scores from the Gumbel softmax over the cached keys."""
    return lambda inputs: online_keep(_full_weights(inputs, tau, seed), heavy, recent)


def recent_policy(size: int) -> Policy:
    """A sliding window: each query sees itself and the `size` keys before it."""
    def policy(inputs: AttentionInputs) -> torch.Tensor:
        t_len = inputs.query.shape[2]
        steps = torch.arange(t_len)
        window = (steps[None, :] <= steps[:, None]) & (steps[:, None] - steps[None, :] <= size)
        return window.expand(inputs.query.shape[0], inputs.key.shape[1], t_len, t_len)
    return policy
