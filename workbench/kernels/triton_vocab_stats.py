"""Triton `vocab_stats`: one pass over the logits.

Each program takes ROWS rows (one on GPUs; all in the interpreter) and walks them in tiles
of BLOCK logits (loads cast to fp32, `-inf` past V; BLOCK and warps tuned per V on the
first call, with or without loading the next tile ahead), keeping per row, in registers:
  - the online moments (m, s0, s1, s2) of triton_online.py -> lse, entropy, varentropy;
  - the rank count #{v : z_v > z_y}, against the target logit loaded before the walk;
  - a running top-k (k = max(top_k, 2): the top two give the margin).

Top-k choice: a running per-row list rather than a second pass. A second pass would read
the logits twice (the kernel is bound by that one read: 2.49 GB at T = 8192, V = 151936,
bf16), while the running list costs one comparison per tile (the tile's max, which the
softmax needs anyway, against the list's worst entry); only tiles that hold a new top-k
entry pay two extra reductions per entry taken, about k ln(V / BLOCK) entries per row on
typical rows. Adversarial rows (logits increasing along the vocabulary) take k entries in
every tile and run a few times slower, still exact.

Same results as `vocab_stats_reference` (fp32 accumulation; summation order differs, so
agreement is to rounding: see tests/kernel_tests/test_triton_vocab_stats.py).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_online import (ROW_CONFIGS, merge_moments, rows_per_program, stats_outputs, store_stats, tile_moments,
                            topk_init, topk_insert)
from .vocab_stats import IGNORE_INDEX, VocabStats, _check


@triton.autotune(
    configs=ROW_CONFIGS,
    key=["V", "K", "HAS_TARGETS"],
    cache_results=True,  # the choice persists in Triton's cache: later processes skip the timing
)
@triton.jit
def _vocab_stats_kernel(logits_ptr, row_stride, targets_ptr, temperature, T, V,
                        lse_ptr, entropy_ptr, varentropy_ptr, margin_ptr, logprob_ptr, rank_ptr,
                        topk_ids_ptr, topk_probs_ptr,
                        K: tl.constexpr, KP: tl.constexpr, TOP_K: tl.constexpr, ROWS: tl.constexpr,
                        BLOCK: tl.constexpr, HAS_TARGETS: tl.constexpr, SCALED: tl.constexpr, IGNORE: tl.constexpr,
                        PREFETCH: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)  # [R]
    row_mask = rows < T
    bases = logits_ptr + rows[:, None] * row_stride  # [R, 1]
    lanes = tl.arange(0, BLOCK)[None, :]  # [1, B]

    ignored = rows < 0  # [R] all False
    target_logit = tl.zeros([ROWS], dtype=tl.float32)
    target_raw = tl.zeros([ROWS], dtype=tl.float32)
    rank = tl.zeros([ROWS], dtype=tl.int32)
    if HAS_TARGETS:
        target = tl.load(targets_ptr + rows, mask=row_mask, other=IGNORE)
        ignored = target == IGNORE
        target_raw = tl.load(logits_ptr + rows * row_stride + tl.where(ignored, 0, target), mask=row_mask).to(tl.float32)
        target_logit = target_raw
        if SCALED:
            target_logit = target_raw / temperature

    m = tl.full([ROWS], float("-inf"), tl.float32)
    s0 = tl.zeros([ROWS], dtype=tl.float32)
    s1 = tl.zeros([ROWS], dtype=tl.float32)
    s2 = tl.zeros([ROWS], dtype=tl.float32)
    values, ids = topk_init(ROWS, K, KP)
    if PREFETCH:
        ahead = tl.load(bases + lanes, mask=row_mask[:, None] & (lanes < V), other=float("-inf"))  # tile 0
    for start in range(0, V, BLOCK):
        cols = start + lanes  # [1, B] int32 vocabulary ids
        in_range = row_mask[:, None] & (cols < V)  # [R, B]
        if PREFETCH:  # the next tile's load is issued before this tile's math: two tiles in flight
            raw = ahead.to(tl.float32)
            ahead = tl.load(bases + cols + BLOCK, mask=row_mask[:, None] & (cols + BLOCK < V), other=float("-inf"))
        else:
            raw = tl.load(bases + cols, mask=in_range, other=float("-inf")).to(tl.float32)
        z = raw
        if SCALED:
            z = raw / temperature
        tile_m, t0, t1, t2 = tile_moments(z, in_range & (z > float("-inf")))
        m, s0, s1, s2 = merge_moments(m, s0, s1, s2, tile_m, t0, t1, t2)
        if HAS_TARGETS:
            rank += tl.sum((raw > target_raw[:, None]).to(tl.int32), 1)  # on the caller's logits
        values, ids = topk_insert(values, ids, z, cols, in_range, tile_m)

    store_stats(rows, row_mask, m, s0, s1, s2, values, ids, target_logit, rank, ignored,
                lse_ptr, entropy_ptr, varentropy_ptr, margin_ptr, logprob_ptr, rank_ptr, topk_ids_ptr, topk_probs_ptr,
                K, TOP_K, HAS_TARGETS)


def vocab_stats(logits: torch.Tensor, targets: torch.Tensor | None = None, *, top_k: int = 0,
                temperature: float = 1.0) -> VocabStats:
    """Same contract as `vocab_stats_reference`. logits: [T, V] fp32/bf16/fp16 on CUDA (or
    on CPU under TRITON_INTERPRET=1); targets: [T] int (IGNORE_INDEX: none)."""
    _check(logits, targets, top_k, temperature)
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    if targets is not None:
        targets = targets.contiguous()
    rows, vocab = logits.shape
    k = min(max(top_k, 2), vocab)
    stats, outputs = stats_outputs(rows, top_k, targets is not None, logits.device)
    if rows:
        per_program = rows_per_program(rows, 1)
        _vocab_stats_kernel[(triton.cdiv(rows, per_program),)](
            logits, logits.stride(0), targets if targets is not None else stats.lse, float(temperature), rows, vocab,
            *outputs, K=k, KP=triton.next_power_of_2(k), TOP_K=top_k, ROWS=per_program,
            HAS_TARGETS=targets is not None, SCALED=temperature != 1.0, IGNORE=IGNORE_INDEX,
        )
    return stats

