"""Independent float64 computations of the kernel outputs, straight from the definitions
in DESIGN.md with the full softmax (no blocking, no online merging), for the tests to
compare against. Rows without a finite logit give NaN; -100 targets give NaN / -1."""
import math

import torch

NAN = float("nan")


def vocab_stats(logits: torch.Tensor, targets: torch.Tensor | None = None, top_k: int = 0, temperature: float = 1.0):
    """dict of float64 [T] (and [T, k]) tensors. Top-k ids follow a stable sort: ties in
    value list the lower id first."""
    z = logits.double() / temperature  # [T, V]
    masked = torch.isneginf(z.amax(-1))
    lse = torch.logsumexp(z, -1)
    logp = z - lse[:, None]
    p = logp.exp()
    entropy = -torch.where(p > 0, p * logp, 0.0).sum(-1)
    varentropy = torch.where(p > 0, p * (logp + entropy[:, None]) ** 2, 0.0).sum(-1)
    values, order = torch.sort(z, dim=-1, descending=True, stable=True)
    margin = values[:, 0] - values[:, 1] if z.shape[1] > 1 else torch.full_like(lse, NAN)
    out = dict(lse=lse, entropy=entropy, varentropy=varentropy, margin=margin, topk_ids=order[:, :top_k],
               topk_probs=(values[:, :top_k] - lse[:, None]).exp())
    out = {name: torch.where(masked.view(-1, *[1] * (t.ndim - 1)), NAN, t) if t.is_floating_point() else t
           for name, t in out.items()}
    if targets is not None:
        ignored = targets == -100
        index = torch.where(ignored, 0, targets).long()[:, None]
        out["target_logprob"] = torch.where(ignored | masked, NAN, logp.gather(-1, index)[:, 0])
        out["target_rank"] = torch.where(ignored, -1, (logits > logits.gather(-1, index)).sum(-1))
    return out


def divergence(logits_p: torch.Tensor, logits_q: torch.Tensor, targets: torch.Tensor | None = None, beta: float = 1.0,
               overlap: bool = False):
    """KL(p||q), KL(q||p), JS, contrastive score (and the overlap sum min(p, q)) in float64,
    one formula each."""
    z_p, z_q = logits_p.double(), logits_q.double()
    masked = torch.isneginf(z_p.amax(-1)) | torch.isneginf(z_q.amax(-1))
    p, q = torch.softmax(z_p, -1), torch.softmax(z_q, -1)
    m = (p + q) / 2

    def kl(a, b):  # sum over a > 0 of a log(a / b); +inf where b = 0 < a
        return torch.where(a > 0, a * (a.log() - b.log()), 0.0).sum(-1)

    out = dict(kl_pq=kl(p, q), kl_qp=kl(q, p), js=(kl(p, m) + kl(q, m)) / 2)
    if overlap:
        out["overlap"] = torch.minimum(p, q).sum(-1)
    out = {name: torch.where(masked, NAN, t) for name, t in out.items()}
    if targets is not None:
        contrast = torch.where(torch.isneginf(z_p), -math.inf, (1 + beta) * z_p - beta * z_q)
        ignored = targets == -100
        index = torch.where(ignored, 0, targets).long()[:, None]
        score = torch.softmax(contrast, -1).gather(-1, index)[:, 0]
        out["contrastive"] = torch.where(ignored | masked, NAN, score)
    return out


def head_logits(hidden, weight, bias=None, softcap=None):
    """z = softcap(hidden @ weight^T + bias) in float64."""
    z = hidden.double() @ weight.double().T
    if bias is not None:
        z = z + bias.double()
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    return z


def vocab_tolerances(size: float, first: float = 1e-5, second: float = 1e-4) -> dict:
    """(rtol, atol) per vocab_stats field for logits of magnitude ~size: `first` relative and
    `first` * max(1, size) absolute for the first-order statistics, `second` and
    `second` * max(1, size^2) for varentropy (a difference of second moments)."""
    close = (first, first * max(1.0, size))
    return dict(lse=close, entropy=close, target_logprob=close, topk_probs=close, margin=close,
                varentropy=(second, second * max(1.0, size**2)))


def assert_matches(result, expected: dict, tolerances: dict) -> None:
    """Every field of `expected` against the kernel's `result` (a dataclass): floats within
    tolerances[name] = (rtol, atol) (NaN and inf where expected), integers exactly."""
    for name, want in expected.items():
        got = getattr(result, name)
        assert got is not None, name
        if want.is_floating_point():
            rtol, atol = tolerances[name]
            torch.testing.assert_close(got.double(), want, rtol=rtol, atol=atol, equal_nan=True,
                                       msg=lambda m: f"{name}: {m}")
        else:
            torch.testing.assert_close(got.long(), want.long(), rtol=0, atol=0, msg=lambda m: f"{name}: {m}")
