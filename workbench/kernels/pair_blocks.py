"""Both sides' vocabulary statistics and their divergences from one block of two predictors'
logits, each side's softmax computed once (the CPU path of `compare`).

For z_p, z_q [B, V] (the same rows under two predictors) and the targets [B] it returns what
`vocab_stats_reference` gives for each side and `divergence_reference(z_p, z_q, overlap=True)`
gives for the pair (formulas in vocab_stats.py and divergence.py), in fewer passes over the rows:
log p = z - max - log sum_v exp(z_v - max) and p once per side (the top-k from the groups of
logits with the largest maxima), then sums of elementwise products:

    H_p         = -sum_v p_v log p_v;   varentropy = sum_v p_v (log p_v)^2 - H_p^2
    KL(p||q)    = sum_v p_v d_v;   KL(q||p) = -sum_v q_v d_v,   d = log p - log q
    JS(p, q)    = ln 2 - 1/2 sum_v s_v log s_v - (H_p + H_q) / 2,   s = p + q
                  (m = s / 2, so H(m) = ln 2 - 1/2 sum_v s_v log s_v and JS = H(m) - (H_p + H_q) / 2)
    overlap     = sum_v min(p_v, q_v)
    contrastive = softmax(c)[y],   c = (1 + beta) z_p - beta z_q = lerp(z_q, z_p, 1 + beta)

The rows go through in slices of SLICE_BYTES of fp32 logits per side, all passes over one slice
before the next, its six working buffers [S, V] allocated once per call and reused; every sum is
torch's (pairwise) sum in fp32.
Rows with a non-finite logit on either side (masked rows, -inf entries, where p log p is 0 * -inf)
are recomputed by the references, so they keep the references' conventions.
"""
from __future__ import annotations

import math

import torch

from .divergence import Divergence, divergence_reference
from .vocab_stats import IGNORE_INDEX, VocabStats, block_rows, row_blocks, vocab_stats_reference

LN2 = math.log(2.0)
# fp32 logits per side in one slice of rows. Measured on 2 shared cores (load ~8), one [341, 49152]
# block: 2 threads 3.5 s at 8 MiB, 6.8-10.5 s at 2 MiB (more, smaller parallel regions), 2.5 s at
# 64 MiB (six such buffers: too much memory); one thread 1.8-2.0 s at 2-8 MiB.
SLICE_BYTES = 8 * 2**20
TOPK_GROUP = 64  # logits per group in `_topk`


def pair_block_stats(logits_p: torch.Tensor, logits_q: torch.Tensor, targets: torch.Tensor, *, top_k: int,
                     beta: float) -> tuple[VocabStats, VocabStats, Divergence]:
    """logits_p, logits_q: [B, V] (any float dtype); targets [B] token ids (IGNORE_INDEX: none);
    top_k >= 1; beta >= 0 (the contrastive score's). -> (stats of p, stats of q, their divergence
    with JS and overlap)."""
    slices = row_blocks(logits_p.shape[0], block_rows(logits_p.shape[-1], SLICE_BYTES))
    rows = min(logits_p.shape[0], slices[0].stop)
    workspace = torch.empty((6, rows, logits_p.shape[-1]), dtype=torch.float32, device=logits_p.device)
    parts = [_slice_stats(logits_p[block], logits_q[block], targets[block], top_k, beta, workspace)
             for block in slices]
    return (VocabStats.cat([part[0] for part in parts]), VocabStats.cat([part[1] for part in parts]),
            Divergence.cat([part[2] for part in parts]))


def _slice_stats(z_p: torch.Tensor, z_q: torch.Tensor, targets: torch.Tensor, top_k: int, beta: float,
                 workspace: torch.Tensor):
    """The three results for S rows; workspace [6, >= S, V] fp32, overwritten."""
    z_p, z_q = z_p.float(), z_q.float()
    ignored = targets == IGNORE_INDEX
    index = torch.where(ignored, 0, targets).long()[:, None]  # [S, 1]
    log_p, p, log_q, q, buffer, spare = workspace[:, :z_p.shape[0]]  # [S, V] each
    stats_p = _side(z_p, index, ignored, top_k, log_p, p, buffer)
    stats_q = _side(z_q, index, ignored, top_k, log_q, q, buffer)
    d = torch.sub(log_p, log_q, out=log_q)  # log p - log q (log q is not needed any more)
    kl_pq = torch.mul(p, d, out=buffer).sum(-1)
    kl_qp = -torch.mul(q, d, out=buffer).sum(-1)
    overlap = torch.minimum(p, q, out=buffer).sum(-1)
    s = torch.add(p, q, out=buffer)
    log_s = torch.clamp_min(s, torch.finfo(torch.float32).tiny, out=spare).log_()  # s = 0 contributes 0 log tiny = 0
    js = LN2 - 0.5 * log_s.mul_(s).sum(-1) - 0.5 * (stats_p.entropy + stats_q.entropy)
    js = js.clamp_min(0)  # JS >= 0; the difference cancels to about -1e-6 where p ~ q
    contrast = torch.lerp(z_q, z_p, 1.0 + beta, out=buffer)  # (1 + beta) z_p - beta z_q
    contrast_y = contrast.gather(-1, index)[:, 0]
    contrast_max = contrast.amax(-1, keepdim=True)
    log_total = contrast.sub_(contrast_max).exp_().sum(-1).log()
    score = (contrast_y - contrast_max[:, 0] - log_total).exp()
    divergence = Divergence(kl_pq, kl_qp, js, torch.where(ignored, float("nan"), score), overlap)
    bad = ~(torch.isfinite(stats_p.entropy) & torch.isfinite(stats_q.entropy))
    if bad.any():
        _recompute(bad, z_p, z_q, targets, top_k, beta, stats_p, stats_q, divergence)
    return stats_p, stats_q, divergence


def _side(z: torch.Tensor, index: torch.Tensor, ignored: torch.Tensor, top_k: int, log_p: torch.Tensor,
          p: torch.Tensor, buffer: torch.Tensor) -> VocabStats:
    """One side's statistics; log p and p [S, V] written into `log_p` and `p`. The normalizer is
    summed by torch's pairwise sum (log_softmax's own running sum loses ~1e-5 nats at V = 49152)."""
    k = min(max(top_k, 2), z.shape[-1])
    top_values, top_ids = _topk(z, k)  # [S, k]
    z_max = top_values[:, :1]
    torch.sub(z, z_max, out=log_p)
    total = torch.exp(log_p, out=p).sum(-1, keepdim=True)  # p unnormalized
    log_total = total.log()
    log_p.sub_(log_total)
    p.div_(total)
    lse = (z_max + log_total)[:, 0]
    plogp = torch.mul(p, log_p, out=buffer)
    entropy = -plogp.sum(-1)
    varentropy = plogp.mul_(log_p).sum(-1) - entropy * entropy
    margin = top_values[:, 0] - top_values[:, 1] if k >= 2 else torch.full_like(lse, float("nan"))
    topk_probs = (top_values[:, :top_k] - lse[:, None]).exp()
    target_logit = z.gather(-1, index)  # [S, 1]
    rank = torch.gt(z, target_logit, out=buffer).sum(-1).long()  # #{v : z_v > z_y}, summed in fp32: exact below 2^24
    target_logprob = torch.where(ignored, float("nan"), log_p.gather(-1, index)[:, 0])
    return VocabStats(lse, entropy, varentropy, margin, top_ids[:, :top_k], topk_probs, target_logprob,
                      torch.where(ignored, -1, rank))


def _topk(z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z.topk(k) [S, k] from the k groups of TOPK_GROUP logits with the largest maxima: a group
    holding one of the k largest has a maximum at least the k-th largest, and fewer than k groups
    have a larger one (each holds a larger logit), so those groups hold all k (ties aside)."""
    rows, vocab = z.shape
    if vocab % TOPK_GROUP or vocab < 4 * k * TOPK_GROUP or not z.is_contiguous():
        return z.topk(k, dim=-1)
    groups = z.view(rows, vocab // TOPK_GROUP, TOPK_GROUP)
    best = groups.amax(-1).topk(k, dim=-1).indices  # [S, k] groups
    ids = (best[:, :, None] * TOPK_GROUP + torch.arange(TOPK_GROUP, device=z.device)).view(rows, -1)  # [S, k * G]
    values, within = z.gather(-1, ids).topk(k, dim=-1)
    return values, ids.gather(-1, within)


def _recompute(bad, z_p, z_q, targets, top_k, beta, stats_p, stats_q, divergence) -> None:
    """Overwrite the `bad` rows [S] of the three results with the references' values."""
    rows = bad.nonzero()[:, 0]
    exact = (vocab_stats_reference(z_p[rows], targets[rows], top_k=top_k),
             vocab_stats_reference(z_q[rows], targets[rows], top_k=top_k),
             divergence_reference(z_p[rows], z_q[rows], targets[rows], beta=beta, overlap=True))
    for result, want in zip((stats_p, stats_q, divergence), exact):
        for name, values in vars(want).items():
            getattr(result, name)[rows] = values
