"""Vocabulary statistics from hidden states, without [T, V] logits: the lm_head is fused
with the statistics (`kernels.linear_vocab_stats`: Triton on CUDA, blocks of rows on CPU).
Families whose lm_head is not a plain linear layer compute logits a block of rows at a
time and take `kernels.vocab_stats` of each block."""
from __future__ import annotations

import torch

from ..kernels import IGNORE_INDEX, VocabStats, linear_vocab_stats, vocab_stats
from ..kernels.linear_vocab_stats import chunk_rows
from ..kernels.vocab_stats import row_blocks
from ..model.handle import Model


def hidden_vocab_stats(model: Model, hidden: torch.Tensor, targets: torch.Tensor | None, *,
                       top_k: int, normed: bool = True) -> VocabStats:
    """Statistics of softmax(lm_head(norm(hidden))) per row.

    hidden: [T, d]; targets: [T] (IGNORE_INDEX where none); normed: whether `hidden` has
    already been through the final norm (the backbone's output has; a layer's residual
    stream, for the logit lens, has not).
    """
    head = model.adapter.head(model.hf)
    with torch.inference_mode():
        if head is not None:
            if not normed:
                hidden = model.adapter.final_norm(model.hf)(hidden)  # [T, d]
            weight, bias, softcap = head
            return linear_vocab_stats(hidden, weight, targets, bias=bias, softcap=softcap, top_k=top_k)
        rows = chunk_rows(model.vocab_size)
        parts = []
        for rows_in_block in row_blocks(hidden.shape[0], rows):
            block = hidden[rows_in_block]  # [c, d]
            if not normed:
                block = model.adapter.final_norm(model.hf)(block)
            logits = model.adapter.logits(model.hf, block)  # [c, V]
            block_targets = None if targets is None else targets[rows_in_block]
            parts.append(vocab_stats(logits, block_targets, top_k=top_k))
    return VocabStats.cat(parts)


def next_token_targets(ids: torch.Tensor) -> torch.Tensor:
    """targets[t] = ids[t + 1]: the token each position predicts; the last has none."""
    targets = torch.full_like(ids, IGNORE_INDEX)
    targets[:-1] = ids[1:]
    return targets
