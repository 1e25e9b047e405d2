"""Token priorities that need no gradient: DPO's implicit token reward and D^3S priority.

- Implicit token reward (Rafailov et al. 2024, "From r to Q*: Your Language Model is
  Secretly a Q-Function"): r_t = beta * log(pi(y_t | ...) / pi_ref(y_t | ...)) between a
  policy and its reference model, on the same tokens.
  [beta .1, pi (.5, .9, .2), ref (.25, .9, .4) -> (.0693, 0, -.0693)]
- D^3S token priority (Dynamic Dual-Level Down-Sampling for GRPO, 2025): at the token level,
  tokens are ranked by |A_i| * H_t, the response's advantage magnitude times the token's
  entropy, and the highest-priority ones carry the policy gradient.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import WorkbenchError
from ..model.handle import Model
from ..model.vocabulary import check_same_vocabulary
from ..results.group import Group
from .forward import token_logprobs


def implicit_token_reward(logprob_policy, logprob_reference, beta: float = 0.1) -> np.ndarray:
    """r_t = beta * (log pi(y_t) - log pi_ref(y_t)), elementwise."""
    return beta * (np.asarray(logprob_policy, dtype=np.float64) - np.asarray(logprob_reference, dtype=np.float64))


def implicit_reward(policy: Model, reference: Model, group: Group, *, beta: float = 0.1) -> pd.Series:
    """The implicit token reward of every response token of `group`, both models scoring the
    group's prompt and responses by teacher forcing. A Series named "implicit_reward"."""
    if beta <= 0:
        raise WorkbenchError(f"beta must be positive, got {beta}")
    check_same_vocabulary(policy, reference, "the implicit reward")
    values = implicit_token_reward(token_logprobs(policy, group), token_logprobs(reference, group), beta)
    series = pd.Series(values, index=group.table.index, name="implicit_reward")
    series.attrs = {"beta": beta, "policy": policy.name, "reference": reference.name}
    return series


def d3s_priority(group: Group, *, entropy: str = "entropy") -> pd.Series:
    """|A_i| * H_t per token, from the table's advantage and `entropy` columns. A Series
    named "d3s"."""
    table = group.table
    if entropy not in table:
        raise WorkbenchError(f"the group's table has no '{entropy}' column")
    values = np.abs(table["advantage"].to_numpy(float)) * table[entropy].to_numpy(float)
    return pd.Series(values, index=table.index, name="d3s")
