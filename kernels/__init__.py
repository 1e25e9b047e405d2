"""Kernels for the heavy numerical paths: one public function each, with a PyTorch
reference of the same signature. They know nothing of models.

    vocab_stats(logits [T, V], targets [T] | None, *, top_k, temperature, backend) -> VocabStats
    sample(logits [B, V], *, temperature, top_k, top_p, min_p, top_h, generator, backend) -> SampleResult
"""
from __future__ import annotations

import torch

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


__all__ = ["IGNORE_INDEX", "SampleResult", "VocabStats", "kept_counts", "kept_set_reference", "sample",
           "sample_reference", "vocab_stats", "vocab_stats_reference"]
