"""Triton `linear_vocab_stats`: hidden @ W^T tile by tile with tl.dot, statistics in the
epilogue of each tile, logits never written to memory.

Grid (row blocks, vocabulary splits). Program (i, s) takes BLOCK_T rows of hidden and the
s-th contiguous range of the vocabulary; for each tile of BLOCK_V vocabulary rows it
accumulates z = h W_tile^T over d in steps of BLOCK_K (fp32 accumulator), applies
bias / soft-cap / temperature, and folds the tile into per-row partial state: online
moments (m, s0, s1, s2), the rank count, a running top-k (triton_online.py). A second,
small kernel merges the S partial states of each row (the same exact merge as between
tiles) and writes the statistics. Splitting the vocabulary keeps the GPU busy when T is
small (the logit lens over a short text) and bounds the tail of the grid when T is large.
Tile sizes, warps and pipeline stages are tuned per (V, d) at the first call on a GPU.

Target logit: each program first computes z_y for its rows as the diagonal of
h W[y]^T with the same tile shape, K loop and dot as the vocabulary tiles (BLOCK_V =
BLOCK_T), so z_y matches the tile's own value of z at y and ties rank together as in the
reference. The rank count also skips v = y itself.

Memory beyond the inputs and outputs: the partial states, S x T x (20 + 8 KP) bytes
(~12 MB at T = 8192 on an H100), against 2.5 GB for materialized bf16 logits.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .linear_vocab_stats import check_head
from .triton_online import (EMPTY_BASE, INTERPRETED, merge_moments, rows_per_program, stats_outputs, store_stats,
                            tile_moments, topk_init, topk_insert, tuned)
from .vocab_stats import IGNORE_INDEX, VocabStats, check_options


@triton.jit
def dot_tile(h_rows, row_mask, w_rows, col_mask, D, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr,
             BLOCK_K: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    """acc [BT, BN] = h W^T in fp32, over d in steps of BLOCK_K. h_rows: [BT, 1] pointers to
    rows of h; w_rows: [BN, 1] pointers to rows of W; masked rows read as zeros."""
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_T, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        k_mask = (k0 + ks < D)[None, :]
        h = tl.load(h_rows + k0 + ks[None, :], mask=row_mask[:, None] & k_mask, other=0.0)
        w = tl.load(w_rows + k0 + ks[None, :], mask=col_mask[:, None] & k_mask, other=0.0)
        if DOT_FP32:  # the interpreter: bf16 dot products are wrong there
            h = h.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(h, tl.trans(w), acc, input_precision=PRECISION)
    return acc


@triton.jit
def head_transform(acc, bias, softcap, temperature, HAS_BIAS: tl.constexpr, SOFTCAP: tl.constexpr,
                   SCALED: tl.constexpr):
    """fp32 accumulator -> (logits as the model gives them, logits / temperature)."""
    z = acc
    if HAS_BIAS:
        z = z + bias
    if SOFTCAP:
        z = softcap * (1.0 - 2.0 / (tl.exp(2.0 * z / softcap) + 1.0))  # c tanh(z / c), saturating at +-c
    scaled = z
    if SCALED:
        scaled = z / temperature
    return z, scaled


@triton.jit
def logits_tile(h_rows, row_mask, w_ptr, w_stride, cols, col_mask, b_ptr, softcap, temperature, D,
                BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, HAS_BIAS: tl.constexpr,
                SOFTCAP: tl.constexpr, SCALED: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    """Logits of rows h ([BT, 1] row pointers) against the vocabulary entries `cols` [BN] of one
    lm_head: (z, z / temperature), each [BT, BN] fp32."""
    w_rows = w_ptr + cols.to(tl.int64)[:, None] * w_stride  # [BN, 1]
    acc = dot_tile(h_rows, row_mask, w_rows, col_mask, D, BLOCK_T, BLOCK_N, BLOCK_K, DOT_FP32, PRECISION)
    bias = tl.zeros([1, BLOCK_N], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(b_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    return head_transform(acc, bias, softcap, temperature, HAS_BIAS, SOFTCAP, SCALED)


@triton.jit
def target_logits(h_rows, row_mask, w_ptr, w_stride, targets, b_ptr, softcap, temperature, D,
                  BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTCAP: tl.constexpr,
                  SCALED: tl.constexpr, DOT_FP32: tl.constexpr, PRECISION: tl.constexpr):
    """Each row's logit for its own target y [BT]: the diagonal of the [BT, BT] tile of the rows
    against W[y], computed by the same dot as the [BT, BLOCK_V = BT] vocabulary tiles so that
    z_y equals the tile's own value at y (ties then rank together). (z_y, z_y / temperature) [BT]."""
    z, scaled = logits_tile(h_rows, row_mask, w_ptr, w_stride, targets, row_mask, b_ptr, softcap, temperature, D,
                            BLOCK_T, BLOCK_T, BLOCK_K, HAS_BIAS, SOFTCAP, SCALED, DOT_FP32, PRECISION)
    diagonal = tl.arange(0, BLOCK_T)[:, None] == tl.arange(0, BLOCK_T)[None, :]
    return tl.sum(tl.where(diagonal, z, 0.0), 1), tl.sum(tl.where(diagonal, scaled, 0.0), 1)


SPLIT_UNIT = 256 if INTERPRETED else 128  # vocabulary splits are multiples of every config's BLOCK_V


@triton.autotune(
    # (tile, K step, warps, stages): 128 x 128 tiles with 8 warps use ~255 registers per thread
    # (the fp32 accumulator and the statistics epilogue); 16 warps or 64 x 64 tiles relieve that
    configs=tuned([triton.Config({"BLOCK_T": b, "BLOCK_V": b, "BLOCK_K": k}, num_warps=w, num_stages=s)
                   for b, k, w, s in ((128, 64, 8, 3), (128, 64, 8, 4), (128, 64, 16, 3), (64, 64, 4, 3))],
                  triton.Config({"BLOCK_T": 16, "BLOCK_V": 256, "BLOCK_K": 32}, num_warps=1, num_stages=1)),
    key=["V", "D", "K", "HAS_TARGETS"],
    cache_results=True,  # the choice persists in Triton's cache: later processes skip the timing
)
@triton.jit
def _partial_kernel(hidden_ptr, h_stride, weight_ptr, w_stride, bias_ptr, targets_ptr, T, V, D,
                    softcap, temperature, split_cols,
                    m_ptr, s0_ptr, s1_ptr, s2_ptr, rank_ptr, values_ptr, ids_ptr, target_ptr,
                    K: tl.constexpr, KP: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr,
                    BLOCK_K: tl.constexpr, HAS_TARGETS: tl.constexpr, HAS_BIAS: tl.constexpr,
                    SOFTCAP: tl.constexpr, SCALED: tl.constexpr, DOT_FP32: tl.constexpr,
                    PRECISION: tl.constexpr, IGNORE: tl.constexpr):
    split = tl.program_id(1)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)  # [BT]
    row_mask = rows < T
    h_rows = hidden_ptr + rows[:, None] * h_stride  # [BT, 1]

    ignored = rows < 0
    target_z = tl.zeros([BLOCK_T], dtype=tl.float32)
    target = tl.zeros([BLOCK_T], dtype=tl.int64)
    rank = tl.zeros([BLOCK_T], dtype=tl.int32)
    if HAS_TARGETS:
        target = tl.load(targets_ptr + rows, mask=row_mask, other=IGNORE).to(tl.int64)
        ignored = target == IGNORE
        target = tl.where(ignored, 0, target)
        target_z, target_scaled = target_logits(h_rows, row_mask, weight_ptr, w_stride, target, bias_ptr, softcap,
                                                temperature, D, BLOCK_T, BLOCK_K, HAS_BIAS, SOFTCAP, SCALED,
                                                DOT_FP32, PRECISION)
        if split == 0:
            tl.store(target_ptr + rows, target_scaled, mask=row_mask)

    m = tl.full([BLOCK_T], float("-inf"), tl.float32)
    s0 = tl.zeros([BLOCK_T], dtype=tl.float32)
    s1 = tl.zeros([BLOCK_T], dtype=tl.float32)
    s2 = tl.zeros([BLOCK_T], dtype=tl.float32)
    values, ids = topk_init(BLOCK_T, K, KP)
    v_begin = split * split_cols
    v_end = tl.minimum(V, v_begin + split_cols)
    for start in range(v_begin, v_end, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)  # [BV] vocabulary ids
        col_mask = cols < v_end
        z, scaled = logits_tile(h_rows, row_mask, weight_ptr, w_stride, cols, col_mask, bias_ptr, softcap, temperature,
                                D, BLOCK_T, BLOCK_V, BLOCK_K, HAS_BIAS, SOFTCAP, SCALED, DOT_FP32, PRECISION)
        in_range = row_mask[:, None] & col_mask[None, :]  # [BT, BV]
        scaled = tl.where(in_range, scaled, float("-inf"))
        tile_m, t0, t1, t2 = tile_moments(scaled, in_range & (scaled > float("-inf")))
        m, s0, s1, s2 = merge_moments(m, s0, s1, s2, tile_m, t0, t1, t2)
        if HAS_TARGETS:
            above = in_range & (z > target_z[:, None]) & (cols[None, :] != target[:, None])
            rank += tl.sum(above.to(tl.int32), 1)
        values, ids = topk_insert(values, ids, scaled, cols[None, :], in_range, tile_m)

    out = split * T + rows  # [BT] index into [S, T]
    tl.store(m_ptr + out, m, mask=row_mask)
    tl.store(s0_ptr + out, s0, mask=row_mask)
    tl.store(s1_ptr + out, s1, mask=row_mask)
    tl.store(s2_ptr + out, s2, mask=row_mask)
    tl.store(rank_ptr + out, rank, mask=row_mask)
    slots = out[:, None] * KP + tl.arange(0, KP)[None, :]
    tl.store(values_ptr + slots, values, mask=row_mask[:, None])
    tl.store(ids_ptr + slots, ids, mask=row_mask[:, None])


@triton.jit
def _merge_kernel(m_ptr, s0_ptr, s1_ptr, s2_ptr, rank_ptr, values_ptr, ids_ptr, target_ptr, targets_ptr, T, S,
                  lse_ptr, entropy_ptr, varentropy_ptr, margin_ptr, logprob_ptr, out_rank_ptr,
                  topk_ids_ptr, topk_probs_ptr,
                  K: tl.constexpr, KP: tl.constexpr, TOP_K: tl.constexpr, ROWS: tl.constexpr,
                  HAS_TARGETS: tl.constexpr, IGNORE: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)  # [R]
    row_mask = rows < T
    m = tl.full([ROWS], float("-inf"), tl.float32)
    s0 = tl.zeros([ROWS], dtype=tl.float32)
    s1 = tl.zeros([ROWS], dtype=tl.float32)
    s2 = tl.zeros([ROWS], dtype=tl.float32)
    rank = tl.zeros([ROWS], dtype=tl.int32)
    values, ids = topk_init(ROWS, K, KP)
    for split in range(0, S):
        part = split * T + rows
        pm = tl.load(m_ptr + part, mask=row_mask, other=float("-inf"))
        p0 = tl.load(s0_ptr + part, mask=row_mask, other=0.0)
        p1 = tl.load(s1_ptr + part, mask=row_mask, other=0.0)
        p2 = tl.load(s2_ptr + part, mask=row_mask, other=0.0)
        m, s0, s1, s2 = merge_moments(m, s0, s1, s2, pm, p0, p1, p2)
        rank += tl.load(rank_ptr + part, mask=row_mask, other=0)
        slots = part[:, None] * KP + tl.arange(0, KP)[None, :]
        part_values = tl.load(values_ptr + slots, mask=row_mask[:, None], other=float("-inf"))
        part_ids = tl.load(ids_ptr + slots, mask=row_mask[:, None], other=-1)
        real = (part_ids >= 0) & (part_ids < EMPTY_BASE)  # skip the split's empty and padding slots
        best = tl.max(tl.where(real, part_values, float("-inf")), 1)
        values, ids = topk_insert(values, ids, part_values, part_ids, real, best)

    ignored = rows < 0
    target_logit = tl.zeros([ROWS], dtype=tl.float32)
    if HAS_TARGETS:
        ignored = tl.load(targets_ptr + rows, mask=row_mask, other=IGNORE) == IGNORE
        target_logit = tl.load(target_ptr + rows, mask=row_mask, other=0.0)
    store_stats(rows, row_mask, m, s0, s1, s2, values, ids, target_logit, rank, ignored,
                lse_ptr, entropy_ptr, varentropy_ptr, margin_ptr, logprob_ptr, out_rank_ptr, topk_ids_ptr,
                topk_probs_ptr, K, TOP_K, HAS_TARGETS)


def vocab_splits(rows: int, vocab: int, device: torch.device) -> tuple[int, int]:
    """(number of vocabulary splits, columns per split): enough splits for ~8 programs per
    SM with 128-row blocks, so the grid's last wave is a small share of it and short inputs
    still fill the GPU. The interpreter takes three (to exercise the merge)."""
    units = triton.cdiv(vocab, SPLIT_UNIT)
    programs = 3 if INTERPRETED else 8 * torch.cuda.get_device_properties(device).multi_processor_count
    splits = max(1, min(units, triton.cdiv(programs, triton.cdiv(rows, 128))))
    split_cols = SPLIT_UNIT * triton.cdiv(units, splits)
    return triton.cdiv(vocab, split_cols), split_cols


def linear_vocab_stats(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor | None = None, *,
                       bias: torch.Tensor | None = None, softcap: float | None = None, top_k: int = 0,
                       temperature: float = 1.0) -> VocabStats:
    """Same contract as `linear_vocab_stats_reference`; hidden [T, d] and weight [V, d] in
    fp32/bf16/fp16 on CUDA (or on CPU under TRITON_INTERPRET=1)."""
    check_head(hidden, weight, bias, softcap)
    rows, vocab = hidden.shape[0], weight.shape[0]
    check_options(rows, vocab, targets, top_k, temperature)
    hidden, weight = (t if t.stride(-1) == 1 else t.contiguous() for t in (hidden, weight))
    device = hidden.device
    k = min(max(top_k, 2), vocab)
    kp = triton.next_power_of_2(k)
    stats, outputs = stats_outputs(rows, top_k, targets is not None, device)
    if rows == 0:
        return stats

    fp32 = dict(dtype=torch.float32, device=device)
    lse = stats.lse  # stands in for absent optional tensors (never read)
    splits, split_cols = vocab_splits(rows, vocab, device)
    part_m, part_s0, part_s1, part_s2 = (torch.empty(splits, rows, **fp32) for _ in range(4))
    part_rank = torch.empty(splits, rows, dtype=torch.int32, device=device)
    part_values = torch.empty(splits, rows, kp, **fp32)
    part_ids = torch.empty(splits, rows, kp, dtype=torch.int32, device=device)
    target_logit = torch.empty(rows, **fp32)
    targets = targets.contiguous() if targets is not None else None
    flags = dict(HAS_TARGETS=targets is not None, IGNORE=IGNORE_INDEX)
    _partial_kernel[lambda meta: (triton.cdiv(rows, meta["BLOCK_T"]), splits)](
        hidden, hidden.stride(0), weight, weight.stride(0), bias if bias is not None else lse,
        targets if targets is not None else lse, rows, vocab, hidden.shape[1],
        float(softcap or 1.0), float(temperature), split_cols,
        part_m, part_s0, part_s1, part_s2, part_rank, part_values, part_ids, target_logit,
        K=k, KP=kp, HAS_BIAS=bias is not None, SOFTCAP=bool(softcap), SCALED=temperature != 1.0,
        DOT_FP32=INTERPRETED, PRECISION=dot_precision(hidden.dtype), **flags,
    )
    merge_rows = rows_per_program(rows, 16)
    _merge_kernel[(triton.cdiv(rows, merge_rows),)](
        part_m, part_s0, part_s1, part_s2, part_rank, part_values, part_ids, target_logit,
        targets if targets is not None else lse, rows, splits, *outputs,
        K=k, KP=kp, TOP_K=top_k, ROWS=merge_rows, **flags,
        num_warps=1 if INTERPRETED else 4,
    )
    return stats


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs: exact fp32 products unless torch itself allows TF32 for matmuls
    (torch.backends.cuda.matmul.allow_tf32 / set_float32_matmul_precision)."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"
