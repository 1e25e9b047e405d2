"""Triton `linear_divergence`: `divergence` of two models' logits computed tile by tile
from their hidden states and lm_heads (z_p = h_p W_p^T, z_q = h_q W_q^T over one shared
vocabulary, each with its optional bias and soft-cap), logits never written to memory.

Grid (row blocks, vocabulary splits), as in triton_linear_vocab_stats.py. Each program
computes the p and q tiles of BLOCK_V vocabulary entries with two tl.dot loops (the
models may differ in width) and folds them into the per-row states of
triton_divergence.py: (m, s, a) for p and for q, (m, s) for the contrast
c = (1 + beta) z_p - beta z_q. A merge kernel combines the splits into KL(p||q), KL(q||p),
the contrastive score, and lse_p, lse_q. JS needs those lse first: a second launch of the
same kernel (JS_PASS) recomputes the logits and sums each split's share of
p log(2p / (p + q)) + q log(2q / (p + q)) (the shares add up to 2 JS) and, when asked, of
the overlap sum_v min(p_v, q_v). Cost: 4 T d V FLOP for the KLs and the score, twice that
with JS or the overlap.

The target's contrast c_y comes from the diagonal of a [BLOCK_T, BLOCK_T] tile with the
same dot as the vocabulary tiles (BLOCK_V = BLOCK_T on GPUs), as in linear_vocab_stats.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .divergence import LN2, Divergence, check_pair
from .linear_vocab_stats import check_head
from .triton_divergence import contrast, fold_tile, js_share, merge_states, overlap_share
from .triton_linear_vocab_stats import dot_precision, logits_tile, target_logits, vocab_splits
from .triton_online import INTERPRETED, rows_per_program, tuned
from .vocab_stats import IGNORE_INDEX

FIELDS = 8  # per split and row: m_p, s_p, a_p, m_q, s_q, a_q, m_c, s_c (pass 1); the JS and overlap shares (pass 2)


@triton.autotune(
    # two fp32 accumulators per tile: 64 x 64 tiles, or 128 x 128 with 16 warps
    configs=tuned([triton.Config({"BLOCK_T": b, "BLOCK_V": b, "BLOCK_K": 64}, num_warps=w, num_stages=s)
                   for b, w, s in ((64, 4, 3), (64, 4, 4), (128, 16, 3))],
                  triton.Config({"BLOCK_T": 16, "BLOCK_V": 256, "BLOCK_K": 32}, num_warps=1, num_stages=1)),
    key=["V", "DP", "DQ", "HAS_TARGETS", "JS_PASS", "JS", "OVERLAP"],
    cache_results=True,
)
@triton.jit
def _pair_kernel(hp_ptr, hp_stride, wp_ptr, wp_stride, bp_ptr, hq_ptr, hq_stride, wq_ptr, wq_stride, bq_ptr,
                 targets_ptr, lse_p_ptr, lse_q_ptr, part_ptr, contrast_y_ptr,
                 T, V, DP, DQ, softcap_p, softcap_q, beta, split_cols, S,
                 BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
                 HAS_BIAS_P: tl.constexpr, HAS_BIAS_Q: tl.constexpr, SOFTCAP_P: tl.constexpr, SOFTCAP_Q: tl.constexpr,
                 HAS_TARGETS: tl.constexpr, JS_PASS: tl.constexpr, JS: tl.constexpr, OVERLAP: tl.constexpr,
                 DOT_FP32: tl.constexpr,
                 PRECISION_P: tl.constexpr, PRECISION_Q: tl.constexpr, IGNORE: tl.constexpr, LOG2: tl.constexpr):
    split = tl.program_id(1)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)  # [BT]
    row_mask = rows < T
    hp_rows = hp_ptr + rows[:, None] * hp_stride
    hq_rows = hq_ptr + rows[:, None] * hq_stride
    zero = tl.zeros([BLOCK_T], dtype=tl.float32)

    if HAS_TARGETS and not JS_PASS:
        if split == 0:  # the targets' logits, for the contrastive score: one split computes and stores them
            target = tl.load(targets_ptr + rows, mask=row_mask, other=IGNORE).to(tl.int64)
            target = tl.where(target == IGNORE, 0, target)
            z_py, _ = target_logits(hp_rows, row_mask, wp_ptr, wp_stride, target, bp_ptr, softcap_p, 1.0, DP,
                                    BLOCK_T, BLOCK_K, HAS_BIAS_P, SOFTCAP_P, False, DOT_FP32, PRECISION_P)
            z_qy, _ = target_logits(hq_rows, row_mask, wq_ptr, wq_stride, target, bq_ptr, softcap_q, 1.0, DQ,
                                    BLOCK_T, BLOCK_K, HAS_BIAS_Q, SOFTCAP_Q, False, DOT_FP32, PRECISION_Q)
            tl.store(contrast_y_ptr + rows, contrast(z_py, z_qy, beta), mask=row_mask)

    if JS_PASS:
        lse_p = tl.load(lse_p_ptr + rows, mask=row_mask, other=0.0)
        lse_q = tl.load(lse_q_ptr + rows, mask=row_mask, other=0.0)
    m_p, s_p, a_p = zero + float("-inf"), zero, zero
    m_q, s_q, a_q = zero + float("-inf"), zero, zero
    m_c, s_c = zero + float("-inf"), zero
    share = zero  # this split's part of 2 JS
    shared = zero  # this split's part of sum min(p, q)
    v_begin = split * split_cols
    v_end = tl.minimum(V, v_begin + split_cols)
    for start in range(v_begin, v_end, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        col_mask = cols < v_end
        in_range = row_mask[:, None] & col_mask[None, :]
        z_p, _ = logits_tile(hp_rows, row_mask, wp_ptr, wp_stride, cols, col_mask, bp_ptr, softcap_p, 1.0, DP,
                             BLOCK_T, BLOCK_V, BLOCK_K, HAS_BIAS_P, SOFTCAP_P, False, DOT_FP32, PRECISION_P)
        z_q, _ = logits_tile(hq_rows, row_mask, wq_ptr, wq_stride, cols, col_mask, bq_ptr, softcap_q, 1.0, DQ,
                             BLOCK_T, BLOCK_V, BLOCK_K, HAS_BIAS_Q, SOFTCAP_Q, False, DOT_FP32, PRECISION_Q)
        z_p = tl.where(in_range, z_p, float("-inf"))
        z_q = tl.where(in_range, z_q, float("-inf"))
        if JS_PASS:
            log_p = z_p - lse_p[:, None]
            log_q = z_q - lse_q[:, None]
            if JS:
                share += js_share(log_p, log_q, LOG2)
            if OVERLAP:
                shared += overlap_share(log_p, log_q)
        else:
            m_p, s_p, a_p, m_q, s_q, a_q, m_c, s_c = fold_tile(z_p, z_q, beta, m_p, s_p, a_p, m_q, s_q, a_q, m_c, s_c,
                                                               HAS_TARGETS)

    out = part_ptr + split * T + rows  # field f of this split: out + f * S * T
    if JS_PASS:
        tl.store(out, share, mask=row_mask)
        tl.store(out + S * T, shared, mask=row_mask)
    else:
        tl.store(out, m_p, mask=row_mask)
        tl.store(out + S * T, s_p, mask=row_mask)
        tl.store(out + 2 * S * T, a_p, mask=row_mask)
        tl.store(out + 3 * S * T, m_q, mask=row_mask)
        tl.store(out + 4 * S * T, s_q, mask=row_mask)
        tl.store(out + 5 * S * T, a_q, mask=row_mask)
        tl.store(out + 6 * S * T, m_c, mask=row_mask)
        tl.store(out + 7 * S * T, s_c, mask=row_mask)


@triton.jit
def _pair_merge_kernel(part_ptr, contrast_y_ptr, targets_ptr, T, S, kl_pq_ptr, kl_qp_ptr, score_ptr, lse_p_ptr,
                       lse_q_ptr, ROWS: tl.constexpr, HAS_TARGETS: tl.constexpr, IGNORE: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_mask = rows < T
    zero = tl.zeros([ROWS], dtype=tl.float32)
    m_p, s_p, a_p = zero + float("-inf"), zero, zero
    m_q, s_q, a_q = zero + float("-inf"), zero, zero
    m_c, s_c = zero + float("-inf"), zero
    for split in range(0, S):
        at = part_ptr + split * T + rows  # field f: at + f * S * T
        m_p, s_p, a_p = merge_states(m_p, s_p, a_p, tl.load(at, mask=row_mask, other=float("-inf")),
                                     tl.load(at + S * T, mask=row_mask, other=0.0),
                                     tl.load(at + 2 * S * T, mask=row_mask, other=0.0))
        m_q, s_q, a_q = merge_states(m_q, s_q, a_q, tl.load(at + 3 * S * T, mask=row_mask, other=float("-inf")),
                                     tl.load(at + 4 * S * T, mask=row_mask, other=0.0),
                                     tl.load(at + 5 * S * T, mask=row_mask, other=0.0))
        m_c, s_c, _ = merge_states(m_c, s_c, zero, tl.load(at + 6 * S * T, mask=row_mask, other=float("-inf")),
                                   tl.load(at + 7 * S * T, mask=row_mask, other=0.0), zero)
    masked = (m_p == float("-inf")) | (m_q == float("-inf"))
    lse_p = tl.where(masked, float("nan"), m_p + tl.log(s_p))
    lse_q = tl.where(masked, float("nan"), m_q + tl.log(s_q))
    tl.store(lse_p_ptr + rows, lse_p, mask=row_mask)
    tl.store(lse_q_ptr + rows, lse_q, mask=row_mask)
    tl.store(kl_pq_ptr + rows, a_p / s_p - lse_p + lse_q, mask=row_mask)
    tl.store(kl_qp_ptr + rows, a_q / s_q - lse_q + lse_p, mask=row_mask)
    if HAS_TARGETS:
        ignored = tl.load(targets_ptr + rows, mask=row_mask, other=IGNORE) == IGNORE
        score = tl.exp(tl.load(contrast_y_ptr + rows, mask=row_mask, other=0.0) - (m_c + tl.log(s_c)))
        tl.store(score_ptr + rows, tl.where(ignored | masked, float("nan"), score), mask=row_mask)


def linear_divergence(hidden_p: torch.Tensor, weight_p: torch.Tensor, hidden_q: torch.Tensor, weight_q: torch.Tensor,
                      targets: torch.Tensor | None = None, *, bias_p: torch.Tensor | None = None,
                      bias_q: torch.Tensor | None = None, softcap_p: float | None = None,
                      softcap_q: float | None = None, beta: float = 1.0, js: bool = True,
                      overlap: bool = False) -> Divergence:
    """Same contract as `linear_divergence_reference`; CUDA tensors (or CPU under
    TRITON_INTERPRET=1)."""
    check_head(hidden_p, weight_p, bias_p, softcap_p)
    check_head(hidden_q, weight_q, bias_q, softcap_q)
    check_pair((hidden_p.shape[0], weight_p.shape[0]), (hidden_q.shape[0], weight_q.shape[0]), targets, beta)
    hidden_p, weight_p, hidden_q, weight_q = (t if t.stride(-1) == 1 else t.contiguous()
                                              for t in (hidden_p, weight_p, hidden_q, weight_q))
    rows, vocab = hidden_p.shape[0], weight_p.shape[0]
    fp32 = dict(dtype=torch.float32, device=hidden_p.device)
    result = Divergence(torch.empty(rows, **fp32), torch.empty(rows, **fp32), None,
                        torch.empty(rows, **fp32) if targets is not None else None)
    if rows == 0:
        result.js = torch.empty(0, **fp32) if js else None
        result.overlap = torch.empty(0, **fp32) if overlap else None
        return result
    splits, split_cols = vocab_splits(rows, vocab, hidden_p.device)
    part = torch.empty(FIELDS, splits, rows, **fp32)
    contrast_y, lse_p, lse_q = (torch.empty(rows, **fp32) for _ in range(3))
    targets = targets.contiguous() if targets is not None else None
    placeholder = contrast_y  # for absent optional tensors (never read)

    def launch(js_pass: bool) -> None:
        _pair_kernel[lambda meta: (triton.cdiv(rows, meta["BLOCK_T"]), splits)](
            hidden_p, hidden_p.stride(0), weight_p, weight_p.stride(0), bias_p if bias_p is not None else placeholder,
            hidden_q, hidden_q.stride(0), weight_q, weight_q.stride(0), bias_q if bias_q is not None else placeholder,
            targets if targets is not None else placeholder, lse_p, lse_q, part, contrast_y,
            rows, vocab, hidden_p.shape[1], hidden_q.shape[1], float(softcap_p or 1.0), float(softcap_q or 1.0),
            float(beta), split_cols, splits,
            HAS_BIAS_P=bias_p is not None, HAS_BIAS_Q=bias_q is not None, SOFTCAP_P=bool(softcap_p),
            SOFTCAP_Q=bool(softcap_q), HAS_TARGETS=targets is not None, JS_PASS=js_pass, JS=js, OVERLAP=overlap,
            DOT_FP32=INTERPRETED,
            PRECISION_P=dot_precision(hidden_p.dtype), PRECISION_Q=dot_precision(hidden_q.dtype),
            IGNORE=IGNORE_INDEX, LOG2=LN2,
        )

    launch(js_pass=False)
    merge_rows = rows_per_program(rows, 64)
    _pair_merge_kernel[(triton.cdiv(rows, merge_rows),)](
        part, contrast_y, targets if targets is not None else placeholder, rows, splits, result.kl_pq, result.kl_qp,
        result.contrastive if targets is not None else placeholder, lse_p, lse_q,
        ROWS=merge_rows, HAS_TARGETS=targets is not None, IGNORE=IGNORE_INDEX, num_warps=1 if INTERPRETED else 2,
    )
    if js or overlap:
        launch(js_pass=True)  # each split's share of 2 JS lands in part[0], of the overlap in part[1]
        masked = torch.isnan(lse_p) | torch.isnan(lse_q)
        if js:
            result.js = torch.where(masked, float("nan"), 0.5 * part[0].sum(0))
        if overlap:
            result.overlap = torch.where(masked, float("nan"), part[1].sum(0))
    return result
