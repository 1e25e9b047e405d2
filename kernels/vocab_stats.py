"""Vocabulary-wide statistics of next-token distributions, one row per position.

For logits z [T, V] (p = softmax(z / temperature)) and the token y that actually follows:

    lse            = logsumexp(z)
    entropy        H = lse - sum_v p_v z_v = -sum_v p_v log p_v          (nats)
    varentropy     sum_v p_v (log p_v + H)^2                              (varentropy: the
                   variance of surprisal, Malinin & Gales 2021; used by entropix-style decoders)
    target_logprob log p_y;  surprisal = -log p_y
    target_rank    #{v : z_v > z_y}   (0 = argmax; ties rank together)
    margin         log p1 - log p2 = z_(1) - z_(2)  (top-two gap)
    topk_ids/probs the k most likely tokens and their probabilities

`-inf` logits contribute p = 0 and nothing to the sums; a row that is entirely `-inf`
(masked) yields NaN everywhere; a target of -100 (ignore index) yields NaN target stats.
All arithmetic is in fp32 whatever the input dtype.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

IGNORE_INDEX = -100


@dataclass
class VocabStats:
    lse: torch.Tensor  # [T] fp32
    entropy: torch.Tensor  # [T]
    varentropy: torch.Tensor  # [T]
    margin: torch.Tensor  # [T]; NaN when V < 2
    topk_ids: torch.Tensor  # [T, k] int64
    topk_probs: torch.Tensor  # [T, k] fp32
    target_logprob: torch.Tensor | None = None  # [T], when targets were given
    target_rank: torch.Tensor | None = None  # [T] int64 (-1 where the target is ignored)

    @classmethod
    def cat(cls, parts: list["VocabStats"]) -> "VocabStats":
        """Concatenate per-chunk results along the row dimension."""
        merged = {}
        for field in fields(cls):
            values = [getattr(p, field.name) for p in parts]
            merged[field.name] = None if values[0] is None else torch.cat(values)
        return cls(**merged)


def vocab_stats_reference(
    logits: torch.Tensor, targets: torch.Tensor | None = None, *, top_k: int = 0, temperature: float = 1.0
) -> VocabStats:
    """Exact PyTorch computation over the full rows. logits: [T, V]; targets: [T] int."""
    _check(logits, targets, top_k, temperature)
    z = logits.float()
    if temperature != 1.0:
        z = z / temperature
    lse = torch.logsumexp(z, dim=-1)  # [T]
    logp = z - lse[:, None]  # [T, V]
    p = logp.exp()
    alive = p > 0  # excludes -inf logits (and underflow, whose terms are 0 anyway)
    entropy = -torch.where(alive, p * logp, 0.0).sum(-1)
    deviation = torch.where(alive, logp + entropy[:, None], 0.0)
    varentropy = (p * deviation * deviation).sum(-1)

    k = min(max(top_k, 2), z.shape[-1])
    top_values, top_ids = z.topk(k, dim=-1)  # [T, k]
    margin = top_values[:, 0] - top_values[:, 1] if k >= 2 else torch.full_like(lse, float("nan"))
    topk_probs = (top_values[:, :top_k] - lse[:, None]).exp()
    topk_ids = top_ids[:, :top_k]

    masked = torch.isneginf(lse)  # all-(-inf) rows
    if masked.any():
        nan = torch.tensor(float("nan"))
        lse, entropy, varentropy, margin = (torch.where(masked, nan, t) for t in (lse, entropy, varentropy, margin))
        topk_probs = torch.where(masked[:, None], nan, topk_probs)
    stats = VocabStats(lse, entropy, varentropy, margin, topk_ids, topk_probs)
    if targets is not None:
        stats.target_logprob, stats.target_rank = _target_stats(z, logp, targets)
    return stats


def _target_stats(z: torch.Tensor, logp: torch.Tensor, targets: torch.Tensor):
    """log p_y [T] and rank #{v : z_v > z_y} [T]; NaN / -1 where the target is ignored."""
    ignored = targets == IGNORE_INDEX
    index = torch.where(ignored, 0, targets).long()[:, None]
    target_logprob = logp.gather(-1, index)[:, 0]
    target_rank = (z > z.gather(-1, index)).sum(-1)
    target_logprob = torch.where(ignored | torch.isnan(target_logprob), float("nan"), target_logprob)
    target_rank = torch.where(ignored, -1, target_rank)
    return target_logprob, target_rank


def _check(logits, targets, top_k, temperature):
    if logits.ndim != 2:
        raise ValueError(f"logits must be [T, V], got shape {tuple(logits.shape)}")
    if targets is not None and targets.shape != logits.shape[:1]:
        raise ValueError(f"targets must be [T] = [{logits.shape[0]}], got {tuple(targets.shape)}")
    if not 0 <= top_k <= logits.shape[-1]:
        raise ValueError(f"top_k must be in [0, V={logits.shape[-1]}], got {top_k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
