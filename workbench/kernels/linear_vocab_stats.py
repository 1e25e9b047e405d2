"""Vocabulary statistics straight from hidden states and the lm_head weight.

For hidden states h [T, d] and an lm_head W [V, d] (bias b [V], optional soft-cap c):

    z = h W^T + b,   then  z <- c tanh(z / c)  when a soft-cap is given (Gemma-2 style
                           final-logit soft-capping; `FamilyAdapter.head` supplies it)

and the statistics are exactly those of `vocab_stats(z, targets, top_k, temperature)`
(entropy, varentropy, target log-prob and rank, margin, top-k: see vocab_stats.py).
The point is memory: z is [T, V] (8192 x 151936 bf16 = 2.5 GB); here it never exists
whole. The reference computes it for a block of rows at a time (~64 MiB of fp32), in the
inputs' dtype as the model's own lm_head would; the Triton kernel tiles the vocabulary,
keeps the logits of a tile in fp32 registers and merges partial log-sum-exps across
tiles, so logits are never written to memory.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .vocab_stats import VocabStats, block_rows, check_options, row_blocks, vocab_stats_reference

CHUNK_BYTES = 64 * 2**20  # fp32 logits per block of rows in the reference


def chunk_rows(vocab_size: int) -> int:
    """Rows of [rows, V] fp32 logits that fit in CHUNK_BYTES (at least one)."""
    return block_rows(vocab_size, CHUNK_BYTES)


def head_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                softcap: float | None = None) -> torch.Tensor:
    """z = softcap(hidden @ weight^T + bias): [N, d] -> [N, V], in the inputs' dtype."""
    logits = F.linear(hidden, weight, bias)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def linear_vocab_stats_reference(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor | None = None,
                                 *, bias: torch.Tensor | None = None, softcap: float | None = None, top_k: int = 0,
                                 temperature: float = 1.0) -> VocabStats:
    """hidden: [T, d]; weight: [V, d]; bias: [V] or None; targets: [T] int (IGNORE_INDEX: none).
    Blocks of rows: logits [rows, V] for one block at a time, then `vocab_stats_reference`."""
    check_head(hidden, weight, bias, softcap)
    check_options(hidden.shape[0], weight.shape[0], targets, top_k, temperature)
    rows = chunk_rows(weight.shape[0])
    parts = []
    for block in row_blocks(hidden.shape[0], rows):
        logits = head_logits(hidden[block], weight, bias, softcap)  # [rows, V]
        block_targets = None if targets is None else targets[block]
        parts.append(vocab_stats_reference(logits, block_targets, top_k=top_k, temperature=temperature))
    return VocabStats.cat(parts)


def check_head(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, softcap: float | None) -> None:
    """hidden [T, d] and weight [V, d] (same dtype and device), bias [V], softcap > 0."""
    if hidden.ndim != 2 or weight.ndim != 2:
        raise ValueError(f"hidden must be [T, d] and weight [V, d], got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden size differs: hidden is [T, {hidden.shape[1]}], weight is [V, {weight.shape[1]}]")
    if hidden.dtype != weight.dtype or hidden.device != weight.device:
        raise ValueError(f"hidden ({hidden.dtype}, {hidden.device}) and weight ({weight.dtype}, {weight.device}) "
                         "must share dtype and device")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias must be [V] = [{weight.shape[0]}], got {tuple(bias.shape)}")
    if softcap is not None and not softcap > 0:
        raise ValueError(f"softcap must be > 0 (or None), got {softcap}")
