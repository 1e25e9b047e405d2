"""Pair statistics of two predictors of the same tokens, from their final hidden states.

For each scored position: each side's vocabulary statistics (entropy, log-probability and
rank of the actual token, top-k) and the pair's divergences (KL both ways, JS, the overlap
sum_v min(p_v, q_v), the cDPO contrastive score); see `kernels/vocab_stats.py` and
`kernels/divergence.py` for the formulas. No [T, V] tensor exists for either side:

- CUDA, both lm_heads plain linear layers: the fused Triton kernels (`linear_vocab_stats`
  per side, `linear_divergence` for the pair), logits never written to memory;
- otherwise (CPU, or a head that is not a plain linear layer): blocks of rows, each block's
  logits [rows, V] computed once per side (the model's own head, in its dtype); on CPU (or
  with backend="torch") both sides' statistics and the divergences come from one set of passes
  over them (`kernels.pair_blocks`: each side's softmax once), on CUDA from `vocab_stats` and
  `divergence`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..errors import WorkbenchError
from ..kernels import Divergence, VocabStats, divergence, linear_divergence, linear_vocab_stats, vocab_stats
from ..kernels.linear_vocab_stats import CHUNK_BYTES, chunk_rows, head_logits
from ..kernels.pair_blocks import pair_block_stats
from ..kernels.vocab_stats import row_blocks

if TYPE_CHECKING:
    from ..model.handle import Model

BLOCK_BUFFERS = 6  # [rows, V] fp32 buffers alive at once per block: two sides' logits and the kernels' copies


@dataclass
class PairStats:
    model: VocabStats  # p: [N] per scored position, top-k [N, k]
    reference: VocabStats  # q
    divergence: Divergence  # kl_pq, kl_qp, js, overlap, contrastive: [N]


def pair_bytes(vocab_size: int) -> int:
    """Transient memory of `pair_stats` besides its inputs: one block of rows of each side's
    logits and the kernels' working copies."""
    return BLOCK_BUFFERS * CHUNK_BYTES if vocab_size else 0


def pair_stats(model: "Model", hidden_p: torch.Tensor, reference: "Model", hidden_q: torch.Tensor,
               targets: torch.Tensor, *, vocab_size: int, top_k: int, beta: float, backend: str = "auto") -> PairStats:
    """hidden_p [N, d_p], hidden_q [N, d_q]: final hidden states (after the final norm) that
    predict the N scored tokens `targets` [N]; vocab_size: the logits the two share (the
    first `vocab_size` of each head); top_k >= 1; beta: the cDPO contrast's beta. backend:
    "auto" (the fused kernels on CUDA), "triton" (the fused kernels anywhere: on CPU under
    TRITON_INTERPRET=1) or "torch" (blocks of rows)."""
    if hidden_p.device != hidden_q.device:
        raise WorkbenchError(f"the two sides' hidden states are on {hidden_p.device} and {hidden_q.device}; "
                             "both models must be on one device")
    head_p, head_q = _head(model, vocab_size), _head(reference, vocab_size)
    with torch.inference_mode():
        fused = backend == "triton" or (backend == "auto" and hidden_p.is_cuda)
        if fused and head_p is not None and head_q is not None:
            return _fused(hidden_p, head_p, hidden_q, head_q, targets, top_k, beta, backend)
        one_pass = backend == "torch" or (backend == "auto" and not hidden_p.is_cuda)
        parts = [_block(model, head_p, hidden_p[block], reference, head_q, hidden_q[block], targets[block], vocab_size,
                        top_k, beta, backend, one_pass) for block in row_blocks(hidden_p.shape[0], chunk_rows(vocab_size))]
    return PairStats(VocabStats.cat([p.model for p in parts]), VocabStats.cat([p.reference for p in parts]),
                     Divergence.cat([p.divergence for p in parts]))


def _block(model, head_p, hidden_p, reference, head_q, hidden_q, targets, vocab_size, top_k, beta, backend,
           one_pass) -> PairStats:
    """One block of rows; its logits [rows, V] per side are freed on return (before the next
    block's exist)."""
    z_p = _logits(model, head_p, hidden_p, vocab_size)  # [rows, V]
    z_q = _logits(reference, head_q, hidden_q, vocab_size)
    if one_pass:
        return PairStats(*pair_block_stats(z_p, z_q, targets, top_k=top_k, beta=beta))
    return PairStats(vocab_stats(z_p, targets, top_k=top_k, backend=backend),
                     vocab_stats(z_q, targets, top_k=top_k, backend=backend),
                     divergence(z_p, z_q, targets, beta=beta, overlap=True, backend=backend))


def _head(model: "Model", vocab_size: int):
    """(weight [V, d], bias [V] | None, softcap) cut to the shared vocabulary, or None when the
    family's lm_head is not a plain linear layer."""
    head = model.adapter.head(model.hf)
    if head is None:
        return None
    weight, bias, softcap = head
    return weight[:vocab_size], None if bias is None else bias[:vocab_size], softcap


def _logits(model: "Model", head, hidden: torch.Tensor, vocab_size: int) -> torch.Tensor:
    if head is None:
        return model.adapter.logits(model.hf, hidden)[:, :vocab_size]
    return head_logits(hidden, *head)


def _fused(hidden_p, head_p, hidden_q, head_q, targets, top_k, beta, backend) -> PairStats:
    (weight_p, bias_p, softcap_p), (weight_q, bias_q, softcap_q) = head_p, head_q
    return PairStats(
        linear_vocab_stats(hidden_p, weight_p, targets, bias=bias_p, softcap=softcap_p, top_k=top_k, backend=backend),
        linear_vocab_stats(hidden_q, weight_q, targets, bias=bias_q, softcap=softcap_q, top_k=top_k, backend=backend),
        linear_divergence(hidden_p, weight_p, hidden_q, weight_q, targets, bias_p=bias_p, bias_q=bias_q,
                          softcap_p=softcap_p, softcap_q=softcap_q, beta=beta, overlap=True, backend=backend),
    )
