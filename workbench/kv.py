"""KV-cache importance: which keys a cache with a budget would keep.

H2O (Zhang et al. 2023, "Heavy-Hitter Oracle"): keep the `recent` most recent keys and,
among the others, the `heavy` keys with the largest received attention s_j = sum_i A_ij.
[s = (2.5, .8, .3, .4), heavy 1 + recent 1 -> keys {0, 3}]
"""
from __future__ import annotations

import numpy as np


def heavy_hitters(received: np.ndarray, heavy: int, recent: int) -> np.ndarray:
    """received: [T] scores -> keep mask [T] (bool) for a budget of heavy + recent keys."""
    received = np.asarray(received, dtype=np.float64)
    if heavy < 0 or recent < 0:
        raise ValueError(f"heavy and recent must be >= 0, got {heavy} and {recent}")
    keep = np.zeros(len(received), dtype=bool)
    if recent:
        keep[-recent:] = True
    candidates = np.flatnonzero(~keep)
    if heavy and len(candidates):
        order = np.argsort(-received[candidates], kind="stable")  # ties: the earlier key
        keep[candidates[order[:heavy]]] = True
    return keep
