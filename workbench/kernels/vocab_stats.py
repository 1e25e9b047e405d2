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


class RowResults:
    """Base of dataclasses whose fields are per-row tensors (or None), to concatenate the
    results of blocks of rows."""

    @classmethod
    def cat(cls, parts: list) -> "RowResults":
        """Concatenate per-block results along the row dimension."""
        merged = {}
        for field in fields(cls):
            values = [getattr(p, field.name) for p in parts]
            merged[field.name] = None if values[0] is None else torch.cat(values)
        return cls(**merged)


def row_blocks(total: int, size: int) -> list[slice]:
    """Slices of at most `size` rows covering range(total). One empty slice when total is 0,
    so that a loop over blocks still returns (empty) results of the right shapes."""
    return [slice(begin, begin + size) for begin in range(0, max(total, 1), size)]


@dataclass
class VocabStats(RowResults):
    lse: torch.Tensor  # [T] fp32
    entropy: torch.Tensor  # [T]
    varentropy: torch.Tensor  # [T]
    margin: torch.Tensor  # [T]; NaN when V < 2
    topk_ids: torch.Tensor  # [T, k] int64
    topk_probs: torch.Tensor  # [T, k] fp32
    target_logprob: torch.Tensor | None = None  # [T], when targets were given
    target_rank: torch.Tensor | None = None  # [T] int64 (-1 where the target is ignored)


BLOCK_BYTES = 12 * 2**20  # rows per block: a block's fp32 copy stays in the last-level cache


def block_rows(vocab_size: int, budget: int) -> int:
    """Rows of [rows, V] fp32 logits that fit in `budget` bytes (at least one)."""
    return max(1, budget // (4 * vocab_size))


def vocab_stats_reference(
    logits: torch.Tensor, targets: torch.Tensor | None = None, *, top_k: int = 0, temperature: float = 1.0
) -> VocabStats:
    """Exact PyTorch computation. logits: [T, V] (any float dtype); targets: [T] int.

    Rows are processed in blocks of ~12 MiB: each block is copied to fp32 once and then
    transformed in place (z -> z - max -> log p; a second buffer p -> p log p -> p log^2 p),
    which keeps the passes in cache and allocates no [T, V] temporaries. The caller's
    logits are never modified.
    """
    _check(logits, targets, top_k, temperature)
    return VocabStats.cat([
        _block_stats(logits[block], None if targets is None else targets[block], top_k, temperature)
        for block in row_blocks(logits.shape[0], block_rows(logits.shape[-1], BLOCK_BYTES))
    ])


def _block_stats(logits: torch.Tensor, targets: torch.Tensor | None, top_k: int, temperature: float) -> VocabStats:
    z = logits.to(torch.float32, copy=True)  # [B, V], ours to overwrite
    if temperature != 1.0:
        z.div_(temperature)
    k = min(max(top_k, 2), z.shape[-1])
    top_values, top_ids = z.topk(k, dim=-1)  # [B, k]
    z_max = top_values[:, :1]
    z.sub_(z_max)  # z - max
    p = torch.exp(z)  # unnormalized
    total = p.sum(-1, keepdim=True)
    log_total = total.log()
    z.sub_(log_total)  # log p
    p.div_(total)  # p
    p.mul_(z)  # p log p
    sum_plogp = p.sum(-1)  # -H
    p.mul_(z)  # p (log p)^2
    varentropy = p.sum(-1) - sum_plogp * sum_plogp  # E[(log p)^2] - H^2
    entropy = -sum_plogp
    lse = (z_max + log_total)[:, 0]

    masked = torch.isneginf(z_max[:, 0])  # all-(-inf) rows
    careful = torch.isnan(entropy) & ~masked  # rows with some -inf logits: 0 * -inf
    if careful.any():
        entropy[careful], varentropy[careful] = _entropies_skipping_zeros(z[careful])

    margin = top_values[:, 0] - top_values[:, 1] if k >= 2 else torch.full_like(lse, float("nan"))
    topk_probs = (top_values[:, :top_k] - lse[:, None]).exp()
    if masked.any():
        lse, entropy, varentropy, margin = (torch.where(masked, float("nan"), t) for t in (lse, entropy, varentropy, margin))
        topk_probs = torch.where(masked[:, None], float("nan"), topk_probs)
    stats = VocabStats(lse, entropy, varentropy, margin, top_ids[:, :top_k], topk_probs)
    if targets is not None:
        stats.target_logprob, stats.target_rank = _target_stats(logits, z, top_values, targets, temperature)
    return stats


def _entropies_skipping_zeros(logp: torch.Tensor):
    """H and varentropy for rows that contain p = 0 entries (log p = -inf): those terms are 0."""
    p = logp.exp()
    alive = p > 0
    entropy = -torch.where(alive, p * logp, 0.0).sum(-1)
    deviation = torch.where(alive, logp + entropy[:, None], 0.0)
    return entropy, (p * deviation * deviation).sum(-1)


def _target_stats(logits, logp, top_values, targets, temperature):
    """log p_y [B] and rank #{v : z_v > z_y} [B]; NaN / -1 where the target is ignored.

    The rank is counted on the caller's untouched logits (exact comparisons): from the
    top-k values when the target is among them, over the whole row otherwise.
    """
    ignored = targets == IGNORE_INDEX
    index = torch.where(ignored, 0, targets).long()[:, None]  # [B, 1]
    target_logprob = logp.gather(-1, index)[:, 0]
    target_logit = logits.gather(-1, index).float()
    if temperature != 1.0:
        target_logit = target_logit / temperature
    target_rank = (top_values > target_logit).sum(-1)
    outside = target_logit[:, 0] < top_values[:, -1]  # the top-k does not settle the rank
    if outside.any():
        rows = outside.nonzero()[:, 0]
        target_rank[rows] = (logits[rows] > logits.gather(-1, index)[rows]).sum(-1)
    target_logprob = torch.where(ignored | torch.isnan(target_logprob), float("nan"), target_logprob)
    target_rank = torch.where(ignored, -1, target_rank)
    return target_logprob, target_rank


def _check(logits, targets, top_k, temperature):
    if logits.ndim != 2:
        raise ValueError(f"logits must be [T, V], got shape {tuple(logits.shape)}")
    check_options(*logits.shape, targets, top_k, temperature)


def check_options(rows: int, vocab: int, targets: torch.Tensor | None, top_k: int, temperature: float) -> None:
    """The arguments besides the logits, for T = rows and V = vocab."""
    if targets is not None:
        check_targets(targets, rows, vocab)
    if not 0 <= top_k <= vocab:
        raise ValueError(f"top_k must be in [0, V={vocab}], got {top_k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def check_targets(targets: torch.Tensor, rows: int, vocab: int) -> None:
    """targets: [rows] integer token ids in [0, vocab), or IGNORE_INDEX for none."""
    if targets.shape != (rows,):
        raise ValueError(f"targets must be [T] = [{rows}], got {tuple(targets.shape)}")
    if targets.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"targets must be int32 or int64 token ids, got {targets.dtype}")
    bad = (targets != IGNORE_INDEX) & ((targets < 0) | (targets >= vocab))
    if bad.any():
        raise ValueError(f"targets must be token ids in [0, {vocab}) or {IGNORE_INDEX} (ignore), "
                         f"got {targets[bad][0].item()}")
