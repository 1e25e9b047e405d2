"""Spans of tokens: words and sentences, for occlusion at those levels and for aggregating a
[target, source] attribution to them.

A span is a run of consecutive tokens; `groups` numbers each token's span (0, 1, ...; the
spans tile the tokens in order). Token i's text is text[start_i:end_i] (`workbench.tokens`
tiles the text exactly).

word      a new word starts at a token whose text begins with whitespace, after a token that
          ends with whitespace, and at any zero-width token (a special token) and the token
          after it: " Paris." is one word, "<|im_start|>" one of its own.
sentence  a new sentence starts after a token whose text ends a sentence (., ! or ?, optionally
          followed by closing quotes or brackets, then optional whitespace) or holds a line
          break.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

LEVELS = ("token", "word", "sentence")
SENTENCE_END = re.compile(r"([.!?][\"')\]]*\s*$)|\n")


def token_texts(text: str, starts: Sequence[int], ends: Sequence[int]) -> list[str]:
    return [text[int(s):int(e)] for s, e in zip(starts, ends)]


def groups(text: str, starts: Sequence[int], ends: Sequence[int], level: str) -> np.ndarray:
    """[T] int64: the span of each token at `level` ("token", "word" or "sentence")."""
    pieces = token_texts(text, starts, ends)
    if level == "token":
        return np.arange(len(pieces), dtype=np.int64)
    new = np.zeros(len(pieces), dtype=bool)
    for i, piece in enumerate(pieces):
        if i == 0:
            new[i] = True
            continue
        before = pieces[i - 1]
        if level == "word":
            new[i] = (piece == "" or before == "" or piece[0].isspace() or before[-1].isspace())
        else:
            new[i] = bool(SENTENCE_END.search(before))
    return np.cumsum(new) - 1


def members(group_of: np.ndarray) -> list[np.ndarray]:
    """The token positions of each span, in order."""
    edges = np.flatnonzero(np.diff(group_of)) + 1
    return np.split(np.arange(len(group_of)), edges)


def labels(text: str, starts: Sequence[int], ends: Sequence[int], group_of: np.ndarray) -> list[str]:
    """Each span's text."""
    return [text[int(starts[m[0]]):int(ends[m[-1]])] for m in members(group_of)]


def aggregate(values: np.ndarray, group_of: np.ndarray) -> np.ndarray:
    """values [K, T] -> [K, G]: the sum over each span's tokens, NaN (no attribution: the
    source is not before the target) counted as nothing; a span none of whose tokens has a
    value stays NaN."""
    spans = members(group_of)
    out = np.full((values.shape[0], len(spans)), np.nan)
    for g, span in enumerate(spans):
        part = values[:, span]
        some = ~np.isnan(part).all(axis=1)
        out[some, g] = np.nansum(part[some], axis=1)
    return out
