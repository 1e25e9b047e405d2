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
A query that may attend to nothing (padding) gets lse = -inf, entropy = nan and adds nothing
to any key's received attention.

The reference walks over blocks of queries and never holds more than two [heads, block, T]
slabs (the shifted scores and their exponentials). One exp per score: with m_i the row
maximum, e_ij = exp(s_ij - m_i) and Z_i = sum_j e_ij,
    lse_i = m_i + log Z_i,   entropy_i = log Z_i - sum_j e_ij (s_ij - m_i) / Z_i,
and the column sums are one matrix-vector product, received += e^T (1 / Z).
GQA/MQA: queries [B, Hq, T, d] share keys [B, Hkv, T, d] in groups of Hq / Hkv (query head h
reads key head h // (Hq / Hkv)), without copying the keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

QUERY_BLOCK = 64  # measured on 2 CPU cores: 64 rows keep a slab in cache (128: 1.3x slower at T = 2048)
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


def score_blocks(q, k, *, causal=True, mask=None, scale=None, block=QUERY_BLOCK) -> Iterator[tuple[int, int, torch.Tensor]]:
    """The scaled scores s = scale * q k^T one block of queries at a time, keys a query may not
    attend to set to MASKED: yields (start, end, scores [B, Hq, end - start, visible]) with
    `visible` the keys any query of the block can see (causal: up to the block's last query).

    q: [B, Hq, Tq, d] (the last Tq positions); k: [B, Hkv, Tk, d]; mask: optional
    [B | 1, 1 | Hq, Tq, Tk], boolean (True = attend) or additive (attend where > min / 2)."""
    batch, heads, t_q, dim = q.shape
    kv_heads, t_k = k.shape[1], k.shape[2]
    if heads % kv_heads:
        raise ValueError(f"query heads ({heads}) must be a multiple of key heads ({kv_heads})")
    group = heads // kv_heads
    scale = dim ** -0.5 if scale is None else scale
    keys_t = k.float().transpose(-1, -2)  # [B, Hkv, d, Tk]
    offset = t_k - t_q
    for start in range(0, t_q, block):
        end = min(start + block, t_q)
        visible = min(t_k, end + offset) if causal else t_k
        queries = (q[:, :, start:end].float() * scale).reshape(batch, kv_heads, group * (end - start), dim)
        scores = torch.matmul(queries, keys_t[..., :visible]).view(batch, heads, end - start, visible)
        first = start + offset + 1  # keys from here on lie after the block's first query
        if causal and visible > first:  # only the diagonal part of the block needs the causal mask
            after = torch.arange(first, visible, device=q.device)[None, :] > torch.arange(start, end, device=q.device)[:, None] + offset
            scores[..., first:visible].masked_fill_(after, MASKED)
        if mask is not None:
            scores.masked_fill_(~attends(mask[..., start:end, :visible]), MASKED)
        yield start, end, scores


def attends(mask: torch.Tensor) -> torch.Tensor:
    """Where a mask lets a query attend: a boolean mask as is (True = attend); an additive
    float mask where it is above half its dtype's minimum (0 attends, min or -inf does not)."""
    return mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2


def attention_stats_reference(q, k, *, causal=True, mask=None, sink=1, key_subset=None, top_k=0,
                              scale=None, sink_logits=None, block=QUERY_BLOCK) -> AttentionStats:
    """q: [B, Hq, Tq, d]; k: [B, Hkv, Tk, d]; mask: optional [B | 1, 1 | Hq, Tq, Tk];
    key_subset: optional [Tk] bool; sink_logits: optional [Hq] (learned per-head sink)."""
    batch, heads, t_q, _ = q.shape
    t_k = k.shape[2]
    fp = dict(dtype=torch.float32, device=q.device)
    lse, entropy, sink_mass = (torch.empty(batch, heads, t_q, **fp) for _ in range(3))
    subset_mass = torch.empty(batch, heads, t_q, **fp) if key_subset is not None else None
    received = torch.zeros(batch, heads, t_k, **fp)
    topk_ids = torch.full((batch, heads, t_q, top_k), -1, dtype=torch.int64, device=q.device) if top_k else None
    topk_probs = torch.zeros(batch, heads, t_q, top_k, **fp) if top_k else None  # -1 / 0 past the visible keys
    sinks = None if sink_logits is None else sink_logits.float().view(1, heads, 1, 1)

    for start, end, scores in score_blocks(q, k, causal=causal, mask=mask, scale=scale, block=block):
        visible = scores.shape[-1]
        top = scores.amax(-1, keepdim=True)  # [B, H, q, 1]
        if sinks is not None:
            top = torch.maximum(top, sinks)
        shifted = scores.sub_(top)  # in place: s - m <= 0
        e = torch.exp(shifted)  # [B, H, q, visible]
        z = e.sum(-1)  # [B, H, q]
        e_dot_s = shifted.mul_(e).sum(-1)  # in place: sum_j e_ij (s_ij - m_i); masked keys give 0 * floor = 0
        top = top[..., 0]
        if sinks is not None:  # the sink outcome's own terms
            sink_shifted = sinks[..., 0] - top
            e_sink = sink_shifted.exp()
            z, e_dot_s = z + e_sink, e_dot_s + e_sink * sink_shifted
        dead = top < MASKED / 2  # no visible key and no sink: padding
        inv_z = torch.where(dead, 0.0, z.reciprocal())  # [B, H, q]
        log_z = z.log()
        lse[:, :, start:end] = torch.where(dead, float("-inf"), top + log_z)
        entropy[:, :, start:end] = torch.where(dead, float("nan"), log_z - e_dot_s * inv_z)
        sink_mass[:, :, start:end] = e[..., :sink].sum(-1) * inv_z
        if key_subset is not None:
            subset_mass[:, :, start:end] = e[..., key_subset[:visible]].sum(-1) * inv_z
        if top_k:
            values, ids = e.topk(min(top_k, visible), dim=-1)
            topk_ids[:, :, start:end, :values.shape[-1]] = ids
            topk_probs[:, :, start:end, :values.shape[-1]] = values * inv_z[..., None]
        received[..., :visible] += torch.matmul(inv_z[..., None, :], e)[..., 0, :]  # [B, H, 1, q] @ [B, H, q, visible]
    return AttentionStats(lse, entropy, sink_mass, received, subset_mass, topk_ids, topk_probs)


def attention_rows(q, k, queries, *, causal=True, mask=None, scale=None, sink_logits=None) -> torch.Tensor:
    """Exact attention probabilities of the chosen query positions: [B, Hq, len(queries), Tk]
    (a query that may attend to nothing gets a row of zeros)."""
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
        allowed &= attends(mask[..., index, :])
    scores = scores.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(scores, -1, keepdim=True)
    if sink_logits is not None:
        lse = torch.logaddexp(lse, sink_logits.float().view(1, heads, 1, 1))
    return torch.where(allowed, (scores - lse).exp(), 0.0)


def previous_key_mass(q, k, lse, *, mask=None, scale=None) -> torch.Tensor:
    """Each query's attention on the key just before it, A_i,i-1 = exp(s_i,i-1 - lse_i), from the
    streamed lse: O(T d) per head, no row of scores. q: [B, Hq, Tq, d] (the last Tq positions);
    k: [B, Hkv, Tk, d]; lse: [B, Hq, Tq] (learned sinks, if any, already in it). Returns
    [B, Hq, Tq] float32; 0 for a query with no previous key or one the mask hides from it.
    RAUQ's signal (Vazhentsev et al. 2025): uncertainty-aware heads look away from the previous
    token where the model errs."""
    batch, heads, t_q, dim = q.shape
    kv_heads, t_k = k.shape[1], k.shape[2]
    scale = dim ** -0.5 if scale is None else scale
    previous = torch.arange(t_q, device=q.device) + (t_k - t_q) - 1  # [Tq] key index of each query's predecessor
    has_previous = previous >= 0
    keys = k[:, :, previous.clamp(min=0)].float()  # [B, Hkv, Tq, d]
    grouped = q.float().view(batch, kv_heads, heads // kv_heads, t_q, dim)
    scores = torch.einsum("bhgqd,bhqd->bhgq", grouped, keys).reshape(batch, heads, t_q) * scale
    allowed = has_previous.expand(batch, heads, t_q)
    if mask is not None:
        query_rows = torch.arange(t_q, device=q.device)
        allowed = allowed & attends(mask[..., query_rows, previous.clamp(min=0)])
    return torch.where(allowed & torch.isfinite(lse), (scores - lse.float()).exp(), 0.0)
