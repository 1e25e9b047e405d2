"""Per-token signals of a comparison: p is the model, q the reference, y the actual token;
row t describes the prediction of token t (both sides' distributions over the next token).

    kl_pq            KL(p||q) = sum_v p_v log(p_v / q_v);  kl_qp  KL(q||p)
    js               JS(p, q) = 1/2 KL(p||m) + 1/2 KL(q||m), m = (p + q) / 2
    acceptance       sum_v min(p_v, q_v) = 1 - TV(p, q): the probability that speculative sampling
                     accepts a token drafted from q for the target p (Leviathan et al. 2023, "Fast
                     Inference from Transformers via Speculative Decoding"; Chen et al. 2023)
    log_ratio        log p(y) - log q(y)
    implicit_reward  beta * log_ratio: DPO's implicit token reward with p the policy, q its
                     reference (Rafailov et al. 2024, "From r to Q*")
    excess_loss      (-log p(y)) - (-log q(y)) = -log_ratio: RHO-1's excess loss with p the model
                     in training and q the reference model (Lin et al. 2024, "Not All Tokens Are
                     What You Need"); tokens with a high excess loss are the ones worth training on
    cdpo_weight      1 - softmax((1 + b) z_p - b z_q)[y]: cDPO's weight of a token of an incorrect
                     response, p the positive and q the negative model (Lin et al. 2024, "Critical
                     Tokens Matter"), b = `cdpo_beta` (1 in the paper)
    top1_token, ref_top1_token, top1_agree: each side's most likely token and whether they agree
    (R2R's divergent positions are those where they do not: Fu et al. 2025)

and each side's own statistics: `entropy`, `surprisal`, `target_logprob`, `rank`, `topk_*` for p
(the names `analyze` gives them), the same prefixed `ref_` for q.

Test vectors: p = (.5, .3, .2), q = (.2, .3, .5): acceptance .7; expected tokens per
speculative step with gamma = 4: 2.7731. beta .1, p(y) (.5, .9, .2), q(y) (.25, .9, .4):
implicit reward (.0693, 0, -.0693), excess loss (-.6931, 0, .6931).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..decoding.speculative import expected_tokens_per_step
from ..signals.uncertainty import decode_pieces
from .statistics import PairStats

# name -> what it shows (labels of the views and the CLI)
PAIR_SIGNALS = {
    "kl_pq": "KL(p‖q): the model's divergence from the reference",
    "kl_qp": "KL(q‖p): the reference's divergence from the model",
    "js": "Jensen–Shannon divergence (nats, at most ln 2)",
    "acceptance": "speculative acceptance Σ min(p, q) = 1 − TV",
    "log_ratio": "log p(y) − log q(y) of the actual token",
    "implicit_reward": "DPO implicit reward β (log p(y) − log q(y))",
    "excess_loss": "RHO-1 excess loss: loss under the model − loss under the reference",
    "cdpo_weight": "cDPO weight 1 − softmax((1+β) z_p − β z_q)[y]",
}
SIDE_COLUMNS = ("entropy", "surprisal", "target_logprob", "rank")  # each side's, q's prefixed "ref_"


def expected_accepted_tokens(acceptance, gamma: int) -> np.ndarray:
    """Expected tokens per speculative step with `gamma` drafted tokens when each is accepted
    with probability a [T]: Leviathan et al. 2023, eq. 1 (`decoding.speculative`), per position.
    [a = .7, gamma = 4: 2.7731]"""
    return np.asarray(expected_tokens_per_step(np.asarray(acceptance, dtype=np.float64), gamma))


def pair_columns(stats: PairStats, rows: np.ndarray, n_rows: int, tokenizer, *, beta: float) -> dict:
    """The table's columns [n_rows] from `stats` of the scored rows `rows` [N] (the others
    <NA> or None)."""
    div = stats.divergence
    logp, logq = (s.target_logprob.double().cpu().numpy() for s in (stats.model, stats.reference))
    log_ratio = logp - logq
    floats = {"kl_pq": div.kl_pq, "kl_qp": div.kl_qp, "js": div.js, "acceptance": div.overlap}
    columns = {name: _place(values.double().cpu().numpy(), rows, n_rows, "Float64") for name, values in floats.items()}
    columns.update(log_ratio=_place(log_ratio, rows, n_rows, "Float64"),
                   implicit_reward=_place(beta * log_ratio, rows, n_rows, "Float64"),
                   excess_loss=_place(-log_ratio, rows, n_rows, "Float64"),
                   cdpo_weight=_place(1 - div.contrastive.double().cpu().numpy(), rows, n_rows, "Float64"))
    top1 = [s.topk_ids[:, 0].cpu().numpy() for s in (stats.model, stats.reference)]
    pieces = decode_pieces(tokenizer, np.concatenate(top1 + [s.topk_ids.cpu().numpy().ravel()
                                                             for s in (stats.model, stats.reference)]))
    columns["top1_agree"] = _place(top1[0] == top1[1], rows, n_rows, "boolean")
    for prefix, side, ids in (("", stats.model, top1[0]), ("ref_", stats.reference, top1[1])):
        columns.update(_side_columns(side, prefix, rows, n_rows, pieces))
        columns[f"{prefix}top1_token"] = _place_objects([pieces[i] for i in ids], rows, n_rows)
    return columns


def _side_columns(stats, prefix: str, rows: np.ndarray, n_rows: int, pieces: dict) -> dict:
    logprob = stats.target_logprob.double().cpu().numpy()
    values = {"entropy": stats.entropy.double().cpu().numpy(), "surprisal": -logprob, "target_logprob": logprob}
    columns = {f"{prefix}{name}": _place(v, rows, n_rows, "Float64") for name, v in values.items()}
    columns[f"{prefix}rank"] = _place(stats.target_rank.cpu().numpy(), rows, n_rows, "Int64")
    ids, probs = stats.topk_ids.cpu().numpy(), stats.topk_probs.double().cpu().numpy()
    columns[f"{prefix}topk_ids"] = _place_objects([row.tolist() for row in ids], rows, n_rows)
    columns[f"{prefix}topk_tokens"] = _place_objects([[pieces[i] for i in row] for row in ids], rows, n_rows)
    columns[f"{prefix}topk_probs"] = _place_objects([row.tolist() for row in probs], rows, n_rows)
    return columns


def _place(values: np.ndarray, rows: np.ndarray, n_rows: int, dtype: str) -> pd.array:
    """values [N] at `rows` of a nullable column of n_rows, <NA> elsewhere."""
    out = pd.array([pd.NA] * n_rows, dtype=dtype)
    out[rows] = values
    return out


def _place_objects(values: list, rows: np.ndarray, n_rows: int) -> list:
    out = [None] * n_rows
    for row, value in zip(rows.tolist(), values):
        out[row] = value
    return out
