"""Eager softmax attention in float64 from the full score matrix (no blocking, no online
merging), the independent reference that the attention kernel and KV-importance tests compare
against. On the path of tests/ and tests/kernel_tests/ alike: pytest puts tests/ on sys.path for
tests/conftest.py."""
import torch


def eager_scores(q, k, *, causal=True, mask=None, scale=None):
    """Scaled scores q k^T * scale [B, Hq, Tq, Tk] in float64 (scale 1 / sqrt(d) by default),
    key heads repeated for grouped queries, -inf where a query may not attend: above the causal
    diagonal (the queries are the last Tq positions) and where `mask` is False (boolean) or
    near its dtype's minimum (additive)."""
    group = q.shape[1] // k.shape[1]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = q.double() @ k.double().repeat_interleave(group, 1).transpose(-1, -2) * scale
    t_q, t_k = q.shape[2], k.shape[2]
    allowed = torch.ones(t_q, t_k, dtype=torch.bool)
    if causal:
        allowed = allowed.tril(t_k - t_q)
    if mask is not None:
        allowed = allowed & (mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2)
    return scores.masked_fill(~allowed, float("-inf"))


def eager_probabilities(q, k, *, causal=True, mask=None, sink_logits=None, scale=None):
    """lse [B, Hq, Tq] and probabilities a [B, Hq, Tq, Tk] in float64 from `eager_scores`, and
    each query's probability of the learned sink outcome [B, Hq, Tq] (zeros without
    `sink_logits` [Hq]): a = exp(s - lse), lse = logsumexp over the keys and the sink. A query
    with nothing to attend to gets lse = -inf and a row of zeros."""
    scores = eager_scores(q, k, causal=causal, mask=mask, scale=scale)
    logits = scores
    if sink_logits is not None:
        logits = torch.cat([scores, sink_logits.double().view(1, -1, 1, 1).expand(*scores.shape[:3], 1)], -1)
    lse = torch.logsumexp(logits, -1)
    probs = torch.where(torch.isfinite(lse)[..., None], (logits - lse[..., None]).exp(), 0.0)
    if sink_logits is not None:
        return lse, probs[..., :-1], probs[..., -1]
    return lse, probs, torch.zeros_like(lse)


def entropy_of(a, p_sink):
    """H = -sum_j a_j log a_j - p_sink log p_sink over the keys and the sink outcome, 0 log 0 = 0:
    a [..., Tk], p_sink [...] -> [...]."""
    terms = torch.where(a > 0, a * a.clamp_min(1e-300).log(), 0.0).sum(-1)
    return -terms - torch.where(p_sink > 0, p_sink * p_sink.clamp_min(1e-300).log(), 0.0)
