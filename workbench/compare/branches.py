"""Branches at divergent positions (R2R, Fu et al. 2025, "R2R: Efficiently Navigating
Divergent Reasoning Paths with Small-Large Model Token Routing"): where the two sides' greedy
choices differ, each side's own choice followed by its own greedy continuation of a few
tokens, so that a reader (or a judge) can see whether the paths part ways or rejoin.

At scored token t (predicted from side input ids[:positions[t]]), side s continues
ids[:positions[t]] + [top-1 of s] greedily with its own model for `tokens` more tokens.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from ..decoding.engine import decode
from ..samplers import Greedy
from .sides import Side

if TYPE_CHECKING:
    from ..model.handle import Model


def greedy_branches(model: "Model", side: Side, rows: Sequence[int], first_ids: Sequence[int], *, tokens: int,
                    progress: bool) -> list[str]:
    """The text of `first_ids[i]` followed by `tokens` greedy tokens of `model` after
    side.ids[:side.positions[rows[i]]] + [first_ids[i]], for each i (end-of-sequence
    tokens dropped)."""
    if not rows:
        return []
    prefixes = [side.ids[:int(side.positions[row])] + [int(first)] for row, first in zip(rows, first_ids)]
    generator = torch.Generator(device=model.device)  # greedy: never drawn from
    drawn = decode(model, prefixes, sampler=Greedy(), max_new_tokens=tokens, generator=generator, progress=progress,
                   desc="branches")
    eos = set(model.eos_ids)
    texts = []
    for first, ids in zip(first_ids, drawn.ids):
        ids = [int(first)] + [i for i in ids if i not in eos]
        texts.append(model.tokenizer.decode(ids, clean_up_tokenization_spaces=False))
    return texts
