"""How many sequences and targets one pass may hold: memory estimated before anything is
allocated, work split into batches that fit, and a refusal with a message when even the
smallest batch would not.

The estimates are deliberately coarse (they count the large tensors, not every temporary):

retained    a forward kept for a backward: per layer and position, about 12 residual-width and
            4 MLP-width activations, times the batch of sequences.
per target  a batched backward (one cotangent per target) holds one layer's activation
            gradients per target: about 8 residual-width and 3 MLP-width values per position
            and sequence, plus the gradient of the input embeddings it returns.
forward     a forward without gradients (`workbench.forward.memory.forward_bytes`) per sequence,
            plus the logits of the rows that are scored ([rows, V], float32).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..forward import memory

if TYPE_CHECKING:
    from ..model.handle import Model


def _widths(model: "Model") -> tuple[int, int, int]:
    """(element bytes, residual width d, MLP width)."""
    element = torch.finfo(model.dtype).bits // 8
    intermediate = getattr(model.hf.config, "intermediate_size", None) or 4 * model.hidden_size
    return element, model.hidden_size, intermediate


def retained_bytes(model: "Model", n_tokens: int, n_sequences: int) -> int:
    element, d, intermediate = _widths(model)
    return model.n_layers * n_sequences * n_tokens * (12 * d + 4 * intermediate) * element


def per_target_bytes(model: "Model", n_tokens: int, n_sequences: int) -> int:
    element, d, intermediate = _widths(model)
    return n_sequences * n_tokens * ((8 * d + 3 * intermediate) * element + d * element)


def scored_rows_bytes(model: "Model", n_rows: int) -> int:
    return n_rows * model.vocab_size * 4 * 2  # the logits and their log-softmax


CPU_WORKING_SET = 4 * memory.GIB  # batches on a CPU grow no faster beyond this: stay within it


def usable_bytes(model: "Model") -> int:
    """What one pass may hold: the usable share of the free memory, on a CPU at most
    CPU_WORKING_SET (a larger batch runs no faster there, and a laptop stays responsive)."""
    usable = int(memory.HEADROOM * memory.available_bytes(model.device))
    return usable if model.device.type == "cuda" else min(usable, CPU_WORKING_SET)


def gradient_batches(model: "Model", n_tokens: int, n_targets: int, n_points: int, what: str,
                     target_batch: int | None = None, point_batch: int | None = None) -> tuple[int, int]:
    """(points per forward, targets per backward) for a gradient method: `n_points` inputs
    (1, or the steps of integrated gradients) of `n_tokens` each, `n_targets` targets. The
    largest batches that fit, fewer points before fewer targets; a batch size that is given is
    kept. Raises MemoryEstimateExceeded when one point and one target do not fit."""
    usable = usable_bytes(model)

    def needed(points: int, targets: int) -> int:
        return (retained_bytes(model, n_tokens, points) + targets * per_target_bytes(model, n_tokens, points)
                + scored_rows_bytes(model, points * n_targets))

    points = point_batch or n_points
    targets = target_batch or n_targets
    while needed(points, targets) > usable:
        if points > 1 and not point_batch:
            points = (points + 1) // 2
        elif targets > 1 and not target_batch:
            targets = (targets + 1) // 2
        else:
            break
    memory.check_fits(f"{what} of {n_targets} targets over {n_tokens} tokens", needed(points, targets), model.device,
                      "attribute fewer or shorter inputs (a shorter prompt, fewer targets)")
    return points, targets


def forward_batch(model: "Model", length: int, rows_per_sequence: int, n_sequences: int, what: str,
                  batch: int | None = None) -> int:
    """Sequences per forward (no gradients) of `length` tokens, each scoring
    `rows_per_sequence` rows: the largest batch up to `n_sequences` that fits, or `batch` when
    given. Raises MemoryEstimateExceeded when one sequence does not fit."""
    usable = usable_bytes(model)

    def needed(size: int) -> int:
        return size * (memory.forward_bytes(model, length) + scored_rows_bytes(model, rows_per_sequence))

    size = batch or n_sequences
    while not batch and size > 1 and needed(size) > usable:
        size = (size + 1) // 2
    memory.check_fits(f"{what} over {length} tokens", needed(size), model.device,
                      "attribute a shorter input or fewer targets")
    return size
