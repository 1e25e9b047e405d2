"""KV-cache importance: which keys a cache with a budget would keep, and the scores it ranks by.

H2O (Zhang et al. 2023, "Heavy-Hitter Oracle"): keep the `recent` most recent keys and,
among the others, the `heavy` keys with the largest received attention s_j = sum_i A_ij.
[s = (2.5, .8, .3, .4), heavy 1 + recent 1 -> keys {0, 3}]
`heavy_hitters` chooses in hindsight, from every query's attention. H2O itself runs online
(its Algorithm 1): at step t the new key joins the cache, query t attends to the cached keys
only (its softmax renormalized over them), each cached key's score grows by the attention it
gets, and when the cache holds more than heavy + recent keys the lowest-scored key outside
the recent window is evicted, for good (`online_keep`; ties: the later key goes). With
heavy = 0 the same replay is a plain recent window of `recent` keys.

KV-cache size (`kv_cache_bytes`): a key and a value vector per layer, KV head and token,
2 * L * H_kv * d * T values. Grouped-query attention (GQA, Ainslie et al. 2023: several query
heads share one key/value head) divides it by H_q / H_kv. [L 30, H_kv 3, d 64, T 4096, 2 bytes
-> 94,371,840 bytes; with 9 KV heads three times that]

Keyformer (Adnan et al. 2024, "Keyformer: KV Cache Reduction through Key Tokens Selection"):
rank keys by the accumulated Gumbel-softmax of the pre-softmax scores x_ij instead of A_ij,
    f_j = sum_i softmax_j((x_ij + g_ij) / tau_i),   g_ij ~ Gumbel(0, 1),
with tau rising linearly from tau_start = 1 to tau_end = 2 over the sequence (query i of T
plays generation step i). With g = 0 and tau = 1 it equals H2O's received attention. Select
with `heavy_hitters(f, heavy, recent)`, as Keyformer keeps a recent window plus key tokens.

Zero-TPrune weighted PageRank (Wang et al. 2024, "Zero-TPrune"): s <- A^T s from the uniform
distribution, per head. Designed for bidirectional (ViT) attention: under causal attention
every row leaks mass to earlier keys and the first token's row keeps all of its own, so the
score collapses onto token 0. [A = ((1,0,0), (.5,.5,0), (.2,.3,.5)), one step -> (.5667, .2667, .1667)]
It needs the full T x T attention of each head: short inputs only.
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import WorkbenchError
from .kernels.attention_stats import MASKED, QUERY_BLOCK, score_blocks

KEYFORMER_TAU = (1.0, 2.0)  # the paper's tau_init and tau_end
PAGERANK_MAX_T = 1024  # [L, H, T, T] float32 of the embedded model at T = 1024: 1.1 GB


def heavy_hitters(received: np.ndarray, heavy: int, recent: int) -> np.ndarray:
    """H2O's keep mask along the last axis: received [..., T] scores -> keep [..., T] (bool).

    Each row (a [T] vector, or one layer and head of [L, H, T]) has its own budget: its
    `recent` last keys and, among the others, its `heavy` best-scored keys (ties: the earlier
    key)."""
    received = np.asarray(received, dtype=np.float64)
    if heavy < 0 or recent < 0:
        raise ValueError(f"heavy and recent must be >= 0, got {heavy} and {recent}")
    older = max(received.shape[-1] - recent, 0)  # keys before the recent window
    keep = np.zeros(received.shape, dtype=bool)
    keep[..., older:] = True
    best = np.argsort(-received[..., :older], axis=-1, kind="stable")[..., :heavy]  # stable: ties to the earlier key
    np.put_along_axis(keep, best, True, axis=-1)
    return keep


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, tokens: int, bytes_per_value: int = 2) -> int:
    """2 * L * H_kv * d * T * bytes: the keys and values a decoder caches for `tokens` tokens."""
    return 2 * layers * kv_heads * head_dim * tokens * bytes_per_value


def online_keep(weights: torch.Tensor, heavy: int, recent: int) -> torch.Tensor:
    """H2O's online eviction replayed: which keys each query sees, [..., T, T] (bool, query x key).

    weights [..., G, T, T]: for each of the G query heads that share a cache (GQA; G = 1
    for one head) and each query t, non-negative weights of the keys j <= t (the full causal
    attention A, or Keyformer's exp((x + g) / tau) rows); restricted to the cached keys and
    renormalized they are what query t gives each key, summed over the G heads into the
    key's score. The cache holds at most heavy + recent keys between steps; query t sees
    them and itself. Evicted keys never return."""
    if heavy < 0 or recent < 0:
        raise ValueError(f"heavy and recent must be >= 0, got {heavy} and {recent}")
    if weights.ndim < 3 or weights.shape[-1] != weights.shape[-2]:
        raise WorkbenchError(f"online_keep needs weights [..., G, T, T], got {tuple(weights.shape)}")
    weights = weights.double()
    t_len = weights.shape[-1]
    batch = weights.shape[:-3]
    device = weights.device
    cached = torch.zeros(*batch, t_len, dtype=torch.bool, device=device)
    score = torch.zeros(*batch, t_len, dtype=torch.float64, device=device)
    visible = torch.zeros(*batch, t_len, t_len, dtype=torch.bool, device=device)
    positions = torch.arange(t_len, device=device)
    for t in range(t_len):
        cached[..., t] = True
        visible[..., t, :] = cached
        seen = weights[..., :, t, :] * cached[..., None, :]  # [..., G, T]
        score += (seen / seen.sum(-1, keepdim=True).clamp_min(1e-300)).sum(-2)
        if t + 1 > heavy + recent:  # one key too many: evict the lowest-scored one before the recent window
            candidates = cached & (positions <= t - recent)
            ranked = torch.where(candidates, score, torch.inf).flip(-1)
            victim = t_len - 1 - ranked.argmin(-1, keepdim=True)  # flipped: among ties, the later key
            cached.scatter_(-1, victim, False)
    return visible


def keyformer_scores(q, k, *, tau=KEYFORMER_TAU, seed: int | None = 0, causal=True, mask=None, scale=None,
                     sink_logits=None, block=QUERY_BLOCK) -> torch.Tensor:
    """Keyformer scores f [B, Hq, Tk] from queries [B, Hq, Tq, d] and keys [B, Hkv, Tk, d]
    (masks, GQA and learned sink logits as in `kernels.attention_stats`; the sink outcome gets
    its own noise and temperature and, being no key, no score).

    tau: (tau_start, tau_end), linear over the Tq queries; seed: Gumbel noise drawn from a
    generator with this seed (the same seed gives the same scores), None for no noise (g = 0).
    One [B, Hq, block, Tk] slab at a time, as the attention statistics."""
    tau_start, tau_end = map(float, tau)
    if tau_start <= 0 or tau_end <= 0:
        raise ValueError(f"Keyformer temperatures must be > 0, got {tau}")
    batch, heads, t_q, _ = q.shape
    taus = torch.linspace(tau_start, tau_end, t_q, device=q.device) if t_q > 1 else torch.tensor([tau_start], device=q.device)
    generator = None if seed is None else torch.Generator(device=q.device).manual_seed(seed)
    sinks = None if sink_logits is None else sink_logits.float().view(1, heads, 1, 1)
    scores_out = torch.zeros(batch, heads, k.shape[2], dtype=torch.float32, device=q.device)
    for start, end, scores in score_blocks(q, k, causal=causal, mask=mask, scale=scale, block=block):
        tau_block = taus[start:end, None]  # [q, 1]
        if generator is not None:
            scores.add_(_gumbel(scores.shape, generator))  # masked keys stay at the floor
        scores.div_(tau_block)
        top = scores.amax(-1, keepdim=True)  # [B, H, q, 1]
        if sinks is not None:
            sink = sinks.expand(batch, heads, end - start, 1)
            if generator is not None:
                sink = sink + _gumbel(sink.shape, generator)
            sink = sink / tau_block
            top = torch.maximum(top, sink)
        e = scores.sub_(top).exp_()  # in place: exp((x + g) / tau - m)
        z = e.sum(-1)
        if sinks is not None:
            z = z + (sink - top)[..., 0].exp()
        dead = top[..., 0] < MASKED / (2 * tau_block[:, 0])  # no visible key and no sink: padding
        inv_z = torch.where(dead, 0.0, z.reciprocal())
        scores_out[..., :e.shape[-1]] += torch.matmul(inv_z[..., None, :], e)[..., 0, :]
    return scores_out


def _gumbel(shape, generator) -> torch.Tensor:
    """Gumbel(0, 1) noise: -log E with E ~ Exponential(1)."""
    return torch.empty(shape, device=generator.device).exponential_(generator=generator).log_().neg_()


def weighted_pagerank(attention, *, steps: int | None = None, tol: float = 1e-6, max_steps: int = 1000) -> np.ndarray:
    """Zero-TPrune's weighted PageRank of each head: attention [..., T, T] (rows: queries,
    each summing to one) -> scores [..., T]. steps: that many iterations of s <- A^T s from
    s = 1/T; None: iterate until no score moves by more than `tol` (at most `max_steps`).
    Designed for bidirectional attention: under causal attention it collapses onto token 0."""
    attention = np.asarray(attention, dtype=np.float64)
    if attention.ndim < 2 or attention.shape[-1] != attention.shape[-2]:
        raise WorkbenchError(f"weighted PageRank needs square attention matrices [..., T, T], got {attention.shape}")
    t = attention.shape[-1]
    if t > PAGERANK_MAX_T:
        raise WorkbenchError(
            f"weighted PageRank needs each head's full {t} x {t} attention matrix; it is meant for inputs of at "
            f"most {PAGERANK_MAX_T} tokens. For long inputs rank keys by received attention (H2O) or Keyformer"
        )
    scores = np.full(attention.shape[:-1], 1.0 / t)  # [..., T]
    for _ in range(max_steps if steps is None else steps):
        updated = np.einsum("...qk,...q->...k", attention, scores)  # A^T s
        converged = np.abs(updated - scores).max() <= tol
        scores = updated
        if steps is None and converged:
            break
    return scores
