"""Leave-one-out / occlusion: how much a target's score drops when a span of the input is
removed, at token, word or sentence level.

    occlusion(t, S) = f_t(x) - f_t(x without the tokens of span S before t)

(f_t from `target.scores`; Li et al. 2016, "Understanding Neural Networks through
Representation Erasure"). The sequence without S is re-run as it is, shorter, not with a
placeholder. The value of a word or sentence is shared equally by its tokens before t, so
summing the token values of a span (`spans.aggregate`) gives the span's value back. A span
that holds every token before t leaves nothing to predict from: NaN (no value), like the
sources at or after t.

One forward per batch of ablated sequences serves every target: with S removed, target t is
read at the row of the last kept token before it (causal attention: later tokens, and the
right padding of a batch, are never seen). The batch size comes from the memory estimate.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from . import budget
from .result import Attribution, lower_triangular
from .spans import members
from .target import Targets, hidden_states, scores

if TYPE_CHECKING:
    from ..model.handle import Model


@torch.no_grad()
def occlusion(model: "Model", ids: torch.Tensor, targets: Targets, group_of: np.ndarray, *, level: str = "token",
              batch: int | None = None, progress: bool = True) -> Attribution:
    """Attribute each target to the spans `group_of` [T] (`spans.groups`) of `ids` [T] by
    removing one span at a time; `level` is recorded in the params. batch: ablated
    sequences per forward (None: as many as the memory estimate allows)."""
    n_tokens, n_targets = len(ids), len(targets)
    positions = targets.positions.cpu().numpy()
    rows_at = targets.positions - 1
    original = scores(model, hidden_states(model, input_ids=ids[None])[0, rows_at], targets.ids, targets.foils)  # [K]
    spans = [span for span in members(group_of) if span[0] < positions.max()]  # sources of some target
    size = budget.forward_batch(model, n_tokens, n_targets, len(spans), f"occlusion of {len(spans)} spans", batch)
    values = np.zeros((n_targets, n_tokens))
    bar = tqdm(total=len(spans), desc=f"occlusion ({level})", unit="span", disable=not progress, leave=False)
    for start in range(0, len(spans), size):
        chunk = spans[start:start + size]
        kept = [np.setdiff1d(np.arange(n_tokens), span) for span in chunk]
        # (a span of every token leaves an empty sequence: one padding token stands in, never read)
        batch_ids = torch.zeros((len(chunk), max(1, *(len(k) for k in kept))), dtype=ids.dtype, device=ids.device)
        for row, k in enumerate(kept):
            batch_ids[row, :len(k)] = ids[torch.from_numpy(k).to(ids.device)]
        # [S, K]: how many kept tokens precede each target; the row read is the last of them.
        before = np.stack([np.searchsorted(k, positions) for k in kept])
        read = torch.from_numpy(np.maximum(before - 1, 0)).to(ids.device)
        lengths = torch.tensor([max(len(k), 1) for k in kept], device=ids.device)
        hidden = hidden_states(model, input_ids=batch_ids, lengths=lengths)  # [S, L, d]
        rows = hidden[torch.arange(len(chunk), device=ids.device)[:, None], read]  # [S, K, d]
        ablated = scores(model, rows, targets.ids.expand(len(chunk), -1),
                         None if targets.foils is None else targets.foils.expand(len(chunk), -1))  # [S, K]
        drop = (original[None] - ablated).double().cpu().numpy()
        for row, span in enumerate(chunk):
            n_sources = (span[None, :] < positions[:, None]).sum(1)  # [K] tokens of the span before each target
            share = np.where(before[row] > 0, drop[row] / np.maximum(n_sources, 1), np.nan)
            values[:, span] = share[:, None]
        bar.update(len(chunk))
    bar.close()
    return Attribution(lower_triangular(values, targets.positions), original.double().cpu().numpy(), {},
                       {"level": level})
