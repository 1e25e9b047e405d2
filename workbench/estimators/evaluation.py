"""How well an uncertainty score predicts errors, over a set of answers with known correctness.

AUROC: the probability that a wrong answer gets a higher uncertainty than a right one (ties
count one half); 0.5 is chance, 1 a perfect ranking. Computed from ranks (Mann & Whitney 1947):
    AUROC = (sum of the ranks of the wrong answers - n_w (n_w + 1) / 2) / (n_w n_r)
with average ranks for ties. Undefined (NaN) when every answer is right or every one wrong, or
when an uncertainty is not finite (NaN would otherwise rank as the most uncertain answer).

Prediction-rejection ratio (Malinin et al. 2017, "Incorporating uncertainty into deep learning for
spoken language assessment"; LM-Polygraph's PRR): reject the most uncertain answers first; the
rejection curve is the accuracy of the kept answers as the kept share falls. With AUC_x the mean
accuracy over keeping the k = n, n-1, ..., 1 least uncertain answers under ordering x:
    PRR = (AUC_estimator - AUC_random) / (AUC_oracle - AUC_random)
AUC_random is the overall accuracy, the oracle rejects wrong answers first. 1 is the oracle, 0 no
better than chance. Ties in uncertainty keep the answers' order (a stable sort).
"""
from __future__ import annotations

import numpy as np


def _checked(uncertainty, correct) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(uncertainty, dtype=np.float64)
    c = np.asarray(correct, dtype=bool)
    if u.shape != c.shape or u.ndim != 1:
        raise ValueError(f"uncertainty {u.shape} and correctness {c.shape} must be 1-d of one length")
    return u, c


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks [n], ties sharing the average of their ranks."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def auroc(uncertainty, correct) -> float:
    """AUROC of `uncertainty` [n] (higher = less sure) for detecting the wrong answers (correct [n] bool)."""
    u, c = _checked(uncertainty, correct)
    wrong, right = int((~c).sum()), int(c.sum())
    if wrong == 0 or right == 0 or not np.isfinite(u).all():
        return float("nan")
    return float((average_ranks(u)[~c].sum() - wrong * (wrong + 1) / 2) / (wrong * right))


def rejection_auc(correct_in_order: np.ndarray) -> float:
    """Mean accuracy of the first k answers, over k = 1..n (answers ordered most certain first)."""
    kept = np.arange(1, len(correct_in_order) + 1)
    return float((np.cumsum(correct_in_order) / kept).mean())


def prr(uncertainty, correct) -> float:
    """Prediction-rejection ratio of `uncertainty` [n] against correctness [n] bool (NaN when all
    answers are right or all wrong: no rejection can help; NaN when an uncertainty is not finite)."""
    u, c = _checked(uncertainty, correct)
    if c.all() or not c.any() or not np.isfinite(u).all():
        return float("nan")
    quality = c.astype(np.float64)
    estimator = rejection_auc(quality[np.argsort(u, kind="stable")])
    oracle = rejection_auc(np.sort(quality)[::-1])
    return float((estimator - quality.mean()) / (oracle - quality.mean()))
