"""Branches at divergent positions (R2R, Fu et al. 2025, "R2R: Efficiently Navigating
Divergent Reasoning Paths with Small-Large Model Token Routing"): where the two sides' greedy
choices differ, each side's own choice followed by its own greedy continuation of a few
tokens, so that a reader (or a judge) can see whether the paths part ways or rejoin.

At scored token t (predicted from side input ids[:positions[t]]), side s continues
ids[:positions[t]] + [top-1 of s] greedily with its own model for `tokens` more tokens.

One KV cache per side serves every branch: the branches are taken in text order, the cache is
fed the text up to the next branch's position (each text token once in all), the branch's tokens
one at a time, and is then cropped back to the text (`decoding.speculative.CachedModel`). So 8
branches cost about one forward of the text and 8 x (tokens + 1) single-token steps, where 8
prefixes batched from scratch would cost 8 forwards of the text.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from tqdm.auto import tqdm

from ..decoding.engine import check_sampling_memory
from ..decoding.speculative import CachedModel
from .sides import Side

if TYPE_CHECKING:
    from ..model.handle import Model


def greedy_branches(model: "Model", side: Side, rows: Sequence[int], first_ids: Sequence[int], *, tokens: int,
                    progress: bool) -> tuple[list[str], bool]:
    """The text of `first_ids[i]` followed by `tokens` greedy tokens of `model` after
    side.ids[:side.positions[rows[i]]] + [first_ids[i]], for each i (ending at an
    end-of-sequence token, which is dropped), and whether every hidden state and logit was
    finite. The KV cache is estimated before it is allocated."""
    if rows:
        longest = max(int(side.positions[row]) for row in rows) + tokens + 1
        check_sampling_memory(model, 1, longest, prefill_tokens=longest,
                              what=f"continuing {len(rows)} branches of up to {longest} tokens",
                              advice="ask for fewer branches (branches=0: none)")
    cached, eos = CachedModel(model), set(model.eos_ids)
    continuations: dict[int, list[int]] = {}
    order = sorted(range(len(rows)), key=lambda i: int(side.positions[rows[i]]))
    with torch.inference_mode():
        for i in tqdm(order, desc="branches", unit="branch", disable=not progress, leave=False):
            text_ids = list(side.ids[:int(side.positions[rows[i]])])
            drawn = [int(first_ids[i])]
            while len(drawn) <= tokens and drawn[-1] not in eos:
                hidden = cached.feed(text_ids + drawn)[-1]
                drawn.append(int(cached.logits(hidden).argmax()))  # the first of equal maxima, as greedy sampling
            cached.roll_back(len(text_ids))
            continuations[i] = [token for token in drawn if token not in eos]
    texts = [model.tokenizer.decode(continuations[i], clean_up_tokenization_spaces=False) for i in range(len(rows))]
    return texts, cached.finite
