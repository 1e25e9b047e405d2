"""Kernels for the heavy numerical paths: one public function each, with a PyTorch
reference of the same signature. They know nothing of models.

    vocab_stats(logits [T, V], targets [T] | None, *, top_k, temperature, backend) -> VocabStats
"""
from __future__ import annotations

import torch

from .dispatch import choose
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


__all__ = ["IGNORE_INDEX", "VocabStats", "vocab_stats", "vocab_stats_reference"]
