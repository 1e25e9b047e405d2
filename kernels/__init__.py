"""Kernels for the heavy numerical paths: one public function each, with a PyTorch
reference of the same signature. They know nothing of models.

    vocab_stats(logits [T, V], targets [T] | None, *, top_k, temperature, backend) -> VocabStats
    sample(logits [B, V], *, temperature, top_k, top_p, min_p, top_h, generator, backend) -> SampleResult
    attention_stats(q [B, Hq, T, d], k [B, Hkv, T, d], *, causal, mask, sink, key_subset, top_k, ...) -> AttentionStats
"""
from __future__ import annotations

import torch

from .attention_stats import AttentionStats, attention_rows, attention_stats_reference
from .dispatch import choose
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


__all__ = ["AttentionStats", "attention_rows", "attention_stats", "attention_stats_reference", "IGNORE_INDEX", "SampleResult", "VocabStats", "kept_counts", "kept_set_reference", "sample",
           "sample_reference", "vocab_stats", "vocab_stats_reference"]
