"""Batched sampling with per-row parameters: temperature, then truncation (top-k, top-p,
min-p, top-H), then a draw from the renormalized kept set.

For row logits z and temperature T (T = 0: greedy), p = softmax(z / T) sorted descending
(p_(1) >= p_(2) >= ...); a token is kept when every active rule keeps it, and the most
likely token is always kept:
    top-k   rank < k                                        (k = 0: off)
    top-p   sum of the probabilities ranked above it < top_p (the smallest prefix with mass
            >= top_p; top_p = 1: off)                         [p = .9 keeps {0,1,2}]
    min-p   p >= min_p * p_(1)                                 [m = .2 keeps {0,1}]
    top-H   Baghaei et al. 2025, Algorithm 1: the largest prefix k whose renormalized
            distribution q_k has H(q_k) <= alpha * H(p) (alpha = top_h; 0: off). H(q_k) grows
            with k (adding a token no likelier than the others raises entropy), so this is
            also where greedy growth of the set first exceeds the budget. The authors'
            released code uses a different stopping rule (in the uniform case over 10 tokens
            with alpha = .45 it keeps 4; the paper's rule keeps 2); this follows the paper.
The draw is Gumbel-max on the kept set: argmax(log q + g), g ~ Gumbel(0, 1) from the given
generator, which samples exactly from q = p * kept / sum(p * kept) and is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


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


def kept_set_reference(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, top_h=0.0):
    """The kept-set mask [B, V] (bool) and the sampling distribution q [B, V] (fp32)."""
    rows, vocab = logits.shape
    device = logits.device
    temperature = per_row(temperature, rows, torch.float32, device)
    greedy = temperature <= 0
    z = logits.float() / torch.where(greedy, 1.0, temperature)[:, None]
    p = torch.softmax(z, dim=-1)
    sorted_p, order = p.sort(dim=-1, descending=True)  # [B, V]
    rank = torch.arange(vocab, device=device).expand(rows, vocab)
    keep = torch.ones_like(sorted_p, dtype=torch.bool)

    k = per_row(top_k, rows, torch.int64, device)
    keep &= (k[:, None] <= 0) | (rank < k[:, None])
    mass_before = sorted_p.cumsum(-1) - sorted_p
    keep &= mass_before < per_row(top_p, rows, torch.float32, device)[:, None]
    keep &= sorted_p >= per_row(min_p, rows, torch.float32, device)[:, None] * sorted_p[:, :1]
    alpha = per_row(top_h, rows, torch.float32, device)
    if (alpha > 0).any():
        keep &= (alpha[:, None] <= 0) | (rank < _top_h_size(sorted_p, alpha)[:, None])
    keep &= ~greedy[:, None] | (rank == 0)
    keep[:, 0] = True

    kept = torch.zeros_like(keep).scatter(-1, order, keep)  # back to vocabulary order
    q = torch.where(kept, p, 0.0)
    return kept, q / q.sum(-1, keepdim=True)


def _top_h_size(sorted_p: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Per row, the number of leading tokens whose renormalized entropy H(q_k) <= alpha H(p).

    With S_k = sum_{i<=k} p_i and A_k = sum_{i<=k} p_i log p_i: H(q_k) = log S_k - A_k / S_k.
    """
    plogp = torch.where(sorted_p > 0, sorted_p * sorted_p.clamp_min(1e-45).log(), 0.0)
    mass = sorted_p.cumsum(-1)
    prefix_entropy = mass.log() - plogp.cumsum(-1) / mass  # [B, V]
    budget = alpha * -plogp.sum(-1)  # alpha * H(p)
    within = prefix_entropy <= budget[:, None] + 1e-6
    return within.sum(-1).clamp_min(1)


def _entropy(q: torch.Tensor) -> torch.Tensor:
    return -torch.where(q > 0, q * q.clamp_min(1e-45).log(), 0.0).sum(-1) + 0.0  # + 0.0: no -0.0


def sample_reference(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, top_h=0.0,
                     generator: torch.Generator | None = None) -> SampleResult:
    """Draw one token per row of logits [B, V]; every parameter is a scalar or a [B] tensor."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, V], got shape {tuple(logits.shape)}")
    kept, q = kept_set_reference(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                 min_p=min_p, top_h=top_h)
    rows = logits.shape[0]
    temperature = per_row(temperature, rows, torch.float32, logits.device)
    before = torch.softmax(logits.float() / torch.where(temperature <= 0, 1.0, temperature)[:, None], -1)
    uniform = torch.rand(q.shape, generator=generator, device=q.device if generator is None else generator.device)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0)))
    ids = torch.where(kept, q.log() + gumbel.to(q.device), float("-inf")).argmax(-1)
    return SampleResult(ids, kept.sum(-1), _entropy(before), _entropy(q), q.gather(-1, ids[:, None])[:, 0])
