"""Attention statistics from queries and keys, without materializing T x T.

For one head, query i and the keys j it may attend to (causal: j <= i, and any extra mask):
    s_ij = scale * <q_i, k_j>,   A_ij = softmax_j(s_ij)
    lse_i       = logsumexp_j s_ij
    entropy_i   = -sum_j A_ij log A_ij                    (attention entropy, nats)
    sink_i      = sum_{j < sink} A_ij                      (attention-sink mass; Xiao et al. 2023)
    subset_i    = sum_{j in key_subset} A_ij
    received_j  = sum_i A_ij                               (H2O heavy-hitter score; Zhang et al. 2023)
    top-k keys  the k largest A_ij of each query
With learned sink logits (GPT-OSS), each head's softmax has one more outcome that is no key:
it enters lse and the normalization, so a query's mass on real keys sums to less than 1.

The reference walks over blocks of queries and never holds more than one [heads, block, T]
slab of scores. GQA/MQA: queries [B, Hq, T, d] share keys [B, Hkv, T, d] in groups of
Hq / Hkv, without copying the keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

QUERY_BLOCK = 128
MASKED = torch.finfo(torch.float32).min / 2  # score of a key a query may not attend to


@dataclass
class AttentionStats:
    lse: torch.Tensor  # [B, Hq, Tq] fp32
    entropy: torch.Tensor  # [B, Hq, Tq]
    sink_mass: torch.Tensor  # [B, Hq, Tq]
    received: torch.Tensor  # [B, Hq, Tk], column sums over queries
    subset_mass: torch.Tensor | None = None  # [B, Hq, Tq]
    topk_ids: torch.Tensor | None = None  # [B, Hq, Tq, k] int64
    topk_probs: torch.Tensor | None = None  # [B, Hq, Tq, k]


def attention_stats_reference(q, k, *, causal=True, mask=None, sink=1, key_subset=None, top_k=0,
                              scale=None, sink_logits=None, block=QUERY_BLOCK) -> AttentionStats:
    """q: [B, Hq, Tq, d]; k: [B, Hkv, Tk, d]; mask: optional [B, 1 | Hq, Tq, Tk];
    key_subset: optional [Tk] bool; sink_logits: optional [Hq] (learned per-head sink)."""
    batch, heads, t_q, dim = q.shape
    kv_heads, t_k = k.shape[1], k.shape[2]
    if heads % kv_heads:
        raise ValueError(f"query heads ({heads}) must be a multiple of key heads ({kv_heads})")
    group = heads // kv_heads
    scale = dim ** -0.5 if scale is None else scale
    keys = k.float()  # [B, Hkv, Tk, d]
    fp = dict(dtype=torch.float32, device=q.device)
    lse, entropy, sink_mass = (torch.empty(batch, heads, t_q, **fp) for _ in range(3))
    subset_mass = torch.empty(batch, heads, t_q, **fp) if key_subset is not None else None
    received = torch.zeros(batch, heads, t_k, **fp)
    topk_ids = torch.full((batch, heads, t_q, top_k), -1, dtype=torch.int64, device=q.device) if top_k else None
    topk_probs = torch.zeros(batch, heads, t_q, top_k, **fp) if top_k else None  # -1 / 0 past the visible keys
    offset = t_k - t_q  # queries are the last Tq positions
    key_positions = torch.arange(t_k, device=q.device)

    for start in range(0, t_q, block):
        end = min(start + block, t_q)
        # Causal: this block's queries see keys up to end + offset only; the rest stay zero.
        visible = min(t_k, end + offset) if causal else t_k
        queries = q[:, :, start:end].float().view(batch, kv_heads, group, end - start, dim)
        scores = torch.einsum("bhgqd,bhkd->bhgqk", queries, keys[:, :, :visible])
        scores = scores.reshape(batch, heads, end - start, visible).mul_(scale)  # [B, H, q, visible]
        allowed = _allowed(start, end, visible, offset, causal, mask, q.device)
        if allowed is not None:
            # a finite floor instead of -inf: exp gives 0 and p * log p gives 0, all in place
            scores.masked_fill_(~allowed, MASKED)
        block_lse = torch.logsumexp(scores, dim=-1)  # [B, H, q]
        if sink_logits is not None:
            block_lse = torch.logaddexp(block_lse, sink_logits.float().view(1, heads, 1))
        logp = scores.sub_(block_lse[..., None])  # in place: scores -> log p
        p = torch.exp(logp)
        sink_mass[:, :, start:end] = p[..., :sink].sum(-1)
        if key_subset is not None:
            subset_mass[:, :, start:end] = p[..., key_subset[:visible]].sum(-1)
        received[..., :visible] += p.sum(dim=2)
        if top_k:
            values, ids = p.topk(min(top_k, visible), dim=-1)
            topk_ids[:, :, start:end, :values.shape[-1]], topk_probs[:, :, start:end, :values.shape[-1]] = ids, values
        block_entropy = -logp.mul_(p).sum(-1)  # in place: log p -> p log p
        if sink_logits is not None:  # the sink outcome's own term
            p_sink = (sink_logits.float().view(1, heads, 1) - block_lse).exp()
            block_entropy = block_entropy - torch.where(p_sink > 0, p_sink * p_sink.log(), 0.0)
        dead = block_lse < MASKED / 2  # queries that may attend to nothing (padding)
        lse[:, :, start:end] = torch.where(dead, float("-inf"), block_lse)
        entropy[:, :, start:end] = torch.where(dead, float("nan"), block_entropy)
    return AttentionStats(lse, entropy, sink_mass, received, subset_mass, topk_ids, topk_probs)


def _allowed(start, end, visible, offset, causal, mask, device):
    """Which of the visible keys each query in [start, end) may attend to:
    [B | 1, 1 | H, q, visible] bool, or None when all of them may."""
    allowed = None
    if causal and visible > start + offset + 1:  # some keys lie after some query of the block
        queries = torch.arange(start, end, device=device)[:, None] + offset
        allowed = (torch.arange(visible, device=device)[None, :] <= queries)[None, None]
    if mask is not None:
        block = mask[..., start:end, :visible]
        block = block if block.dtype == torch.bool else block > torch.finfo(block.dtype).min / 2
        allowed = block if allowed is None else allowed & block
    return allowed


def attention_rows(q, k, queries, *, causal=True, mask=None, scale=None, sink_logits=None) -> torch.Tensor:
    """Exact attention probabilities of the chosen query positions: [B, Hq, len(queries), Tk]."""
    batch, heads, t_q, dim = q.shape
    kv_heads, t_k = k.shape[1], k.shape[2]
    index = torch.as_tensor(queries, dtype=torch.long, device=q.device)
    chosen = q[:, :, index].float().view(batch, kv_heads, heads // kv_heads, len(index), dim)
    scale = dim ** -0.5 if scale is None else scale
    scores = torch.einsum("bhgqd,bhkd->bhgqk", chosen, k.float()).reshape(batch, heads, len(index), t_k) * scale
    allowed = torch.ones_like(scores, dtype=torch.bool)
    if causal:
        allowed &= torch.arange(t_k, device=q.device)[None, :] <= index[:, None] + (t_k - t_q)
    if mask is not None:
        block = mask[..., index, :]
        allowed &= block if block.dtype == torch.bool else block > torch.finfo(block.dtype).min / 2
    scores = scores.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(scores, -1, keepdim=True)
    if sink_logits is not None:
        lse = torch.logaddexp(lse, sink_logits.float().view(1, heads, 1, 1))
    return (scores - lse).exp()
