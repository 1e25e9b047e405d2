"""Triton `divergence`: KL both ways and the contrastive score in one pass over the two
logit rows; JS in a second pass when asked (it needs the normalized p and q).

Pass 1 keeps per row three online log-sum-exps, each a state (m, s) with s = sum e^(x - m),
and for the KLs the p- and q-weighted logit gaps, rescaled with the same factor as s:

    a_p = sum_v e^(z_p - m_p) (z_p - z_q),   KL(p||q) = a_p / s_p - lse_p + lse_q
    a_q = sum_v e^(z_q - m_q) (z_q - z_p),   KL(q||p) = a_q / s_q - lse_q + lse_p
    c = (1 + beta) z_p - beta z_q (-inf where z_p is): lse_c, and s_y = e^(c_y - lse_c)

(one read of each row: 2 x 2.49 GB at T = 8192, V = 151936, bf16). Pass 2, with lse_p and
lse_q known, sums p (log p - log m) + q (log q - log m), log m = log(p + q) - log 2, and the
overlap sum_v min(p_v, q_v) when asked: JS and the overlap cost a second read of both rows.

Terms with p_v = 0 (or q_v = 0) are skipped, never 0 * inf: KL(p||q) is +inf where q has a
zero that p does not. Precision: a_p / s_p - lse_p + lse_q cancels to the KL's size; the
absolute error is ~1e-7 times the size of the logit gaps (tests state the tolerances).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .divergence import LN2, Divergence, check_pair
from .triton_online import ROW_CONFIGS, rows_per_program
from .vocab_stats import IGNORE_INDEX


@triton.jit
def _lse_tile(x, alive):
    """Max and sum e^(x - max) of each row of a tile; x, alive [R, B] -> [R], [R]."""
    m = tl.max(tl.where(alive, x, float("-inf")), 1)
    e = tl.where(alive, tl.exp(x - m[:, None]), 0.0)
    return m, e


@triton.jit
def merge_states(ma, sa, aa, mb, sb, ab):
    """Merge two (m, s, a) states whose s and a share the factor e^(-m)."""
    m = tl.maximum(ma, mb)
    ca = tl.exp(tl.where(ma > float("-inf"), ma - m, 0.0))
    cb = tl.exp(tl.where(mb > float("-inf"), mb - m, 0.0))
    return m, ca * sa + cb * sb, ca * aa + cb * ab


@triton.jit
def contrast(z_p, z_q, beta):
    """c = (1 + beta) z_p - beta z_q, -inf where z_p is."""
    return tl.where(z_p > float("-inf"), (1 + beta) * z_p - beta * z_q, float("-inf"))


@triton.jit
def fold_tile(z_p, z_q, beta, m_p, s_p, a_p, m_q, s_q, a_q, m_c, s_c, HAS_TARGETS: tl.constexpr):
    """Fold a tile of both rows' logits z_p, z_q [R, B] (-inf where absent) into the pass-1
    states [R]: (m, s, a) of p and of q, and (m, s) of the contrast when there are targets."""
    alive_p = z_p > float("-inf")
    tile_m, e = _lse_tile(z_p, alive_p)
    gap = tl.sum(tl.where(e > 0, e * (z_p - z_q), 0.0), 1)
    m_p, s_p, a_p = merge_states(m_p, s_p, a_p, tile_m, tl.sum(e, 1), gap)
    tile_m, e = _lse_tile(z_q, z_q > float("-inf"))
    gap = tl.sum(tl.where(e > 0, e * (z_q - z_p), 0.0), 1)
    m_q, s_q, a_q = merge_states(m_q, s_q, a_q, tile_m, tl.sum(e, 1), gap)
    if HAS_TARGETS:
        tile_m, e = _lse_tile(contrast(z_p, z_q, beta), alive_p)
        zero = tl.zeros_like(s_c)
        m_c, s_c, _ = merge_states(m_c, s_c, zero, tile_m, tl.sum(e, 1), zero)
    return m_p, s_p, a_p, m_q, s_q, a_q, m_c, s_c


@triton.jit
def js_share(log_p, log_q, LOG2: tl.constexpr):
    """Row sums [R] of p log(2p / (p + q)) + q log(2q / (p + q)) over a tile of log p, log q
    [R, B]; terms with p = 0 (q = 0) are skipped."""
    p = tl.exp(log_p)
    q = tl.exp(log_q)
    log_2m = tl.log(p + q)  # log(2m): finite wherever p > 0 or q > 0
    terms = tl.where(p > 0, p * (log_p + LOG2 - log_2m), 0.0) + tl.where(q > 0, q * (log_q + LOG2 - log_2m), 0.0)
    return tl.sum(terms, 1)


@triton.jit
def overlap_share(log_p, log_q):
    """Row sums [R] of min(p, q) over a tile of log p, log q [R, B]."""
    return tl.sum(tl.exp(tl.minimum(log_p, log_q)), 1)


@triton.autotune(
    configs=ROW_CONFIGS,
    key=["V", "HAS_TARGETS", "JS", "OVERLAP"],
    cache_results=True,  # the choice persists in Triton's cache: later processes skip the timing
)
@triton.jit
def _divergence_kernel(p_ptr, p_stride, q_ptr, q_stride, targets_ptr, beta, T, V,
                       kl_pq_ptr, kl_qp_ptr, js_ptr, score_ptr, overlap_ptr,
                       ROWS: tl.constexpr, BLOCK: tl.constexpr, HAS_TARGETS: tl.constexpr, JS: tl.constexpr,
                       OVERLAP: tl.constexpr, IGNORE: tl.constexpr, LOG2: tl.constexpr, PREFETCH: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)  # [R]
    row_mask = rows < T
    p_rows = p_ptr + rows[:, None] * p_stride  # [R, 1]
    q_rows = q_ptr + rows[:, None] * q_stride
    lanes = tl.arange(0, BLOCK)[None, :]  # [1, B]

    zero = tl.zeros([ROWS], dtype=tl.float32)
    m_p, s_p, a_p = zero + float("-inf"), zero, zero
    m_q, s_q, a_q = zero + float("-inf"), zero, zero
    m_c, s_c = zero + float("-inf"), zero
    first = row_mask[:, None] & (lanes < V)
    if PREFETCH:
        ahead_p = tl.load(p_rows + lanes, mask=first, other=float("-inf"))  # tile 0
        ahead_q = tl.load(q_rows + lanes, mask=first, other=float("-inf"))
    for start in range(0, V, BLOCK):
        cols = start + lanes
        if PREFETCH:  # the next tiles' loads are issued before this tile's math: two tiles in flight
            z_p = ahead_p.to(tl.float32)
            z_q = ahead_q.to(tl.float32)
            following = row_mask[:, None] & (cols + BLOCK < V)
            ahead_p = tl.load(p_rows + cols + BLOCK, mask=following, other=float("-inf"))
            ahead_q = tl.load(q_rows + cols + BLOCK, mask=following, other=float("-inf"))
        else:
            in_range = row_mask[:, None] & (cols < V)
            z_p = tl.load(p_rows + cols, mask=in_range, other=float("-inf")).to(tl.float32)
            z_q = tl.load(q_rows + cols, mask=in_range, other=float("-inf")).to(tl.float32)
        # lanes past V load -inf: dead too
        m_p, s_p, a_p, m_q, s_q, a_q, m_c, s_c = fold_tile(z_p, z_q, beta, m_p, s_p, a_p, m_q, s_q, a_q, m_c, s_c,
                                                           HAS_TARGETS)

    masked = (m_p == float("-inf")) | (m_q == float("-inf"))
    lse_p = m_p + tl.log(s_p)
    lse_q = m_q + tl.log(s_q)
    tl.store(kl_pq_ptr + rows, tl.where(masked, float("nan"), a_p / s_p - lse_p + lse_q), mask=row_mask)
    tl.store(kl_qp_ptr + rows, tl.where(masked, float("nan"), a_q / s_q - lse_q + lse_p), mask=row_mask)
    if HAS_TARGETS:
        target = tl.load(targets_ptr + rows, mask=row_mask, other=IGNORE)
        ignored = target == IGNORE
        index = tl.where(ignored, 0, target)
        z_py = tl.load(p_ptr + rows * p_stride + index, mask=row_mask, other=0.0).to(tl.float32)
        z_qy = tl.load(q_ptr + rows * q_stride + index, mask=row_mask, other=0.0).to(tl.float32)
        score = tl.exp(contrast(z_py, z_qy, beta) - (m_c + tl.log(s_c)))
        tl.store(score_ptr + rows, tl.where(ignored | masked, float("nan"), score), mask=row_mask)
    if JS or OVERLAP:
        total = zero  # 2 JS
        shared = zero  # sum min(p, q)
        if PREFETCH:
            ahead_p = tl.load(p_rows + lanes, mask=first, other=float("-inf"))
            ahead_q = tl.load(q_rows + lanes, mask=first, other=float("-inf"))
        for start in range(0, V, BLOCK):
            cols = start + lanes
            if PREFETCH:
                log_p = ahead_p.to(tl.float32) - lse_p[:, None]
                log_q = ahead_q.to(tl.float32) - lse_q[:, None]
                following = row_mask[:, None] & (cols + BLOCK < V)
                ahead_p = tl.load(p_rows + cols + BLOCK, mask=following, other=float("-inf"))
                ahead_q = tl.load(q_rows + cols + BLOCK, mask=following, other=float("-inf"))
            else:
                in_range = row_mask[:, None] & (cols < V)
                log_p = tl.load(p_rows + cols, mask=in_range, other=float("-inf")).to(tl.float32) - lse_p[:, None]
                log_q = tl.load(q_rows + cols, mask=in_range, other=float("-inf")).to(tl.float32) - lse_q[:, None]
            if JS:
                total += js_share(log_p, log_q, LOG2)
            if OVERLAP:
                shared += overlap_share(log_p, log_q)
        if JS:
            tl.store(js_ptr + rows, tl.where(masked, float("nan"), 0.5 * total), mask=row_mask)
        if OVERLAP:
            tl.store(overlap_ptr + rows, tl.where(masked, float("nan"), shared), mask=row_mask)


def divergence(logits_p: torch.Tensor, logits_q: torch.Tensor, targets: torch.Tensor | None = None, *,
               beta: float = 1.0, js: bool = True, overlap: bool = False) -> Divergence:
    """Same contract as `divergence_reference`; logits in fp32/bf16/fp16 on CUDA (or on CPU
    under TRITON_INTERPRET=1)."""
    check_pair(logits_p.shape, logits_q.shape, targets, beta)
    logits_p, logits_q = (t if t.stride(-1) == 1 else t.contiguous() for t in (logits_p, logits_q))
    rows, vocab = logits_p.shape
    fp32 = dict(dtype=torch.float32, device=logits_p.device)
    kl_pq, kl_qp = torch.empty(rows, **fp32), torch.empty(rows, **fp32)
    result = Divergence(kl_pq, kl_qp, torch.empty(rows, **fp32) if js else None,
                        torch.empty(rows, **fp32) if targets is not None else None,
                        torch.empty(rows, **fp32) if overlap else None)
    if rows == 0:
        return result
    per_program = rows_per_program(rows, 1)
    _divergence_kernel[(triton.cdiv(rows, per_program),)](
        logits_p, logits_p.stride(0), logits_q, logits_q.stride(0),
        targets.contiguous() if targets is not None else kl_pq, float(beta), rows, vocab,
        kl_pq, kl_qp, result.js if js else kl_pq, result.contrastive if targets is not None else kl_pq,
        result.overlap if overlap else kl_pq,
        ROWS=per_program, HAS_TARGETS=targets is not None, JS=js, OVERLAP=overlap, IGNORE=IGNORE_INDEX, LOG2=LN2,
    )
    return result
