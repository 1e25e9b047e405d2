"""`Attribution`: what every method returns for one sequence and K targets."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Attribution:
    """values [K, T] float64: row k attributes target k to every source position s; NaN where
    s >= t_k (a token can only be explained by the tokens before it), so the matrix over all
    positions is strictly lower-triangular. scores [K]: f_t on the unchanged input (see
    `target`). per_target: further [K] arrays (the completeness gap of integrated gradients,
    ReAGent's steps); params: the method's settings, as recorded in the run."""

    values: np.ndarray
    scores: np.ndarray
    per_target: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict = field(default_factory=dict)


def source_mask(positions: torch.Tensor, n_tokens: int) -> np.ndarray:
    """[K, T] bool: whether position s is a source of target k (s < t_k)."""
    return (np.arange(n_tokens)[None, :] < positions.cpu().numpy()[:, None])


def lower_triangular(values: np.ndarray, positions: torch.Tensor) -> np.ndarray:
    """values [K, T] with NaN where s >= t_k."""
    return np.where(source_mask(positions, values.shape[1]), values, np.nan)
