"""Batched sampling with per-row parameters: temperature, then truncation (top-k, top-p,
min-p, top-H), then a draw from the renormalized kept set.

For row logits z and temperature T (T = 0: greedy), p = softmax(z / T). Tokens are ranked
in one total order: logit descending, and among equal logits the lower vocabulary id
first (a stable sort of z; ranking by z rather than by the rounded p keeps tokens whose
probabilities round to the same float in their logit order). With p_(1) >= p_(2) >= ... in
that order, a token is kept when every active rule keeps it, and the first token always is:
    top-k   rank < k                                        (k = 0: off)
    top-p   sum of the probabilities ranked above it < top_p (the smallest prefix with mass
            >= top_p; top_p >= 1: off)                        [p = .9 keeps {0,1,2}]
    min-p   p >= min_p * p_(1)                                 [m = .2 keeps {0,1}]
    top-H   Baghaei et al. 2025, Algorithm 1: the largest prefix k whose renormalized
            distribution q_k has H(q_k) <= alpha * H(p) (alpha = top_h; 0: off). H(q_k) grows
            with k (adding a token no likelier than the others raises entropy), so this is
            also where greedy growth of the set first exceeds the budget. The authors'
            released code uses a different stopping rule (in the uniform case over 10 tokens
            with alpha = .45 it keeps 4; the paper's rule keeps 2); this follows the paper.
Every rule keeps a prefix of the order, so the kept set is its first `count` tokens, count
the smallest of the rules' prefix lengths (at least 1). Ties are cut by id: top-k 2 over
three equal logits keeps the two lowest ids.

The draw is Gumbel-max on the kept set: argmax over kept v of z_v / T + g_v, g ~ Gumbel(0, 1),
which samples exactly from q = p * kept / sum(p * kept). The noise is counter-based
(`kernels/philox.py`: a seed drawn from the caller's generator, Philox4x32-10 at (v // 4,
row)), so this reference and the Triton kernel (`kernels/triton_sample.py`) draw the same
token for the same generator state, up to the rounding of log in the noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .philox import draw_seed, gumbel_noise


@dataclass
class SampleResult:
    ids: torch.Tensor  # [B] int64, the drawn tokens
    kept: torch.Tensor  # [B] int64, size of the kept set
    entropy: torch.Tensor  # [B] fp32, H(softmax(z / T)) before truncation
    kept_entropy: torch.Tensor  # [B] fp32, H(q) of the renormalized kept set
    prob: torch.Tensor  # [B] fp32, q of the drawn token


def per_row(value, rows: int, dtype, device) -> torch.Tensor:
    """A scalar or [B] parameter as a [B] tensor."""
    tensor = torch.as_tensor(value, dtype=dtype, device=device)
    return tensor.expand(rows).contiguous() if tensor.ndim == 0 else tensor


def kept_counts(sorted_p, entropy, *, top_k=0, top_p=1.0, min_p=0.0, top_h=0.0) -> torch.Tensor:
    """Size of each row's kept set [B] from its probabilities in descending order
    sorted_p [B, K] and the full distribution's entropy [B]. Every rule keeps a prefix of
    the sorted order, so the kept set is the shortest of the rules' prefixes (at least 1).
    K may be a top slice of the vocabulary: the count is exact whenever it is below K."""
    rows, width = sorted_p.shape
    device = sorted_p.device
    count = torch.full((rows,), width, dtype=torch.int64, device=device)
    k = per_row(top_k, rows, torch.int64, device)
    count = torch.where(k > 0, torch.minimum(count, k), count)
    top_p = per_row(top_p, rows, torch.float32, device)
    mass_before = sorted_p.double().cumsum(-1) - sorted_p.double()  # float64: no drift over 10^5 terms
    count = torch.where(top_p < 1, torch.minimum(count, (mass_before < top_p[:, None]).sum(-1)), count)
    floor = per_row(min_p, rows, torch.float32, device)[:, None] * sorted_p[:, :1]
    count = torch.minimum(count, (sorted_p >= floor).sum(-1))
    alpha = per_row(top_h, rows, torch.float32, device)
    if (alpha > 0).any():
        count = torch.where(alpha > 0, torch.minimum(count, _top_h_size(sorted_p, alpha * entropy)), count)
    return count.clamp_min(1)


def kept_set_reference(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, top_h=0.0):
    """The kept-set mask [B, V] (bool) and the sampling distribution q [B, V] (fp32)."""
    kept, q, _, _ = _kept_set(logits, temperature, top_k, top_p, min_p, top_h)
    return kept, q


def _kept_set(logits, temperature, top_k, top_p, min_p, top_h):
    """`kept_set_reference`'s kept and q, with what it computes on the way: the scaled logits
    s = z / T [B, V] (T = 1 on greedy rows) and the entropy [B] of p = softmax(s)."""
    rows, vocab = logits.shape
    temperature = per_row(temperature, rows, torch.float32, logits.device)
    greedy = temperature <= 0
    z = logits.float()
    scaled = z / torch.where(greedy, 1.0, temperature)[:, None]
    p = torch.softmax(scaled, dim=-1)
    entropy = _entropy(p)
    order = z.argsort(dim=-1, descending=True, stable=True)  # [B, V], the total order above
    sorted_p = p.gather(-1, order)
    count = kept_counts(sorted_p, entropy, top_k=top_k, top_p=top_p, min_p=min_p, top_h=top_h)
    count = torch.where(greedy, 1, count)
    keep = torch.arange(vocab, device=logits.device)[None, :] < count[:, None]  # a prefix of the sorted order
    kept = torch.zeros_like(keep).scatter(-1, order, keep)  # back to vocabulary order
    q = torch.where(kept, p, 0.0)
    return kept, q / q.sum(-1, keepdim=True), scaled, entropy


def _top_h_size(sorted_p: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    """Per row, the number of leading tokens whose renormalized entropy H(q_k) <= budget
    (= alpha H(p)). With S_k = sum_{i<=k} p_i and A_k = sum_{i<=k} p_i log p_i:
    H(q_k) = log S_k - A_k / S_k (sums in float64).
    """
    sorted_p = sorted_p.double()
    plogp = torch.where(sorted_p > 0, sorted_p * sorted_p.clamp_min(1e-300).log(), 0.0)
    mass = sorted_p.cumsum(-1)
    prefix_entropy = mass.log() - plogp.cumsum(-1) / mass  # [B, K]
    return (prefix_entropy <= budget[:, None] + 1e-6).sum(-1)


def _entropy(q: torch.Tensor) -> torch.Tensor:
    return -torch.where(q > 0, q * q.clamp_min(1e-45).log(), 0.0).sum(-1) + 0.0  # + 0.0: no -0.0


def sample_reference(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, top_h=0.0,
                     generator: torch.Generator | None = None) -> SampleResult:
    """Draw one token per row of logits [B, V]; every parameter is a scalar or a [B] tensor."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, V], got shape {tuple(logits.shape)}")
    seed = draw_seed(generator, logits.device)  # drawn on greedy steps too: the generator advances alike
    if logits.device.type == "cpu" and bool((per_row(temperature, len(logits), torch.float32, "cpu") <= 0).all()):
        return _greedy(logits)
    kept, q, scaled, entropy = _kept_set(logits, temperature, top_k, top_p, min_p, top_h)
    gumbel = gumbel_noise(seed, *logits.shape)
    ids = torch.where(kept, scaled + gumbel, float("-inf")).argmax(-1)
    return SampleResult(ids, kept.sum(-1), entropy, _entropy(q), q.gather(-1, ids[:, None])[:, 0])


def _greedy(logits: torch.Tensor) -> SampleResult:
    """Every row greedy (T = 0): the first largest logit, with neither the sort nor the noise that
    the general path spends on a kept set of one token (most of a CPU decoding step's sampling)."""
    z = logits.float()
    ids = z.argmax(-1)  # the first of equal maxima, as the stable sort ranks them
    ones = torch.ones_like(ids)
    return SampleResult(ids, ones, _entropy(torch.softmax(z, -1)), torch.zeros_like(z[:, 0]), ones.float())
