"""Triton building blocks shared by the vocabulary kernels: online softmax moments over
tiles of logits, and a running top-k per row. Everything works on 2-D tiles [R, B]
(R rows, B logits of each) in fp32, so one-row kernels (R = 1) and matmul tiles share it.

Online moments. For the logits z of a row seen so far, with m their max and d = z - m,
the state is (m, s0, s1, s2) = (m, sum e^d, sum e^d d, sum e^d d^2). Two states over
disjoint sets of logits merge exactly (shift a state to a larger max m' with
delta = m - m' <= 0):

    s0' = e^delta s0
    s1' = e^delta (s1 + delta s0)
    s2' = e^delta (s2 + 2 delta s1 + delta^2 s0)

and at the end, with log p = d - log s0:

    lse = m + log s0,   H = log s0 - s1 / s0,   varentropy = Var_p(log p) = s2 / s0 - (s1 / s0)^2.

`-inf` logits carry no mass (e^d = 0 and no 0 * inf); a row without a finite logit ends
with m = -inf, and `finish` turns it into NaN.

Running top-k. Each row keeps KP slots (KP = next power of two >= K): K real slots and
padding slots (value +inf, id PAD) that are never evicted. A real slot starts empty:
value -inf and a distinct id >= EMPTY_BASE, so empty slots are evicted before any real
entry, even one whose logit is -inf. Entries are ordered by (value descending, id
ascending): a candidate replaces the worst entry only when strictly larger, and tiles
arrive in increasing id order, so ties keep the lower id, as a stable sort would.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .vocab_stats import VocabStats

NEG_INF = tl.constexpr(float("-inf"))
POS_INF = tl.constexpr(float("inf"))
EMPTY_BASE = tl.constexpr(2**30)  # ids of empty slots: EMPTY_BASE + slot; vocabulary ids stay below
PAD = tl.constexpr(-1)  # id of a padding slot (past K)
NONE = tl.constexpr(2**31 - 1)  # "no lane" in index reductions

# Under TRITON_INTERPRET=1 every program and every call of a jitted helper runs in Python
# (milliseconds each) while tile operations are NumPy: kernels take many rows per program
# and one small configuration there; on GPUs they tune among a few at the first call.
INTERPRETED = triton.knobs.runtime.interpret


def tuned(gpu_configs: list, interpreted_config):
    """The autotuning candidates: `gpu_configs`, or the single `interpreted_config`."""
    return [interpreted_config] if INTERPRETED else gpu_configs


def rows_per_program(rows: int, gpu_rows: int) -> int:
    """Rows each program takes: `gpu_rows` on GPUs; in the interpreter up to 16 (a power of two)."""
    return triton.next_power_of_2(min(rows, 16)) if INTERPRETED else gpu_rows


# Row-walking kernels (vocab_stats, divergence): on GPUs (logits per tile, warps, whether to
# load the next tile before this tile's math). Prefetching keeps two tiles in flight per
# program but takes ~50 more registers per thread, so fewer programs share an SM: timing decides.
ROW_CONFIGS = tuned([triton.Config({"BLOCK": block, "PREFETCH": prefetch}, num_warps=warps)
                     for block, warps, prefetch in ((2048, 4, True), (4096, 4, True), (4096, 8, True),
                                                    (4096, 8, False), (8192, 8, False), (8192, 16, False))],
                    triton.Config({"BLOCK": 1024, "PREFETCH": True}, num_warps=1))


@triton.jit
def tile_moments(z, alive):
    """Moments of one tile relative to its own max. z, alive: [R, B] -> m, s0, s1, s2: [R]."""
    m = tl.max(tl.where(alive, z, NEG_INF), 1)
    d = tl.where(alive, z - m[:, None], 0.0)
    e = tl.where(alive, tl.exp(d), 0.0)
    ed = e * d
    return m, tl.sum(e, 1), tl.sum(ed, 1), tl.sum(ed * d, 1)


@triton.jit
def merge_moments(ma, a0, a1, a2, mb, b0, b1, b2):
    """The state of the union of two disjoint sets of logits (see the module docstring)."""
    m = tl.maximum(ma, mb)
    da = tl.where(ma > NEG_INF, ma - m, 0.0)  # a state with no mass (m = -inf) has s = 0: any finite shift
    db = tl.where(mb > NEG_INF, mb - m, 0.0)
    ca = tl.exp(da)
    cb = tl.exp(db)
    s0 = ca * a0 + cb * b0
    s1 = ca * (a1 + da * a0) + cb * (b1 + db * b0)
    s2 = ca * (a2 + da * (2.0 * a1 + da * a0)) + cb * (b2 + db * (2.0 * b1 + db * b0))
    return m, s0, s1, s2


@triton.jit
def finish(m, s0, s1, s2):
    """lse, entropy, varentropy [R] from a final state; NaN for rows without a finite logit."""
    log_s0 = tl.log(s0)
    mean = s1 / s0  # E_p[d]
    masked = m == NEG_INF
    lse = tl.where(masked, float("nan"), m + log_s0)
    entropy = tl.where(masked, float("nan"), log_s0 - mean)
    varentropy = tl.where(masked, float("nan"), s2 / s0 - mean * mean)
    return lse, entropy, varentropy


@triton.jit
def topk_init(R: tl.constexpr, K: tl.constexpr, KP: tl.constexpr):
    """Empty running lists: values [R, KP] fp32, ids [R, KP] int32."""
    slots = tl.arange(0, KP)[None, :]
    zero = tl.zeros([R, KP], dtype=tl.int32)
    values = tl.where(slots < K, NEG_INF, POS_INF) + zero.to(tl.float32)
    ids = tl.where(slots < K, EMPTY_BASE + slots, PAD) + zero
    return values, ids


@triton.jit
def topk_insert(values, ids, z, cols, avail, best):
    """Insert a tile's candidates into each row's list, best first, while they beat the
    list's worst entry (or fill an empty slot).

    values, ids: [R, KP] lists; z: [R, B] candidate values; cols: [R or 1, B] int32 their
    ids (distinct); avail: [R, B] which candidates exist; best: [R] max of z over avail.
    Candidates are taken in (value desc, id asc) order, so those not yet taken are the ones
    after the last taken (last_value, last_id) in that order: recomputed from two numbers
    per row instead of carrying a [R, B] mask through the loop (registers matter on GPUs).
    Cost: one comparison per row when nothing enters (the common case after the first
    tiles); each entry taken costs two reductions over the tile.
    """
    worst = tl.min(values, 1)
    need = (best > worst) | (tl.max(ids, 1) >= EMPTY_BASE)
    last_value = tl.zeros_like(best) + POS_INF
    last_id = tl.zeros_like(worst).to(tl.int32) - 1
    while tl.max(need.to(tl.int32), 0) > 0:
        after = avail & ((z < last_value[:, None]) | ((z == last_value[:, None]) & (cols > last_id[:, None])))
        pos = tl.min(tl.where(after & (z == best[:, None]), cols, NONE), 1)  # lowest id among the best
        take = need & (pos < NONE)
        # evict the worst entry; among equal values the highest id (empty slots first)
        evict = tl.max(tl.where(values == worst[:, None], ids, PAD - 1), 1)
        hit = take[:, None] & (ids == evict[:, None])
        values = tl.where(hit, best[:, None], values)
        ids = tl.where(hit, pos[:, None], ids)
        last_value = tl.where(take, best, last_value)
        last_id = tl.where(take, pos, last_id)
        after = avail & ((z < last_value[:, None]) | ((z == last_value[:, None]) & (cols > last_id[:, None])))
        best = tl.max(tl.where(after, z, NEG_INF), 1)
        worst = tl.min(values, 1)
        need = take & ((best > worst) | (tl.max(ids, 1) >= EMPTY_BASE))  # a row with nothing left stops
    return values, ids


@triton.jit
def topk_pop(values, ids, remaining):
    """The best remaining entry of each row (value desc, id asc): (value [R], id [R],
    remaining without it). remaining: [R, KP] real, not yet popped."""
    value = tl.max(tl.where(remaining, values, NEG_INF), 1)
    index = tl.min(tl.where(remaining & (values == value[:, None]), ids, NONE), 1)
    return value, index, remaining & (ids != index[:, None])


@triton.jit
def store_stats(rows, row_mask, m, s0, s1, s2, values, ids, target_logit, rank, ignored,
                lse_ptr, entropy_ptr, varentropy_ptr, margin_ptr, logprob_ptr, rank_ptr, topk_ids_ptr, topk_probs_ptr,
                K: tl.constexpr, TOP_K: tl.constexpr, HAS_TARGETS: tl.constexpr):
    """Write the final statistics of rows [R] (int64) from their state, top-k lists, and
    (with targets) the target's logit and rank count; `ignored` rows get NaN and -1."""
    lse, entropy, varentropy = finish(m, s0, s1, s2)
    tl.store(lse_ptr + rows, lse, mask=row_mask)
    tl.store(entropy_ptr + rows, entropy, mask=row_mask)
    tl.store(varentropy_ptr + rows, varentropy, mask=row_mask)
    remaining = (ids >= 0) & (ids < EMPTY_BASE)
    first = tl.zeros_like(lse)
    margin = tl.zeros_like(lse) + float("nan")  # stays NaN when V < 2
    for j in tl.static_range(K):
        value, index, remaining = topk_pop(values, ids, remaining)
        if j == 0:
            first = value
        if j == 1:
            margin = first - value
        if j < TOP_K:
            tl.store(topk_ids_ptr + rows * TOP_K + j, index.to(tl.int64), mask=row_mask)
            tl.store(topk_probs_ptr + rows * TOP_K + j, tl.exp(value - lse), mask=row_mask)
    tl.store(margin_ptr + rows, margin, mask=row_mask)
    if HAS_TARGETS:
        tl.store(logprob_ptr + rows, tl.where(ignored, float("nan"), target_logit - lse), mask=row_mask)
        tl.store(rank_ptr + rows, tl.where(ignored, -1, rank).to(tl.int64), mask=row_mask)


def stats_outputs(rows: int, top_k: int, with_targets: bool, device: torch.device) -> tuple[VocabStats, tuple]:
    """Empty VocabStats for `rows` rows, and the tensors `store_stats` writes in its argument
    order (lse, entropy, varentropy, margin, logprob, rank, topk_ids, topk_probs); lse stands in
    for absent ones and for an empty top-k (empty tensors have no address on a GPU), never written."""
    fp32 = dict(dtype=torch.float32, device=device)
    stats = VocabStats(*(torch.empty(rows, **fp32) for _ in range(4)),
                       torch.empty(rows, top_k, dtype=torch.int64, device=device), torch.empty(rows, top_k, **fp32),
                       torch.empty(rows, **fp32) if with_targets else None,
                       torch.empty(rows, dtype=torch.int64, device=device) if with_targets else None)
    lse = stats.lse
    outputs = (lse, stats.entropy, stats.varentropy, stats.margin,
               stats.target_logprob if with_targets else lse, stats.target_rank if with_targets else lse,
               stats.topk_ids if top_k else lse, stats.topk_probs if top_k else lse)
    return stats, outputs
