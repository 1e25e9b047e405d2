"""Commitment layer from the logit lens: the first layer from which the model's final top-1
token stays the lens's top-1 in every later layer (layer 0 = the embeddings, L = the last
block, whose lens is the model's own prediction; nostalgebraist 2020, "interpreting GPT: the
logit lens"). A late commitment means the prediction was settled only in the last layers.

[top-1 ids per layer (7, 3, 5, 3, 3) at one position: final top-1 3, commitment layer 3]
"""
from __future__ import annotations

import numpy as np


def commitment_layers(lens_top1: np.ndarray) -> np.ndarray:
    """lens_top1: [L+1, T] the lens's top-1 id per layer and position (-1: no prediction) ->
    [T] int64: the commitment layer, -1 where there is no prediction."""
    agrees = lens_top1 == lens_top1[-1]  # [L+1, T]
    # the suffix of layers that all agree: reversed cumulative AND, then its length
    settled = np.flip(np.logical_and.accumulate(np.flip(agrees, 0), 0), 0)
    layers = lens_top1.shape[0] - settled.sum(0)
    return np.where(lens_top1[-1] < 0, -1, layers).astype(np.int64)
