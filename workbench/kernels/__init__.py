"""Kernels for the heavy numerical paths: one public function each, with a PyTorch
reference of the same signature. They know nothing of models.

    vocab_stats(logits [T, V], targets [T] | None, *, top_k, temperature, backend) -> VocabStats
    linear_vocab_stats(hidden [T, d], weight [V, d], targets, *, bias, softcap, top_k, temperature, backend) -> VocabStats
    divergence(logits_p [T, V], logits_q [T, V], targets, *, beta, js, overlap, backend) -> Divergence
    linear_divergence(hidden_p, weight_p, hidden_q, weight_q, targets, *, ..., beta, js, overlap, backend) -> Divergence
    sample(logits [B, V], *, temperature, top_k, top_p, min_p, top_h, generator, backend) -> SampleResult
    attention_stats(q [B, Hq, T, d], k [B, Hkv, T, d], *, causal, mask, sink, key_subset, top_k, ...) -> AttentionStats
"""
from __future__ import annotations

import torch

from .attention_stats import AttentionStats, attention_rows, attention_stats_reference, previous_key_mass
from .dispatch import choose
from .divergence import Divergence, divergence_reference, linear_divergence_reference
from .linear_vocab_stats import linear_vocab_stats_reference
from .sample import SampleResult, kept_counts, kept_set_reference, sample_reference
from .vocab_stats import IGNORE_INDEX, VocabStats, vocab_stats_reference


def vocab_stats(
    logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    top_k: int = 0,
    temperature: float = 1.0,
    backend: str = "auto",
) -> VocabStats:
    """Per-row entropy, varentropy, target log-prob and rank, margin, top-k (see
    `workbench.kernels.vocab_stats_reference` for the formulas)."""
    implementation = choose("vocab_stats", vocab_stats_reference, logits, backend)
    return implementation(logits, targets, top_k=top_k, temperature=temperature)


def linear_vocab_stats(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    bias: torch.Tensor | None = None,
    softcap: float | None = None,
    top_k: int = 0,
    temperature: float = 1.0,
    backend: str = "auto",
) -> VocabStats:
    """`vocab_stats` of z = softcap(hidden @ weight^T + bias) without holding [T, V] logits
    (see `kernels/linear_vocab_stats.py`)."""
    implementation = choose("linear_vocab_stats", linear_vocab_stats_reference, hidden, backend)
    return implementation(hidden, weight, targets, bias=bias, softcap=softcap, top_k=top_k, temperature=temperature)


def divergence(
    logits_p: torch.Tensor,
    logits_q: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    beta: float = 1.0,
    js: bool = True,
    overlap: bool = False,
    backend: str = "auto",
) -> Divergence:
    """Per-row KL(p||q), KL(q||p), JS, the overlap sum_v min(p_v, q_v) (speculative sampling's
    acceptance probability) and the cDPO contrastive score softmax((1 + beta) z_p -
    beta z_q)[y] (see `kernels/divergence.py`)."""
    implementation = choose("divergence", divergence_reference, logits_p, backend)
    return implementation(logits_p, logits_q, targets, beta=beta, js=js, overlap=overlap)


def linear_divergence(hidden_p, weight_p, hidden_q, weight_q, targets=None, *, bias_p=None, bias_q=None,
                      softcap_p=None, softcap_q=None, beta: float = 1.0, js: bool = True,
                      overlap: bool = False, backend: str = "auto") -> Divergence:
    """`divergence` of two models' logits computed from their final hidden states and
    lm_heads over a shared vocabulary, never holding [T, V] logits (see `kernels/divergence.py`)."""
    implementation = choose("linear_divergence", linear_divergence_reference, hidden_p, backend)
    return implementation(hidden_p, weight_p, hidden_q, weight_q, targets, bias_p=bias_p, bias_q=bias_q,
                          softcap_p=softcap_p, softcap_q=softcap_q, beta=beta, js=js, overlap=overlap)


def sample(
    logits: torch.Tensor,
    *,
    temperature=1.0,
    top_k=0,
    top_p=1.0,
    min_p=0.0,
    top_h=0.0,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> SampleResult:
    """One draw per row with per-row temperature and truncation (see `kernels/sample.py`)."""
    implementation = choose("sample", sample_reference, logits, backend)
    return implementation(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                          top_h=top_h, generator=generator)


def attention_stats(q, k, *, causal=True, mask=None, sink=1, key_subset=None, top_k=0, scale=None,
                    sink_logits=None, backend: str = "auto") -> AttentionStats:
    """Per-query log-sum-exp, entropy, sink and subset mass, top-k keys, and per-key received
    attention, without a T x T matrix (see `kernels/attention_stats.py`)."""
    implementation = choose("attention_stats", attention_stats_reference, q, backend)
    return implementation(q, k, causal=causal, mask=mask, sink=sink, key_subset=key_subset, top_k=top_k,
                          scale=scale, sink_logits=sink_logits)


__all__ = ["AttentionStats", "attention_rows", "attention_stats", "attention_stats_reference", "Divergence", "divergence",
           "divergence_reference", "previous_key_mass", "IGNORE_INDEX", "kept_counts", "kept_set_reference", "linear_divergence",
           "linear_divergence_reference", "linear_vocab_stats", "linear_vocab_stats_reference", "SampleResult", "sample",
           "sample_reference", "VocabStats", "vocab_stats", "vocab_stats_reference"]
