"""Triton `sample`: temperature, top-k, top-p, min-p and top-H truncation and a Gumbel-max
draw, per row, without sorting the vocabulary.

Each program takes R rows of logits z [R, V] (R = 1 on GPUs) and walks them in tiles of
BLOCK logits (fp32 after the load). Definitions, the total order (logit descending, then id
ascending) and the tie rule are those of `kernels/sample.py`; this kernel finds the same
kept set by a threshold search instead of a sort. Every pass reads the row once and keeps
its statistics per lane ([R, BLOCK] or [R, NTH, BLOCK] registers), reducing across
threads only at the end of the pass (a block-wide reduction per tile would cost more than
the read).

1. Moments pass, s = z / T, online per lane (a value either adds to the lane's sums or
   becomes its max and rescales them, as in flash-attention): s_max, Z = sum e^(s - s_max),
   E = sum e^(s - s_max) (s - s_max), so H(p) = log Z - E / Z; also the largest and smallest
   finite logit and the number of -inf logits.
2. Search passes. Every rule keeps a prefix of the order, and its verdict on a prefix P
   needs only n = |P|, S = sum_P w, A = sum_P w log w (w = e^(s - s_max), so p = w / Z, and
   w = 1 for the first token) and the smallest logit in P. "All of P = {z >= tau} is kept"
   is monotone in tau:
       top-k   n <= k
       top-p   S < top_p Z          (P's mass is below top_p, so the next token is kept too)
       min-p   w(min_P z) >= min_p   (p >= min_p p_(1))
       top-H   log S - A / S <= alpha H(p) + 1e-6   (the entropy of the renormalized prefix)
   A band [lo, hi] of logit values (both taken by some token) holds the boundary: all of
   {z > hi} is kept, not all of {z >= lo}. A pass evaluates NTH thresholds spread evenly
   over (lo, hi], the last one hi itself, picks the sub-interval where the verdict flips,
   and snaps it to the smallest and largest logit inside. The band narrows by >= NTH in
   width and loses at least one distinct value per pass; the search ends when it holds a
   single value t. Once the band holds at most CAP logits (16 tiles on GPUs), one more
   pass gathers them into a scratch row and later passes read only those. Simulated on
   rows like the benchmark's at V = 151936 (NTH = 4): 1 to 3 passes over the row, then 1
   to 7 over the band, for top-k 50, top-p .9 and .99, min-p .1 and top-H .4.
3. Resolution at t, from the statistics (n, S, A) of P = {z > t} and the g tokens tied at
   t, each of weight w_t = e^(t/T - s_max): the number j of tied tokens kept (lowest ids
   first, as the stable sort of the reference), the smallest of
       top-k  k - n;   top-p  1 + #{i in [1, g) : S + i w_t < top_p Z};   min-p  g or 0;
       top-H  the largest i <= g with H(S + i w_t, A + i w_t log w_t) <= budget (bisection on i),
   and at least one token in all.
4. Draw pass: kept = {z > t} plus the first j ids with z = t (ranked by a running count of
   ties, only in rows cut inside a tie group); argmax over kept of s + g, g ~ Gumbel(0, 1)
   from Philox at (v // 4, row) under the seed (`kernels/philox.py`), the reference's noise;
   also S and A of the kept set, for its entropy log S - A / S and the drawn token's
   probability w / S.

Exact like the reference, with rounding where the two sum differently: a boundary decided
by less than ~1e-6 (cumulative mass against top_p, prefix entropy against alpha H) may go
the other way, and the draws agree up to the rounding of log in the noise.

FlashInfer's sampling kernels reach the draw by rejection with probability pivots and never
form the kept set; searching for the threshold itself yields the set, so its size and
entropy come from the same passes.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .philox import U_FLOOR, UNIFORM_SCALE, draw_seed
from .sample import SampleResult, per_row
from .triton_online import NEG_INF, POS_INF

# Globals a kernel reads must be tl.constexpr instances (an annotation alone is not enough).
TOP_H_SLACK = tl.constexpr(1e-6)  # the reference's tolerance on H(q_k) <= alpha H(p)
SCALE = tl.constexpr(UNIFORM_SCALE)
FLOOR = tl.constexpr(U_FLOOR)


@triton.jit
def _load(base, cols, valid, V):
    """Logits [R, BLOCK] in fp32 (-inf past V and on invalid rows) and the in-range mask."""
    in_range = valid[:, None] & (cols < V)[None, :]
    z = tl.load(base[:, None] + cols[None, :], mask=in_range, other=NEG_INF).to(tl.float32)
    return z, in_range


@triton.jit
def _all_kept(n, S, A, z_low, k, top_p, min_p, alpha, Z, budget, T, s_max,
              USE_MASS: tl.constexpr, USE_ENTROPY: tl.constexpr):
    """Whether every rule keeps the whole prefix with n tokens, weight S, sum A of w log w,
    smallest logit z_low (+inf when empty). Any broadcastable shapes."""
    ok = (k <= 0) | (n <= k)
    if USE_MASS:
        ok = ok & ((top_p >= 1.0) | (S < top_p * Z))
    ok = ok & (tl.exp(z_low / T - s_max) >= min_p)
    if USE_ENTROPY:
        ok = ok & ((alpha <= 0.0) | (n == 0) | (tl.log(S) - A / S <= budget))
    return ok


@triton.jit
def _gumbel(seed, rows, start, R: tl.constexpr, BLOCK: tl.constexpr):
    """Gumbel noise [R, BLOCK] for ids start .. start + BLOCK - 1 (start % 4 == 0): Philox
    output v % 4 of the counter (v // 4, row, 0, 0), as in kernels/philox.py."""
    quads = (start // 4 + tl.arange(0, BLOCK // 4)).to(tl.uint32)  # [Q]
    c0 = quads[None, :] + tl.zeros([R, BLOCK // 4], dtype=tl.uint32)  # [R, Q]
    c1 = rows.to(tl.uint32)[:, None] + tl.zeros([R, BLOCK // 4], dtype=tl.uint32)
    zero = tl.zeros([R, BLOCK // 4], dtype=tl.uint32)
    r0, r1, r2, r3 = tl.philox(seed, c0, c1, zero, zero)
    bits = tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), [R, BLOCK])  # id 4q + i <- r_i
    x = bits.to(tl.int32, bitcast=True)
    x = tl.where(x < 0, ~x, x)
    u = tl.maximum(x.to(tl.float32) * SCALE, FLOOR)
    return -tl.log(-tl.log(u))


@triton.jit
def _thresholds(lo, hi, NTH: tl.constexpr):
    """NTH thresholds [R, N] spread evenly over (lo, hi], the last one hi itself."""
    slot = tl.arange(0, NTH)
    fraction = (slot + 1).to(tl.float32) / NTH
    tau = lo[:, None] + (hi - lo)[:, None] * fraction[None, :]
    tau = tl.minimum(tl.maximum(tau, lo[:, None]), hi[:, None])
    return tl.where(slot[None, :] == NTH - 1, hi[:, None], tau)


@triton.jit
def _empty_stats(R: tl.constexpr, NTH: tl.constexpr, W: tl.constexpr, USE_MASS: tl.constexpr,
                 USE_ENTROPY: tl.constexpr):
    """Per-lane statistics [R, N, W] of each threshold tau: the count of band logits >= tau,
    the smallest of them, the largest band logit < tau, and their sums of w and w log w
    (kept as [R, N, 1] zeros when no rule needs them)."""
    count3 = tl.zeros([R, NTH, W], dtype=tl.int32)
    low3 = tl.full([R, NTH, W], POS_INF, tl.float32)
    high3 = tl.full([R, NTH, W], NEG_INF, tl.float32)
    if USE_MASS:
        S3 = tl.zeros([R, NTH, W], dtype=tl.float32)
    else:
        S3 = tl.zeros([R, NTH, 1], dtype=tl.float32)
    if USE_ENTROPY:
        A3 = tl.zeros([R, NTH, W], dtype=tl.float32)
    else:
        A3 = tl.zeros([R, NTH, 1], dtype=tl.float32)
    return count3, low3, high3, S3, A3


@triton.jit
def _add_stats(z, lo, hi, active, tau, T, s_max, count3, low3, high3, S3, A3,
               USE_MASS: tl.constexpr, USE_ENTROPY: tl.constexpr):
    """Adds the logits z [R, W] that lie in the band [lo, hi] to the per-lane statistics."""
    band = (active[:, None] & (z >= lo[:, None]) & (z <= hi[:, None]))[:, None, :]  # [R, 1, W]
    z3 = z[:, None, :]
    at_or_above = z3 >= tau[:, :, None]  # [R, N, W]
    ge = band & at_or_above
    count3 += ge.to(tl.int32)
    low3 = tl.minimum(low3, tl.where(ge, z3, POS_INF))
    high3 = tl.maximum(high3, tl.where(band & ~at_or_above, z3, NEG_INF))
    if USE_MASS:
        d = z / T[:, None] - s_max[:, None]
        w = tl.exp(d)
        S3 += tl.where(ge, w[:, None, :], 0.0)
        if USE_ENTROPY:
            A3 += tl.where(ge, (w * d)[:, None, :], 0.0)
    return count3, low3, high3, S3, A3


@triton.jit
def _narrow(count3, low3, high3, S3, A3, lo, hi, n_lo, n_above, S_above, A_above, z_low_above, active,
            k, top_p, min_p, alpha, Z, budget, T, s_max,
            NTH: tl.constexpr, USE_MASS: tl.constexpr, USE_ENTROPY: tl.constexpr):
    """One search step from a pass's statistics: judge each threshold's prefix {z >= tau},
    take the sub-interval where the verdict flips, snap it to the logits inside."""
    slot = tl.arange(0, NTH)
    count = tl.sum(count3, 2) + n_above[:, None]  # [R, N]: statistics of {z >= tau}
    S = tl.sum(S3, 2) + S_above[:, None]
    A = tl.sum(A3, 2) + A_above[:, None]
    low_at = tl.min(low3, 2)  # smallest band logit >= tau
    high_below = tl.max(high3, 2)  # largest band logit < tau
    z_low = tl.minimum(low_at, z_low_above[:, None])
    ok = _all_kept(count, S, A, z_low, k[:, None], top_p[:, None], min_p[:, None], alpha[:, None],
                   Z[:, None], budget[:, None], T[:, None], s_max[:, None], USE_MASS, USE_ENTROPY)
    first = tl.min(tl.where(ok, slot[None, :], NTH), 1)  # [R] lowest threshold whose prefix is kept
    at = slot[None, :] == first[:, None]
    below = slot[None, :] == (first - 1)[:, None]
    found = first < NTH
    new_hi = tl.where(found, tl.max(tl.where(at, high_below, NEG_INF), 1), hi)
    new_lo = tl.where(first > 0, tl.min(tl.where(below, low_at, POS_INF), 1), lo)
    n_lo = tl.where(active & (first > 0), tl.sum(tl.where(below, count, 0), 1), n_lo)
    take = active & found
    n_above = tl.where(take, tl.sum(tl.where(at, count, 0), 1), n_above)
    S_above = tl.where(take, tl.sum(tl.where(at, S, 0.0), 1), S_above)
    A_above = tl.where(take, tl.sum(tl.where(at, A, 0.0), 1), A_above)
    z_low_above = tl.where(take, tl.min(tl.where(at, z_low, POS_INF), 1), z_low_above)
    lo = tl.where(active, new_lo, lo)
    hi = tl.where(active, new_hi, hi)
    return lo, hi, n_lo, n_above, S_above, A_above, z_low_above, active & (lo < hi)


@triton.jit
def _sample_kernel(logits_ptr, row_stride, B, V,
                   temperature_ptr, top_k_ptr, top_p_ptr, min_p_ptr, top_h_ptr, seed_ptr, band_ptr,
                   ids_ptr, kept_ptr, entropy_ptr, kept_entropy_ptr, prob_ptr,
                   R: tl.constexpr, BLOCK: tl.constexpr, NTH: tl.constexpr, CAP: tl.constexpr, ITERS: tl.constexpr,
                   USE_MASS: tl.constexpr, USE_ENTROPY: tl.constexpr):
    rows = tl.program_id(0) * R + tl.arange(0, R)  # [R]
    valid = rows < B
    base = logits_ptr + rows.to(tl.int64) * row_stride  # [R] row pointers
    lanes = tl.arange(0, BLOCK)

    T = tl.load(temperature_ptr + rows, mask=valid, other=1.0)
    greedy = T <= 0.0  # greedy = top-k 1 at temperature 1, other rules off
    T = tl.where(greedy, 1.0, T)
    k = tl.where(greedy, 1, tl.load(top_k_ptr + rows, mask=valid, other=0))
    top_p = tl.where(greedy, 1.0, tl.load(top_p_ptr + rows, mask=valid, other=1.0))
    min_p = tl.where(greedy, 0.0, tl.load(min_p_ptr + rows, mask=valid, other=0.0))
    alpha = tl.where(greedy, 0.0, tl.load(top_h_ptr + rows, mask=valid, other=0.0))

    # 1. moments of s = z / T, and the range of finite logits. Per lane (no cross-thread work
    # until the end): running max m, Z = sum e^(s - m), E = sum e^(s - m) (s - m); a new
    # value either adds to the sums or becomes the max and rescales them by e^(m_old - s).
    m = tl.full([R, BLOCK], NEG_INF, tl.float32)
    Z_lane = tl.zeros([R, BLOCK], dtype=tl.float32)
    E_lane = tl.zeros([R, BLOCK], dtype=tl.float32)
    top = tl.full([R, BLOCK], NEG_INF, tl.float32)
    bottom = tl.full([R, BLOCK], POS_INF, tl.float32)  # smallest finite logit
    neg_inf = tl.zeros([R, BLOCK], dtype=tl.int32)
    for start in range(0, V, BLOCK):
        z, in_range = _load(base, start + lanes, valid, V)
        finite = z > NEG_INF
        top = tl.maximum(top, z)
        bottom = tl.minimum(bottom, tl.where(finite, z, POS_INF))
        neg_inf += (in_range & ~finite).to(tl.int32)
        s = z / T[:, None]
        up = s > m
        x = tl.where(finite & (m > NEG_INF), tl.where(up, m - s, s - m), NEG_INF)  # <= 0
        ex = tl.exp(x)
        xe = tl.where(ex > 0.0, ex * x, 0.0)
        E_lane = tl.where(up, ex * E_lane + xe * Z_lane, E_lane + xe)
        Z_lane = tl.where(up, ex * Z_lane + 1.0, Z_lane + ex)
        m = tl.maximum(m, s)
    s_max = tl.max(m, 1)  # [R]
    shift = tl.where(m > NEG_INF, m - s_max[:, None], 0.0)
    scale = tl.where(m > NEG_INF, tl.exp(shift), 0.0)
    Z = tl.sum(scale * Z_lane, 1)  # sum e^(s - s_max)
    E = tl.sum(scale * (E_lane + shift * Z_lane), 1)  # sum e^(s - s_max) (s - s_max)
    z_top = tl.max(top, 1)
    z_bottom = tl.min(bottom, 1)
    n_neg_inf = tl.sum(neg_inf, 1)
    entropy = tl.log(Z) - E / Z
    budget = alpha * entropy + TOP_H_SLACK

    # 2. search. State: band [lo, hi]; P = {z > hi} with n_above, S_above, A_above, z_low_above;
    # n_lo = |{z >= lo}|. Rows whose every finite token is kept start resolved at t = -inf.
    # Statistics accumulate per lane in [R, N, BLOCK] and are reduced once per pass.
    n_finite = V - n_neg_inf
    everything = _all_kept(n_finite, Z, E, z_bottom, k, top_p, min_p, alpha, Z, budget, T, s_max,
                           USE_MASS, USE_ENTROPY)
    lo = tl.where(everything, NEG_INF, z_bottom)
    hi = tl.where(everything, NEG_INF, z_top)
    n_lo = tl.where(everything, V, n_finite)
    n_above = tl.where(everything, n_finite, 0)
    S_above = tl.where(everything, Z, 0.0)
    A_above = tl.where(everything, E, 0.0)
    z_low_above = tl.where(everything, z_bottom, POS_INF)
    active = valid & (lo < hi)
    # full passes while the band holds more than CAP logits ...
    while tl.max((active & (n_lo - n_above > CAP)).to(tl.int32), 0) > 0:
        tau = _thresholds(lo, hi, NTH)
        count3, low3, high3, S3, A3 = _empty_stats(R, NTH, BLOCK, USE_MASS, USE_ENTROPY)
        for start in range(0, V, BLOCK):
            z, _ = _load(base, start + lanes, valid, V)
            count3, low3, high3, S3, A3 = _add_stats(z, lo, hi, active, tau, T, s_max, count3, low3, high3,
                                                     S3, A3, USE_MASS, USE_ENTROPY)
        lo, hi, n_lo, n_above, S_above, A_above, z_low_above, active = _narrow(
            count3, low3, high3, S3, A3, lo, hi, n_lo, n_above, S_above, A_above, z_low_above, active,
            k, top_p, min_p, alpha, Z, budget, T, s_max, NTH, USE_MASS, USE_ENTROPY)
    # ... then one pass gathers the band's logits (in any order) into a per-row scratch row
    # of CAP, and the rest of the search reads only those
    if tl.max(active.to(tl.int32), 0) > 0:
        scratch = band_ptr + rows.to(tl.int64) * CAP  # [R]
        gathered = tl.zeros([R], dtype=tl.int32)
        for start in range(0, V, BLOCK):
            z, _ = _load(base, start + lanes, valid, V)
            band = active[:, None] & (z >= lo[:, None]) & (z <= hi[:, None])
            spot = gathered[:, None] + tl.cumsum(band.to(tl.int32), 1) - 1
            tl.store(scratch[:, None] + spot, z, mask=band)
            gathered += tl.sum(band.to(tl.int32), 1)
        tl.debug_barrier()  # the band's logits, stored by some threads, are read by others
        longest = tl.max(gathered, 0)
        while tl.max(active.to(tl.int32), 0) > 0:
            tau = _thresholds(lo, hi, NTH)
            count3, low3, high3, S3, A3 = _empty_stats(R, NTH, BLOCK, USE_MASS, USE_ENTROPY)
            for start in range(0, longest, BLOCK):
                spot = start + lanes
                z = tl.load(scratch[:, None] + spot[None, :], mask=spot[None, :] < gathered[:, None], other=NEG_INF)
                count3, low3, high3, S3, A3 = _add_stats(z, lo, hi, active, tau, T, s_max, count3, low3, high3,
                                                         S3, A3, USE_MASS, USE_ENTROPY)
            lo, hi, n_lo, n_above, S_above, A_above, z_low_above, active = _narrow(
                count3, low3, high3, S3, A3, lo, hi, n_lo, n_above, S_above, A_above, z_low_above, active,
                k, top_p, min_p, alpha, Z, budget, T, s_max, NTH, USE_MASS, USE_ENTROPY)

    # 3. how many of the g tokens tied at t = lo are kept
    t = lo
    g = n_lo - n_above
    s_t = t / T - s_max
    w_t = tl.exp(s_t)  # 0 at t = -inf
    a_t = tl.where(w_t > 0.0, w_t * s_t, 0.0)
    j = g
    j = tl.where(k > 0, tl.minimum(j, tl.maximum(k - n_above, 0)), j)
    if USE_MASS:
        room = top_p * Z - S_above  # > 0: all of {z > t} is kept
        extra = tl.where(w_t > 0.0, tl.ceil(room / w_t) - 1.0, (g - 1).to(tl.float32))
        extra = tl.minimum(tl.maximum(extra, 0.0), (g - 1).to(tl.float32))
        j = tl.where(top_p < 1.0, tl.minimum(j, 1 + extra.to(tl.int32)), j)
    j = tl.where(w_t >= min_p, j, 0)
    if USE_ENTROPY:
        fit = tl.zeros([R], dtype=tl.int32)  # largest i known to fit
        bound = j  # largest i not yet ruled out
        for _ in range(ITERS):
            mid = (fit + bound + 1) >> 1
            mass = S_above + mid.to(tl.float32) * w_t
            ok = (mid == 0) | (tl.log(mass) - (A_above + mid.to(tl.float32) * a_t) / mass <= budget)
            fit = tl.where(ok, mid, fit)
            bound = tl.where(ok, bound, mid - 1)
        j = tl.where(alpha > 0.0, fit, j)
    j = tl.where(n_above + j < 1, 1, j)  # the first token is always kept
    partial = (j > 0) & (j < g)
    whole = j >= g

    # 4. draw: Gumbel-max over the kept set, and the kept set's weight and entropy, per lane
    seed = tl.load(seed_ptr)
    any_partial = tl.max(partial.to(tl.int32), 0) > 0
    ties_seen = tl.zeros([R], dtype=tl.int32)
    best_lane = tl.full([R, BLOCK], NEG_INF, tl.float32)
    best_id_lane = tl.zeros([R, BLOCK], dtype=tl.int32)
    S_lane = tl.zeros([R, BLOCK], dtype=tl.float32)
    A_lane = tl.zeros([R, BLOCK], dtype=tl.float32)
    for start in range(0, V, BLOCK):
        cols = start + lanes
        z, in_range = _load(base, cols, valid, V)
        tied = in_range & (z == t[:, None])
        kept = (in_range & (z > t[:, None])) | (tied & whole[:, None])
        if any_partial:  # rank ties by id across tiles: only rows cut inside a tie group need it
            tie_rank = ties_seen[:, None] + tl.cumsum(tied.to(tl.int32), 1) - 1
            kept = kept | (tied & partial[:, None] & (tie_rank < j[:, None]))
            ties_seen += tl.sum(tied.to(tl.int32), 1)
        s = z / T[:, None]
        d = s - s_max[:, None]
        w = tl.where(kept, tl.exp(d), 0.0)
        S_lane += w
        A_lane += tl.where(w > 0.0, w * d, 0.0)
        key = tl.where(kept, s + _gumbel(seed, rows, start, R, BLOCK), NEG_INF)
        better = key > best_lane  # strict: a lane keeps its earliest id on equal keys
        best_lane = tl.where(better, key, best_lane)
        best_id_lane = tl.where(better, cols[None, :], best_id_lane)
    best = tl.max(best_lane, 1)
    best_id = tl.min(tl.where(best_lane == best[:, None], best_id_lane, V), 1)  # lowest id among equal keys
    S_kept = tl.sum(S_lane, 1)
    A_kept = tl.sum(A_lane, 1)

    z_drawn = tl.load(base + best_id, mask=valid, other=0.0).to(tl.float32)
    tl.store(ids_ptr + rows, best_id.to(tl.int64), mask=valid)
    tl.store(kept_ptr + rows, (n_above + j).to(tl.int64), mask=valid)
    tl.store(entropy_ptr + rows, entropy, mask=valid)
    tl.store(kept_entropy_ptr + rows, tl.maximum(tl.log(S_kept) - A_kept / S_kept, 0.0), mask=valid)
    tl.store(prob_ptr + rows, tl.exp(z_drawn / T - s_max) / S_kept, mask=valid)


def _may_be_active(value, neutral) -> bool:
    """Whether a rule can be on: a number is checked; a tensor is assumed on (checking it
    would synchronize with the GPU)."""
    return isinstance(value, torch.Tensor) or value != neutral


def tiles(batch: int, vocab: int, on_gpu: bool, block: int | None = None) -> tuple[int, int, int]:
    """(rows per program, logits per tile, band capacity). On GPUs one row per program,
    tiles of up to 1024 logits (R = 1, BLOCK = 1024, 8 warps: 128 registers on sm_90; more
    rows or wider tiles spill) and the search leaves the row once its band holds <= 16
    tiles; in the interpreter large tiles over many rows, which cut its per-operation
    overhead."""
    width = block or max(16, min(triton.next_power_of_2(vocab), 1024))
    if on_gpu:
        return 1, width, 16 * width
    return max(1, min(triton.next_power_of_2(batch), 65536 // width)), width, width


def sample(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, top_h=0.0,
           generator: torch.Generator | None = None, rows: int | None = None, block: int | None = None,
           thresholds: int = 4, cap: int | None = None, num_warps: int | None = None) -> SampleResult:
    """`sample_reference` in one kernel launch (see the module docstring). Launch tuning:
    `rows` per program and `block` logits per tile (powers of two, block >= 16; defaults from
    `tiles`), `thresholds` per search pass (NTH, a power of two >= 2), `cap`: the band size
    at which the search stops reading the row and continues on the band's logits alone,
    and `num_warps`."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, V], got shape {tuple(logits.shape)}")
    batch, vocab = logits.shape
    device = logits.device
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    default_rows, block, default_cap = tiles(batch, vocab, logits.is_cuda, block)
    rows, cap = rows or default_rows, cap or default_cap
    params = [per_row(value, batch, dtype, device).contiguous() for value, dtype in (
        (temperature, torch.float32), (top_k, torch.int32), (top_p, torch.float32), (min_p, torch.float32),
        (top_h, torch.float32))]
    seed = draw_seed(generator, device)
    band = torch.empty(batch, cap, dtype=torch.float32, device=device)  # scratch: each row's band
    ids = torch.empty(batch, dtype=torch.int64, device=device)
    kept = torch.empty(batch, dtype=torch.int64, device=device)
    entropy, kept_entropy, prob = (torch.empty(batch, dtype=torch.float32, device=device) for _ in range(3))
    if batch == 0:
        return SampleResult(ids, kept, entropy, kept_entropy, prob)
    use_entropy = _may_be_active(top_h, 0.0)
    _sample_kernel[(triton.cdiv(batch, rows),)](
        logits, logits.stride(0), batch, vocab, *params, seed, band, ids, kept, entropy, kept_entropy, prob,
        R=rows, BLOCK=block, NTH=thresholds, CAP=cap, ITERS=vocab.bit_length() + 1,
        USE_MASS=_may_be_active(top_p, 1.0) or use_entropy, USE_ENTROPY=use_entropy,
        num_warps=num_warps or (8 if rows * block >= 1024 else 4),
    )
    return SampleResult(ids, kept, entropy, kept_entropy, prob)
