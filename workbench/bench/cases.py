"""The registered kernel benchmarks (`workbench bench`): the shapes of a large model
(T = 8192, V = 151936, d = 4096, bf16), roofline cost models, eager PyTorch
formulations, and public kernels to compare with when installed. Add a kernel's case with
`register(Case(...))` (see workbench/bench/timing.py).

Eager formulations are what a user would write with whole-tensor PyTorch ops: they
materialize fp32 [T, V] intermediates (several GB at these shapes), which is the point of
the comparison. Baselines compute only the part of our outputs they share (Liger-Kernel and
Cut Cross-Entropy give the cross-entropy, i.e. lse - z_y; Liger's JSD and KL take
log-probabilities, so their timing includes the log_softmax that feeds them).
"""
from __future__ import annotations

import importlib.util
import math

import torch

from .. import kernels
from .timing import Case, register

BIG = dict(T=8192, V=151936)  # 8192 tokens of a 151936-token vocabulary (Qwen's)
D_MODEL = 4096


def _randn(shape, scale, dtype, device, seed):
    generator = torch.Generator(device=device).manual_seed(seed)
    return (torch.randn(shape, generator=generator, device=device) * scale).to(dtype)


def _targets(rows, vocab, device, seed=0):
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randint(0, vocab, (rows,), generator=generator, device=device)


def _max_error(a, b, names):
    return {name: (getattr(a, name).float() - b[name].float()).abs().nan_to_num(0.0, 0.0, 0.0).max().item()
            for name in names}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ----- vocab_stats ---------------------------------------------------------------------------------
def eager_vocab_stats(logits, targets, top_k):
    """The statistics with whole-tensor ops on fp32 [T, V] copies."""
    z = logits.float()
    logp = torch.log_softmax(z, -1)
    p = logp.exp()
    entropy = -torch.where(p > 0, p * logp, 0.0).sum(-1)
    varentropy = torch.where(p > 0, p * (logp + entropy[:, None]) ** 2, 0.0).sum(-1)
    top = z.topk(max(top_k, 2), -1)
    index = targets[:, None]
    return dict(entropy=entropy, varentropy=varentropy, margin=top.values[:, 0] - top.values[:, 1],
                topk_ids=top.indices[:, :top_k], target_logprob=logp.gather(-1, index)[:, 0],
                target_rank=(z > z.gather(-1, index)).sum(-1))


def _liger_cross_entropy(inputs):
    if not _installed("liger_kernel"):
        return None
    from liger_kernel.transformers import LigerCrossEntropyLoss

    loss = LigerCrossEntropyLoss(reduction="none")
    logits = inputs["logits"].clone()  # Liger may write gradients into its input in place
    return lambda i: loss(logits, i["targets"])


register(Case(
    kernel="vocab_stats",
    shapes=[dict(BIG, top_k=5)],
    quick_shapes=[dict(T=16, V=1000, top_k=5)],
    make=lambda s, dtype, device: dict(logits=_randn((s["T"], s["V"]), 3.0, dtype, device, 0),
                                       targets=_targets(s["T"], s["V"], device), top_k=s["top_k"]),
    kernel_fn=lambda i: kernels.vocab_stats(i["logits"], i["targets"], top_k=i["top_k"]),
    eager=lambda i: eager_vocab_stats(i["logits"], i["targets"], i["top_k"]),
    cost=lambda s, dtype: (s["T"] * s["V"] * dtype.itemsize, 0.0),  # one read of the logits
    errors=lambda out, ref: _max_error(out, ref, ("entropy", "varentropy", "target_logprob")),
    baselines={"liger_cross_entropy": _liger_cross_entropy},
))


# ----- linear_vocab_stats --------------------------------------------------------------------------
def _make_linear(s, dtype, device):
    return dict(hidden=_randn((s["T"], s["d"]), 1.0, dtype, device, 1),
                weight=_randn((s["V"], s["d"]), 3.0 / math.sqrt(s["d"]), dtype, device, 2),
                targets=_targets(s["T"], s["V"], device), top_k=s["top_k"])


def _liger_fused_linear_cross_entropy(inputs):
    if not _installed("liger_kernel"):
        return None
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    loss = LigerFusedLinearCrossEntropyLoss(reduction="none")
    return lambda i: loss(i["weight"], i["hidden"], i["targets"])


def _cut_cross_entropy(inputs):
    if not _installed("cut_cross_entropy"):
        return None
    from cut_cross_entropy import linear_cross_entropy

    return lambda i: linear_cross_entropy(i["hidden"], i["weight"], i["targets"], reduction="none")


register(Case(
    kernel="linear_vocab_stats",
    shapes=[dict(BIG, d=D_MODEL, top_k=5), dict(T=512, V=BIG["V"], d=D_MODEL, top_k=1)],  # analyze; a logit-lens layer
    quick_shapes=[dict(T=16, V=1000, d=64, top_k=5)],
    make=_make_linear,
    kernel_fn=lambda i: kernels.linear_vocab_stats(i["hidden"], i["weight"], i["targets"], top_k=i["top_k"]),
    eager=lambda i: eager_vocab_stats(i["hidden"] @ i["weight"].T, i["targets"], i["top_k"]),
    cost=lambda s, dtype: ((s["T"] + s["V"]) * s["d"] * dtype.itemsize, 2.0 * s["T"] * s["d"] * s["V"]),
    errors=lambda out, ref: _max_error(out, ref, ("entropy", "target_logprob")),
    baselines={"liger_fused_linear_cross_entropy": _liger_fused_linear_cross_entropy,
               "cut_cross_entropy": _cut_cross_entropy},
))


# ----- divergence ----------------------------------------------------------------------------------
def eager_divergence(logits_p, logits_q, targets, js, beta=1.0):
    """KL both ways, JS and the contrastive score with whole-tensor ops."""
    z_p, z_q = logits_p.float(), logits_q.float()
    log_p, log_q = torch.log_softmax(z_p, -1), torch.log_softmax(z_q, -1)
    p, q = log_p.exp(), log_q.exp()
    out = dict(kl_pq=(p * (log_p - log_q)).sum(-1), kl_qp=(q * (log_q - log_p)).sum(-1))
    if js:
        log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
        out["js"] = 0.5 * ((p * (log_p - log_m)).sum(-1) + (q * (log_q - log_m)).sum(-1))
    contrast = torch.log_softmax((1 + beta) * z_p - beta * z_q, -1)
    out["contrastive"] = contrast.gather(-1, targets[:, None])[:, 0].exp()
    return out


def _make_pair(s, dtype, device):
    z_p = _randn((s["T"], s["V"]), 3.0, torch.float32, device, 3)
    z_q = (z_p + _randn((s["T"], s["V"]), 1.0, torch.float32, device, 4)).to(dtype)
    return dict(logits_p=z_p.to(dtype), logits_q=z_q, targets=_targets(s["T"], s["V"], device), js=s["js"])


def _liger_divergence(inputs):
    if not _installed("liger_kernel"):
        return None
    from liger_kernel.transformers import LigerJSD, LigerKLDIVLoss

    if inputs["js"]:
        loss = LigerJSD()
        return lambda i: loss(torch.log_softmax(i["logits_q"].float(), -1), torch.log_softmax(i["logits_p"].float(), -1))
    kl = LigerKLDIVLoss(reduction="sum", log_target=True)
    return lambda i: kl(torch.log_softmax(i["logits_q"].float(), -1), torch.log_softmax(i["logits_p"].float(), -1))


register(Case(
    kernel="divergence",
    shapes=[dict(BIG, js=False), dict(BIG, js=True)],
    quick_shapes=[dict(T=16, V=1000, js=True)],
    make=_make_pair,
    kernel_fn=lambda i: kernels.divergence(i["logits_p"], i["logits_q"], i["targets"], js=i["js"]),
    eager=lambda i: eager_divergence(i["logits_p"], i["logits_q"], i["targets"], i["js"]),
    cost=lambda s, dtype: (2 * s["T"] * s["V"] * dtype.itemsize * (2 if s["js"] else 1), 0.0),  # JS reads twice
    errors=lambda out, ref: _max_error(out, ref, ("kl_pq", "kl_qp", "contrastive", "js") if out.js is not None
                                       else ("kl_pq", "kl_qp", "contrastive")),
    baselines={"liger": _liger_divergence},
))


# ----- linear_divergence ----------------------------------------------------------------------------
def _make_linear_pair(s, dtype, device):
    return dict(hidden_p=_randn((s["T"], s["d"]), 1.0, dtype, device, 5),
                weight_p=_randn((s["V"], s["d"]), 3.0 / math.sqrt(s["d"]), dtype, device, 6),
                hidden_q=_randn((s["T"], s["d"]), 1.0, dtype, device, 7),
                weight_q=_randn((s["V"], s["d"]), 3.0 / math.sqrt(s["d"]), dtype, device, 8),
                targets=_targets(s["T"], s["V"], device), js=s["js"])


register(Case(
    kernel="linear_divergence",
    shapes=[dict(BIG, d=D_MODEL, js=False)],
    quick_shapes=[dict(T=16, V=1000, d=64, js=True)],
    make=_make_linear_pair,
    kernel_fn=lambda i: kernels.linear_divergence(i["hidden_p"], i["weight_p"], i["hidden_q"], i["weight_q"],
                                                  i["targets"], js=i["js"]),
    eager=lambda i: eager_divergence(i["hidden_p"] @ i["weight_p"].T, i["hidden_q"] @ i["weight_q"].T,
                                     i["targets"], i["js"]),
    cost=lambda s, dtype: ((2 * s["T"] + 2 * s["V"]) * s["d"] * dtype.itemsize,
                           4.0 * s["T"] * s["d"] * s["V"] * (2 if s["js"] else 1)),  # JS recomputes the logits
    errors=lambda out, ref: _max_error(out, ref, ("kl_pq", "kl_qp", "contrastive")),
))


# ----- sample and attention_stats: the PyTorch references are their eager formulations ---------------
def _make_sample(s, dtype, device):
    return dict(logits=_randn((s["B"], s["V"]), 3.0, dtype, device, 9), top_p=s["top_p"],
                generator=torch.Generator(device=device).manual_seed(0))


register(Case(
    kernel="sample",
    shapes=[dict(B=1, V=BIG["V"], top_p=0.9), dict(B=64, V=BIG["V"], top_p=0.9), dict(B=512, V=BIG["V"], top_p=0.9)],
    quick_shapes=[dict(B=4, V=1000, top_p=0.9)],
    make=_make_sample,
    kernel_fn=lambda i: kernels.sample(i["logits"], temperature=0.8, top_p=i["top_p"], generator=i["generator"]),
    eager=lambda i: kernels.sample_reference(i["logits"], temperature=0.8, top_p=i["top_p"], generator=i["generator"]),
    cost=lambda s, dtype: (s["B"] * s["V"] * dtype.itemsize, 0.0),  # one read per row
    errors=lambda out, ref: {"entropy": (out.entropy - ref.entropy).abs().max().item()},
))


def _make_attention(s, dtype, device):
    return dict(q=_randn((s["B"], s["Hq"], s["T"], s["d"]), 1.0, dtype, device, 10),
                k=_randn((s["B"], s["Hkv"], s["T"], s["d"]), 1.0, dtype, device, 11))


register(Case(
    kernel="attention_stats",
    shapes=[dict(B=1, Hq=32, Hkv=8, T=8192, d=128)],
    quick_shapes=[dict(B=1, Hq=2, Hkv=1, T=64, d=16)],
    make=_make_attention,
    kernel_fn=lambda i: kernels.attention_stats(i["q"], i["k"], causal=True),
    eager=lambda i: kernels.attention_stats_reference(i["q"], i["k"], causal=True),
    # causal QK^T twice (per-query statistics, then the per-key column sums): 2 x (2 B Hq T^2 d / 2)
    cost=lambda s, dtype: ((s["Hq"] + s["Hkv"]) * s["B"] * s["T"] * s["d"] * dtype.itemsize,
                           2.0 * s["B"] * s["Hq"] * s["T"] ** 2 * s["d"]),
    errors=lambda out, ref: {name: (getattr(out, name) - getattr(ref, name)).abs().nan_to_num(0.0, 0.0, 0.0).max().item()
                             for name in ("lse", "entropy", "received")},
))
