"""Divergences between two next-token distributions over one vocabulary, row by row.

For logits z_p, z_q [T, V] (two models on the same text, or one model under two prompts),
p = softmax(z_p), q = softmax(z_q), and the token y that actually follows:

    KL(p||q) = sum_v p_v (log p_v - log q_v)  (+inf where q_v = 0 < p_v)
    KL(q||p) = sum_v q_v (log q_v - log p_v)
    JS(p, q) = 1/2 KL(p||m) + 1/2 KL(q||m),   m = (p + q) / 2        (nats, <= log 2)
    overlap  O(p, q) = sum_v min(p_v, q_v) = 1 - TV(p, q): speculative sampling's acceptance
        probability at this position with q the draft and p the target (Leviathan et al. 2023,
        "Fast Inference from Transformers via Speculative Decoding"; Chen et al. 2023)
    contrastive score (cDPO, Lin et al. 2024, "Critical Tokens Matter"):
        s_y = softmax((1 + beta) z_p - beta z_q)[y],   beta >= 0 (1 in the paper)
    with p the positive model, q the negative; a token of an incorrect response with low
    s_y is likely critical (cDPO weight 1 - s_y).
[p = softmax(2, 1, 0, -1), q = softmax(0, 2, 0, -1): KL(p||q) = .888734, JS = .181427]
[p = (.5, .3, .2), q = (.2, .3, .5): overlap = .7]

`-inf` logits carry probability 0 (0 log 0 = 0) and leave the contrast at -inf where
z_p = -inf; a row where either distribution is entirely `-inf` gives NaN; an ignored
target (IGNORE_INDEX) gives a NaN score. All arithmetic is in fp32.

`linear_divergence` takes the final hidden states and lm_head of two models that share a
vocabulary, z = softcap(h W^T + b) for each (see linear_vocab_stats.py), and never holds
the [T, V] logits of either for more than a block of rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .linear_vocab_stats import check_head, chunk_rows, head_logits
from .vocab_stats import BLOCK_BYTES, IGNORE_INDEX, RowResults, block_rows, check_targets, row_blocks

LN2 = math.log(2.0)


@dataclass
class Divergence(RowResults):
    kl_pq: torch.Tensor  # [T] fp32, KL(p||q)
    kl_qp: torch.Tensor  # [T] fp32, KL(q||p)
    js: torch.Tensor | None = None  # [T] fp32, when js=True
    contrastive: torch.Tensor | None = None  # [T] fp32 s_y, when targets were given
    overlap: torch.Tensor | None = None  # [T] fp32 sum_v min(p_v, q_v), when overlap=True


def divergence_reference(logits_p: torch.Tensor, logits_q: torch.Tensor, targets: torch.Tensor | None = None, *,
                         beta: float = 1.0, js: bool = True, overlap: bool = False) -> Divergence:
    """Exact PyTorch computation. logits_p, logits_q: [T, V] (any float dtypes); targets:
    [T] int or None. Blocks of rows of ~12 MiB of fp32 each."""
    check_pair(logits_p.shape, logits_q.shape, targets, beta)
    return Divergence.cat([
        _block(logits_p[block], logits_q[block], None if targets is None else targets[block], beta, js, overlap)
        for block in row_blocks(logits_p.shape[0], block_rows(logits_p.shape[-1], BLOCK_BYTES))
    ])


def _block(logits_p, logits_q, targets, beta, js, overlap) -> Divergence:
    z_p, z_q = logits_p.float(), logits_q.float()  # [B, V]
    log_p, log_q = torch.log_softmax(z_p, -1), torch.log_softmax(z_q, -1)
    p, q = log_p.exp(), log_q.exp()
    kl_pq = torch.where(p > 0, p * (log_p - log_q), 0.0).sum(-1)
    kl_qp = torch.where(q > 0, q * (log_q - log_p), 0.0).sum(-1)
    masked = torch.isneginf(z_p.amax(-1)) | torch.isneginf(z_q.amax(-1))  # rows with no distribution
    result = Divergence(torch.where(masked, float("nan"), kl_pq), torch.where(masked, float("nan"), kl_qp))
    if js:
        log_m = torch.logaddexp(log_p, log_q) - LN2
        kl_pm = torch.where(p > 0, p * (log_p - log_m), 0.0).sum(-1)
        kl_qm = torch.where(q > 0, q * (log_q - log_m), 0.0).sum(-1)
        result.js = torch.where(masked, float("nan"), 0.5 * (kl_pm + kl_qm))
    if overlap:
        result.overlap = torch.where(masked, float("nan"), torch.minimum(p, q).sum(-1))
    if targets is not None:
        contrast = torch.where(torch.isneginf(z_p), float("-inf"), (1 + beta) * z_p - beta * z_q)
        ignored = targets == IGNORE_INDEX
        index = torch.where(ignored, 0, targets).long()[:, None]
        score = torch.log_softmax(contrast, -1).gather(-1, index)[:, 0].exp()
        result.contrastive = torch.where(ignored | masked, float("nan"), score)
    return result


def linear_divergence_reference(hidden_p: torch.Tensor, weight_p: torch.Tensor, hidden_q: torch.Tensor,
                                weight_q: torch.Tensor, targets: torch.Tensor | None = None, *,
                                bias_p: torch.Tensor | None = None, bias_q: torch.Tensor | None = None,
                                softcap_p: float | None = None, softcap_q: float | None = None,
                                beta: float = 1.0, js: bool = True, overlap: bool = False) -> Divergence:
    """`divergence` of z_p = softcap_p(hidden_p weight_p^T + bias_p) and z_q likewise.
    hidden_p [T, d_p], weight_p [V, d_p]; hidden_q [T, d_q], weight_q [V, d_q] (the two
    models may differ in width, not in vocabulary). Blocks of rows: ~64 MiB of fp32
    logits per model at a time."""
    check_head(hidden_p, weight_p, bias_p, softcap_p)
    check_head(hidden_q, weight_q, bias_q, softcap_q)
    check_pair((hidden_p.shape[0], weight_p.shape[0]), (hidden_q.shape[0], weight_q.shape[0]), targets, beta)
    rows = chunk_rows(weight_p.shape[0])
    parts = []
    for block in row_blocks(hidden_p.shape[0], rows):
        z_p = head_logits(hidden_p[block], weight_p, bias_p, softcap_p)  # [rows, V]
        z_q = head_logits(hidden_q[block], weight_q, bias_q, softcap_q)
        parts.append(divergence_reference(z_p, z_q, None if targets is None else targets[block], beta=beta, js=js,
                                          overlap=overlap))
    return Divergence.cat(parts)


def check_pair(shape_p, shape_q, targets: torch.Tensor | None, beta: float) -> None:
    """Two [T, V] logit shapes that agree, targets [T], beta >= 0."""
    if len(shape_p) != 2 or tuple(shape_p) != tuple(shape_q):
        raise ValueError(f"logits_p and logits_q must both be [T, V], got {tuple(shape_p)} and {tuple(shape_q)} "
                         "(two models must share the vocabulary: slice both to the shared size)")
    if targets is not None:
        check_targets(targets, shape_p[0], shape_p[1])
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
