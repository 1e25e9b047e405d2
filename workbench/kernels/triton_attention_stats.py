"""Triton `attention_stats`: the statistics of `kernels/attention_stats.py` in two
flash-attention-style passes that never hold more than one [block, block] tile of scores.

For one head, query i and the keys j it may attend to (causal: j <= i + Tk - Tq, and the mask):
    s_ij = scale * <q_i, k_j>,   A_ij = exp(s_ij - lse_i),   lse_i = log(sum_j exp s_ij [+ exp sigma])
with sigma the head's learned sink logit (GPT-OSS), an outcome that is no key.

Pass 1, query-major (grid: query blocks x Hq x B), an online softmax over key blocks (Milakov &
Gimelshein 2018; Dao et al. 2022). Per query it keeps, in base-2 units (t = s log2 e):
    m  = max_j t_j                        running maximum
    l  = sum_j 2^(t_j - m)                running normalizer
    a  = sum_j 2^(t_j - m) (t_j - m)      running first moment, for the entropy
    c_S = sum_{j in S} 2^(t_j - m)        S = the first `sink` keys, and `key_subset`
and when m grows to m' every sum is multiplied by alpha = 2^(m - m'), with a' = alpha (a + l (m - m')).
At the end, with L = lse_i / ln 2 and u = 2^(m - L) (so that A_ij = u 2^(t_j - m)):
    entropy_i = -sum_j A_ij ln A_ij - p_sigma ln p_sigma = -ln 2 [u (a + l (m - L)) + p_sigma (sigma log2 e - L)]
    mass on S = u c_S
Top-k keys (top_k <= TOPK_MAX): the running per-row lists of `kernels/triton_online.py`, fed
each block's visible scores.

Pass 2, key-major (grid: key blocks x Hq x B): received_j = sum_i exp(s_ij - lse_i), recomputing
the scores of each query block against the resident key block with pass 1's lse.

GQA/MQA: query head h reads key head h // (Hq / Hkv). Causal attention skips key blocks past a
query block (pass 1) and query blocks before a key block (pass 2); only diagonal blocks are masked.
A query with no visible key and no sink logit gets lse = -inf, entropy = nan, and contributes nothing.
Math is fp32; bf16/fp16 inputs keep their dtype in `tl.dot` on a GPU (fp32 accumulation, which is
exact for products of bf16), fp32 inputs use 3-pass tf32 there, and the interpreter casts every
load to fp32 (it gets bf16 arithmetic wrong).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from .attention_stats import AttentionStats, attention_stats_reference
from .triton_online import EMPTY_BASE, INTERPRETED, topk_init, topk_insert, topk_pop, tuned

TOPK_MAX = 16  # the running top-k lists live in registers: [BLOCK_M, next_pow2(k)] per program
LOG2E = tl.constexpr(math.log2(math.e))  # scores in base-2 units: exp(s) = 2^(s log2 e)
LN2 = tl.constexpr(math.log(2.0))
NEG = tl.constexpr(-1.0e30)  # score of a masked key, in base-2 units: 2^(NEG - m) = 0, NEG * 0 = 0

# (query block, key block, warps, stages), timed at the first call with each set of constexpr
# flags; the narrow key blocks avoid register spills when a mask tile is loaded too.
PASS1_CONFIGS = tuned([triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=st)
                       for m, n, w, st in [(128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 4, 4), (64, 64, 4, 3),
                                           (128, 32, 8, 3), (64, 32, 4, 3)]],
                      triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}))  # the interpreter: one small tile
PASS2_CONFIGS = tuned([triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=st)
                       for m, n, w, st in [(64, 128, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3), (128, 64, 4, 4)]],
                      triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}))
PASS2_KEY = ["HEAD_DIM", "CAUSAL", "MASK_KIND", "DOT"]
PASS1_KEY = PASS2_KEY + ["HAS_SUBSET", "HAS_SINK_LOGIT", "TOPK"]


@triton.jit
def _load_rows(base, index, dims, stride_t, stride_d, bound, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
               DOT: tl.constexpr):
    """Rows `index` of a [T, d] matrix: [len(index), BLOCK_D], zero past `bound` and HEAD_DIM."""
    inside = index[:, None] < bound
    if HEAD_DIM != BLOCK_D:
        inside = inside & (dims[None, :] < HEAD_DIM)
    tile = tl.load(base + index[:, None] * stride_t + dims[None, :] * stride_d, mask=inside, other=0.0)
    if DOT != "native":
        tile = tile.to(tl.float32)
    return tile


@triton.jit
def _dot(a, b, DOT: tl.constexpr):
    """a @ b with fp32 accumulation. DOT "native": bf16/fp16 tensor cores (products of bf16 are
    exact in fp32); "tf32x3": fp32 tiles on tensor cores to about fp32 accuracy (3 tf32 products);
    "ieee": exact fp32 (the interpreter)."""
    if DOT == "native":
        product = tl.dot(a, b, out_dtype=tl.float32)
    else:
        product = tl.dot(a, b, input_precision=DOT)
    return product


@triton.jit
def _allowed(rows, cols, t_q, t_k, offset, mask_base, smq, smk, mask_floor,
             CAUSAL_BLOCK: tl.constexpr, MASK_KIND: tl.constexpr):
    """Which (query, key) pairs count: rows and cols are broadcastable index tiles.
    MASK_KIND 1: boolean mask (nonzero = attend); 2: additive float mask (attend where > floor)."""
    ok = cols < t_k
    if CAUSAL_BLOCK:
        ok = ok & (cols <= rows + offset)
    if MASK_KIND != 0:
        inside = ok & (rows < t_q)
        value = tl.load(mask_base + rows.to(tl.int64) * smq + cols * smk, mask=inside, other=0)  # T^2 > 2^31
        if MASK_KIND == 1:
            ok = inside & (value != 0)
        else:
            ok = inside & (value.to(tl.float32) > mask_floor)
    return ok


@triton.jit
def _pass1_block(q, k_base, mask_base, subset_ptr, n_start, rows, t_q, t_k, offset, skt, skd, smq, smk,
                 mask_floor, sink, qk_scale2, m, l, a, sink_acc, subset_acc, top_v, top_i,
                 DIAGONAL: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr, HAS_SUBSET: tl.constexpr,
                 TOPK: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                 HEAD_DIM: tl.constexpr, DOT: tl.constexpr):
    """One key block of the online softmax: the running state per query [BM] after keys
    [n_start, n_start + BN). DIAGONAL blocks check causality and the key bound."""
    cols = n_start + tl.arange(0, BLOCK_N)  # [BN]
    dims = tl.arange(0, BLOCK_D)
    k = _load_rows(k_base, cols, dims, skt, skd, t_k, HEAD_DIM, BLOCK_D, DOT)  # [BN, D]
    t = _dot(q, tl.trans(k), DOT) * qk_scale2  # [BM, BN] scores in base-2 units
    if DIAGONAL or MASK_KIND != 0:
        ok = _allowed(rows[:, None], cols[None, :], t_q, t_k, offset, mask_base, smq, smk, mask_floor,
                      DIAGONAL and CAUSAL, MASK_KIND)
        t = tl.where(ok, t, NEG)
    block_max = tl.max(t, 1)  # [BM]
    m_new = tl.maximum(m, block_max)
    m_ref = tl.where(m_new > NEG / 2, m_new, 0.0)  # 0 while every key so far is masked: then p = 0
    alpha = tl.exp2(m - m_ref)
    shifted = t - m_ref[:, None]
    p = tl.exp2(shifted)  # [BM, BN]
    a = alpha * (a + l * (m - m_ref)) + tl.sum(p * shifted, 1)
    l = alpha * l + tl.sum(p, 1)
    sink_acc = alpha * sink_acc
    if n_start < sink:
        sink_acc += tl.sum(tl.where(cols[None, :] < sink, p, 0.0), 1)
    if HAS_SUBSET:
        chosen = tl.load(subset_ptr + cols, mask=cols < t_k, other=0) != 0  # [BN]
        subset_acc = alpha * subset_acc + tl.sum(tl.where(chosen[None, :], p, 0.0), 1)
    if TOPK > 0:
        top_v, top_i = topk_insert(top_v, top_i, t, cols[None, :], t > NEG / 2, block_max)
    return m_new, l, a, sink_acc, subset_acc, top_v, top_i


@triton.autotune(configs=PASS1_CONFIGS, key=PASS1_KEY)
@triton.jit
def _pass1_kernel(q_ptr, k_ptr, mask_ptr, subset_ptr, sink_logit_ptr,
                  lse_ptr, entropy_ptr, sink_ptr, subset_out_ptr, top_id_ptr, top_p_ptr,
                  t_q, t_k, offset, group, sink, qk_scale2, mask_floor,
                  sqb, sqh, sqt, sqd, skb, skh, skt, skd, smb, smh, smq, smk,
                  HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr, HAS_SUBSET: tl.constexpr,
                  HAS_SINK_LOGIT: tl.constexpr, TOPK: tl.constexpr, DOT: tl.constexpr,
                  BLOCK_D: tl.constexpr, TOPK_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Per-query lse, entropy, sink / subset mass and top-k keys; outputs [B, Hq, Tq(, k)] contiguous."""
    m_start = (tl.num_programs(0) - 1 - tl.program_id(0)) * BLOCK_M  # the last (causal: longest) rows first
    head = tl.program_id(1)
    batch = tl.program_id(2).to(tl.int64)
    rows = m_start + tl.arange(0, BLOCK_M)  # [BM] query positions
    dims = tl.arange(0, BLOCK_D)
    q_base = q_ptr + batch * sqb + head * sqh
    k_base = k_ptr + batch * skb + (head // group) * skh
    mask_base = mask_ptr + batch * smb + head * smh
    q = _load_rows(q_base, rows, dims, sqt, sqd, t_q, HEAD_DIM, BLOCK_D, DOT)  # [BM, D]

    m = tl.full([BLOCK_M], NEG, tl.float32)
    l = tl.zeros([BLOCK_M], tl.float32)
    a = tl.zeros([BLOCK_M], tl.float32)
    sink_acc = tl.zeros([BLOCK_M], tl.float32)
    subset_acc = tl.zeros([BLOCK_M], tl.float32)
    top_v, top_i = topk_init(BLOCK_M, TOPK, TOPK_PAD)  # scores and key ids [BM, TOPK_PAD]

    if CAUSAL:  # keys [0, full_end) are visible to every query of the block, [full_end, hi) to some
        hi = tl.minimum(t_k, tl.minimum(m_start + BLOCK_M, t_q) + offset)
        full_end = tl.maximum(tl.minimum(m_start + offset + 1, hi), 0) // BLOCK_N * BLOCK_N
    else:
        hi = t_k
        full_end = t_k // BLOCK_N * BLOCK_N
    for n_start in range(0, full_end, BLOCK_N):
        m, l, a, sink_acc, subset_acc, top_v, top_i = _pass1_block(
            q, k_base, mask_base, subset_ptr, n_start, rows, t_q, t_k, offset, skt, skd, smq, smk, mask_floor,
            sink, qk_scale2, m, l, a, sink_acc, subset_acc, top_v, top_i, False, CAUSAL, MASK_KIND, HAS_SUBSET,
            TOPK, BLOCK_N, BLOCK_D, HEAD_DIM, DOT)
    for n_start in range(full_end, hi, BLOCK_N):
        m, l, a, sink_acc, subset_acc, top_v, top_i = _pass1_block(
            q, k_base, mask_base, subset_ptr, n_start, rows, t_q, t_k, offset, skt, skd, smq, smk, mask_floor,
            sink, qk_scale2, m, l, a, sink_acc, subset_acc, top_v, top_i, True, CAUSAL, MASK_KIND, HAS_SUBSET,
            TOPK, BLOCK_N, BLOCK_D, HEAD_DIM, DOT)

    # lse2 = log2 of the normalizer, with the learned sink as one more outcome
    if HAS_SINK_LOGIT:
        sigma2 = tl.load(sink_logit_ptr + head).to(tl.float32) * LOG2E
        top = tl.maximum(m, sigma2)
        lse2 = top + tl.log2(l * tl.exp2(m - top) + tl.exp2(sigma2 - top))
        dead = l < 0  # never: the sink outcome is always there
    else:
        dead = l == 0  # a query with no visible key (its lse2 below is finite filler)
        lse2 = m + tl.log2(tl.where(dead, 1.0, l))
    u = tl.where(dead, 0.0, tl.exp2(m - lse2))  # A_ij = u 2^(t_ij - m)
    plogp2 = u * (a + l * (m - lse2))  # sum_j A_ij log2 A_ij
    if HAS_SINK_LOGIT:
        plogp2 += tl.exp2(sigma2 - lse2) * (sigma2 - lse2)
    out = (batch * tl.num_programs(1) + head) * t_q + rows  # [BM]
    inside = rows < t_q
    tl.store(lse_ptr + out, tl.where(dead, float("-inf"), lse2 * LN2), mask=inside)
    tl.store(entropy_ptr + out, tl.where(dead, float("nan"), -LN2 * plogp2), mask=inside)
    tl.store(sink_ptr + out, u * sink_acc, mask=inside)
    if HAS_SUBSET:
        tl.store(subset_out_ptr + out, u * subset_acc, mask=inside)
    if TOPK > 0:  # best first; past the visible keys: id -1, probability 0
        remaining = (top_i >= 0) & (top_i < EMPTY_BASE)
        for j in tl.static_range(TOPK):
            value, key, remaining = topk_pop(top_v, top_i, remaining)
            found = value > float("-inf")
            tl.store(top_id_ptr + out * TOPK + j, tl.where(found, key, -1).to(tl.int64), mask=inside)
            tl.store(top_p_ptr + out * TOPK + j, tl.where(found, tl.exp2(value - lse2), 0.0), mask=inside)


@triton.jit
def _pass2_block(k, q_base, lse_base, mask_base, m_start, cols, t_q, t_k, offset, sqt, sqd, smq, smk, mask_floor,
                 qk_scale2, acc, DIAGONAL: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, HEAD_DIM: tl.constexpr, DOT: tl.constexpr):
    """Add the attention of queries [m_start, m_start + BM) to the key block's sums acc [BN]."""
    rows = m_start + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    q = _load_rows(q_base, rows, dims, sqt, sqd, t_q, HEAD_DIM, BLOCK_D, DOT)  # [BM, D]
    lse = tl.load(lse_base + rows, mask=rows < t_q, other=float("inf"))
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * LOG2E)  # no key: no attention
    t = _dot(k, tl.trans(q), DOT) * qk_scale2  # [BN, BM]
    p = tl.exp2(t - lse2[None, :])
    if DIAGONAL or MASK_KIND != 0:
        ok = _allowed(rows[None, :], cols[:, None], t_q, t_k, offset, mask_base, smq, smk, mask_floor,
                      DIAGONAL and CAUSAL, MASK_KIND)
        p = tl.where(ok, p, 0.0)
    return acc + tl.sum(p, 1)


@triton.autotune(configs=PASS2_CONFIGS, key=PASS2_KEY)
@triton.jit
def _pass2_kernel(q_ptr, k_ptr, mask_ptr, lse_ptr, received_ptr,
                  t_q, t_k, offset, group, qk_scale2, mask_floor,
                  sqb, sqh, sqt, sqd, skb, skh, skt, skd, smb, smh, smq, smk,
                  HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr,
                  DOT: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
                  BLOCK_N: tl.constexpr):
    """received [B, Hq, Tk] (contiguous) = sum over queries of exp(s - lse)."""
    n_start = tl.program_id(0) * BLOCK_N
    head = tl.program_id(1)
    batch = tl.program_id(2).to(tl.int64)
    cols = n_start + tl.arange(0, BLOCK_N)  # [BN] key positions
    dims = tl.arange(0, BLOCK_D)
    q_base = q_ptr + batch * sqb + head * sqh
    lse_base = lse_ptr + (batch * tl.num_programs(1) + head) * t_q
    mask_base = mask_ptr + batch * smb + head * smh
    k_base = k_ptr + batch * skb + (head // group) * skh
    k = _load_rows(k_base, cols, dims, skt, skd, t_k, HEAD_DIM, BLOCK_D, DOT)  # [BN, D]
    acc = tl.zeros([BLOCK_N], tl.float32)

    if CAUSAL:  # queries [lo, full_start) see some keys of the block, [full_start, Tq) all of them
        lo = tl.maximum(n_start - offset, 0) // BLOCK_M * BLOCK_M
        full_start = tl.minimum(tl.maximum(tl.cdiv(n_start + BLOCK_N - 1 - offset, BLOCK_M) * BLOCK_M, lo), t_q)
    else:
        lo = 0
        full_start = 0
    for m_start in range(lo, full_start, BLOCK_M):
        acc = _pass2_block(k, q_base, lse_base, mask_base, m_start, cols, t_q, t_k, offset, sqt, sqd, smq, smk,
                           mask_floor, qk_scale2, acc, True, CAUSAL, MASK_KIND, BLOCK_M, BLOCK_D, HEAD_DIM,
                           DOT)
    for m_start in range(full_start, t_q, BLOCK_M):
        acc = _pass2_block(k, q_base, lse_base, mask_base, m_start, cols, t_q, t_k, offset, sqt, sqd, smq, smk,
                           mask_floor, qk_scale2, acc, False, CAUSAL, MASK_KIND, BLOCK_M, BLOCK_D, HEAD_DIM,
                           DOT)
    tl.store(received_ptr + (batch * tl.num_programs(1) + head) * t_k + cols, acc, mask=cols < t_k)


def _mask_operand(mask, batch, heads, t_q, t_k):
    """The mask as a 4-d view with broadcast (stride 0) dims, its kind and its floor:
    (tensor | None, 0 | 1 | 2, floor); kind 0 is no mask, 1 boolean, 2 additive float."""
    if mask is None:
        return None, 0, 0.0
    view = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape)) if mask.dim() < 4 else mask
    if view.shape[-1] < t_k:
        raise ValueError(f"mask covers {view.shape[-1]} keys but k has {t_k}")
    view = view.expand(batch, heads, t_q, view.shape[-1])
    if view.dtype == torch.bool:
        return view.view(torch.uint8), 1, 0.0
    return view, 2, torch.finfo(view.dtype).min / 2  # the reference's rule: allowed where > min / 2


@dataclass
class _Operands:
    """What both passes read: q [B, Hq, Tq, d], k [B, Hkv, Tk, d], the mask view and the launch
    constants (`scalars` and `strides` in kernel-argument order, `flags` the shared constexprs)."""
    q: torch.Tensor
    k: torch.Tensor
    mask: torch.Tensor
    scalars: tuple  # t_q, t_k, offset = Tk - Tq (queries are the last Tq positions), group
    qk_scale2: float  # scale * log2(e)
    mask_floor: float
    strides: tuple
    flags: dict

    @classmethod
    def of(cls, q, k, *, causal, mask, scale) -> "_Operands":
        batch, heads, t_q, dim = q.shape
        kv_heads, t_k = k.shape[1], k.shape[2]
        if heads % kv_heads:
            raise ValueError(f"query heads ({heads}) must be a multiple of key heads ({kv_heads})")
        if k.shape[0] != batch or k.shape[3] != dim:
            raise ValueError(f"k {tuple(k.shape)} must have q's batch and head size, q is {tuple(q.shape)}")
        if not q.is_cuda and not INTERPRETED:
            raise RuntimeError("the Triton attention_stats needs CUDA tensors (or TRITON_INTERPRET=1 set before "
                               "importing triton); use backend='torch' on CPU")
        mask_view, mask_kind, mask_floor = _mask_operand(mask, batch, heads, t_q, t_k)
        native = not INTERPRETED and q.dtype in (torch.bfloat16, torch.float16) and k.dtype == q.dtype
        if not native and q.dtype != k.dtype:
            q, k = q.float(), k.float()
        dot = "native" if native else "ieee" if INTERPRETED else "tf32x3"
        mask_view = q if mask_view is None else mask_view  # a pointer never read when there is no mask
        flags = dict(HEAD_DIM=dim, CAUSAL=causal, MASK_KIND=mask_kind, DOT=dot,
                     BLOCK_D=max(16, triton.next_power_of_2(dim)))  # tl.dot needs every dim >= 16
        scale = dim ** -0.5 if scale is None else scale
        return cls(q, k, mask_view, (t_q, t_k, t_k - t_q, heads // kv_heads), scale * LOG2E.value, mask_floor,
                   (*q.stride(), *k.stride(), *mask_view.stride()), flags)


def query_pass(q, k, *, causal=True, mask=None, sink=1, key_subset=None, top_k=0, scale=None,
               sink_logits=None, ops: _Operands | None = None) -> AttentionStats:
    """Pass 1 alone (top_k <= TOPK_MAX): every per-query statistic, with `received` left None.
    `ops`: the operands already prepared from q, k, causal, mask and scale (by `attention_stats`)."""
    batch, heads, t_q, _ = q.shape
    t_k = k.shape[2]
    if top_k > TOPK_MAX:
        raise ValueError(f"the Triton pass keeps at most {TOPK_MAX} top keys per query, got top_k={top_k}")
    if key_subset is not None and key_subset.shape[0] < t_k:
        raise ValueError(f"key_subset has {key_subset.shape[0]} entries but k has {t_k} keys")
    ops = ops or _Operands.of(q, k, causal=causal, mask=mask, scale=scale)
    fp = dict(dtype=torch.float32, device=q.device)
    lse, entropy, sink_mass = (torch.empty(batch, heads, t_q, **fp) for _ in range(3))
    subset_mass = torch.empty(batch, heads, t_q, **fp) if key_subset is not None else None
    topk_ids = torch.empty(batch, heads, t_q, top_k, dtype=torch.int64, device=q.device) if top_k else None
    topk_probs = torch.empty(batch, heads, t_q, top_k, **fp) if top_k else None
    subset = key_subset.to(device=q.device, dtype=torch.uint8) if key_subset is not None else None
    sinks = sink_logits.to(q.device).contiguous() if sink_logits is not None else None

    def given(tensor):  # an absent optional operand: a pointer the kernel never uses
        return lse if tensor is None else tensor

    _pass1_kernel[lambda meta: (triton.cdiv(t_q, meta["BLOCK_M"]), heads, batch)](
        ops.q, ops.k, ops.mask, given(subset), given(sinks), lse, entropy, sink_mass, given(subset_mass),
        given(topk_ids), given(topk_probs), *ops.scalars, sink, ops.qk_scale2, ops.mask_floor, *ops.strides,
        HAS_SUBSET=key_subset is not None, HAS_SINK_LOGIT=sink_logits is not None, TOPK=top_k,
        TOPK_PAD=triton.next_power_of_2(max(top_k, 1)), **ops.flags)
    return AttentionStats(lse, entropy, sink_mass, None, subset_mass, topk_ids, topk_probs)


def key_pass(q, k, lse, *, causal=True, mask=None, scale=None, ops: _Operands | None = None) -> torch.Tensor:
    """Pass 2 alone: received [B, Hq, Tk] from pass 1's lse [B, Hq, Tq] (contiguous fp32);
    `ops` as in `query_pass`."""
    batch, heads = q.shape[:2]
    t_k = k.shape[2]
    ops = ops or _Operands.of(q, k, causal=causal, mask=mask, scale=scale)
    received = torch.empty(batch, heads, t_k, dtype=torch.float32, device=q.device)
    lse = lse.float().contiguous()
    _pass2_kernel[lambda meta: (triton.cdiv(t_k, meta["BLOCK_N"]), heads, batch)](
        ops.q, ops.k, ops.mask, lse, received, *ops.scalars, ops.qk_scale2, ops.mask_floor, *ops.strides,
        **ops.flags)
    return received


def attention_stats(q, k, *, causal=True, mask=None, sink=1, key_subset=None, top_k=0, scale=None,
                    sink_logits=None) -> AttentionStats:
    """Triton version of `attention_stats_reference` (same arguments and outputs):
    q: [B, Hq, Tq, d]; k: [B, Hkv, Tk, d]; mask: optional [B | 1, 1 | Hq, Tq, Tk] bool (True =
    attend) or additive float; key_subset: optional [Tk] bool; sink_logits: optional [Hq]."""
    if top_k > TOPK_MAX or q.shape[2] == 0 or k.shape[2] == 0:
        # A running list of more than TOPK_MAX keys per query would spill registers; the
        # blocked reference is exact and holds a few [Hq, block, Tk] slabs at a time.
        return attention_stats_reference(q, k, causal=causal, mask=mask, sink=sink, key_subset=key_subset,
                                         top_k=top_k, scale=scale, sink_logits=sink_logits)
    ops = _Operands.of(q, k, causal=causal, mask=mask, scale=scale)  # validated, masks viewed, once for both
    stats = query_pass(q, k, sink=sink, key_subset=key_subset, top_k=top_k, sink_logits=sink_logits, ops=ops)
    return replace(stats, received=key_pass(q, k, stats.lse, ops=ops))
