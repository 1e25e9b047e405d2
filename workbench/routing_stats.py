"""Routing statistics over a text or a corpus of runs: expert load and imbalance,
inter-layer expert affinity, token-id specialization, routing stability.

Pure functions on the arrays of the `routing` signal (see `workbench.signals.routing`):
expert ids [m, T, k] with m the MoE layers, and the top-1 trace [T, m] (a token's top-1
expert at each MoE layer). Every count is a `np.bincount` over flattened indices, so
a corpus of many runs costs one pass over its tokens.

    import workbench.routing_stats as rs
    rs.expert_load(run.arrays["routing_expert_ids"], n_experts)   # [m, E]
    rs.affinity(rs.trace(run), n_experts)                         # [m-1, E, E]
    rs.specialization_by([run1, run2, ...], by="token_id")        # OpenMoE's table
    rs.routing_stability(run_a, run_b)                            # per MoE layer
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from .errors import WorkbenchError

if TYPE_CHECKING:
    from .results.run import Run


def _routing_of(run: "Run") -> dict:
    if "routing_expert_ids" not in run.arrays:
        raise WorkbenchError("this run has no routing; analyze an MoE model with signals=['routing']")
    return run.arrays


def n_experts(run: "Run") -> int:
    """Number of routed experts per MoE layer (E)."""
    return int(_routing_of(run)["routing_logits"].shape[-1])


def trace(run: "Run") -> np.ndarray:
    """Top-1 expert of every token at every MoE layer, [T, m] int64."""
    return np.ascontiguousarray(_routing_of(run)["routing_expert_ids"][:, :, 0].T)


def expert_load(expert_ids: np.ndarray, n_experts: int) -> np.ndarray:
    """Expert load per layer: the fraction of tokens routed to each expert (in any of their
    k slots). expert_ids [m, T, k] -> load [m, E]; each row sums to k. Top-1 load: pass
    expert_ids[..., :1]."""
    m, tokens, _ = expert_ids.shape
    flat = (np.arange(m)[:, None, None] * n_experts + expert_ids).ravel()
    return np.bincount(flat, minlength=m * n_experts).reshape(m, n_experts) / tokens


def load_imbalance(load: np.ndarray) -> np.ndarray:
    """Load imbalance per layer, max / mean of the experts' loads [m, E] -> [m]: 1 for a
    perfectly balanced layer, at most E / k under top-k routing (loads sum to k, so their mean
    is k / E, and one expert's load is at most 1: it is among the k of every token)."""
    return load.max(axis=-1) / load.mean(axis=-1)


def affinity(trace: np.ndarray, n_experts: int) -> np.ndarray:
    """Inter-layer expert affinity (ExFlow, Yao et al. 2024): P(expert e' at MoE layer l+1 |
    expert e at layer l), counted over the top-1 trace [N tokens, m layers] -> [m-1, E, E]
    (rows e, columns e'). Rows of experts that no token chose at layer l are NaN.
    [trace ((0,1),(0,1),(0,0),(1,1),(1,0),(1,1)) -> ((1/3, 2/3), (1/3, 2/3))]"""
    trace = np.asarray(trace, dtype=np.int64)
    tokens, m = trace.shape
    pairs = (np.arange(m - 1) * n_experts + trace[:, :-1]) * n_experts + trace[:, 1:]  # [N, m-1]
    counts = np.bincount(pairs.ravel(), minlength=(m - 1) * n_experts * n_experts)
    counts = counts.reshape(m - 1, n_experts, n_experts).astype(np.float64)
    totals = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return counts / totals


def specialization(keys: np.ndarray, experts: np.ndarray, n_experts: int, min_count: int = 1) -> pd.DataFrame:
    """Routing specialization (OpenMoE, Xue et al. 2024): for each key (a token id, or a
    position) seen at least `min_count` times, the share of its occurrences routed to each
    expert, and `std`, the population standard deviation of those shares: 0 when the key is
    spread evenly over the experts, largest when it always goes to one expert.
    keys, experts: [N] (one entry per occurrence; experts = the top-1 at one layer).
    Rows sorted by key. [routes (1,1,1,3) of 4 experts -> (0, .75, 0, .25), std .306]"""
    keys, experts = np.asarray(keys, dtype=np.int64), np.asarray(experts, dtype=np.int64)
    unique, index = np.unique(keys, return_inverse=True)
    counts = np.bincount(index * n_experts + experts, minlength=len(unique) * n_experts).reshape(-1, n_experts)
    return specialization_of_counts(unique, counts, min_count)


def specialization_of_counts(keys: np.ndarray, counts: np.ndarray, min_count: int = 1) -> pd.DataFrame:
    """`specialization` from counts already made: keys [K] sorted, counts [K, E] (how often
    each key went to each expert), for corpora counted shard by shard."""
    n_experts = counts.shape[1]
    totals = counts.sum(axis=1)
    shares = counts / totals[:, None]
    table = pd.DataFrame(shares, index=pd.Index(keys, name="key"), columns=[f"expert_{e}" for e in range(n_experts)])
    table.insert(0, "count", totals)
    table["top_expert"] = shares.argmax(axis=1)
    table["top_share"] = shares.max(axis=1)
    table["std"] = shares.std(axis=1)
    return table[table["count"] >= min_count]


def specialization_by(runs: "Run | Sequence[Run]", *, by: str = "token_id", moe_layer: int = -1,
                      min_count: int = 3, position_bin: int = 1) -> pd.DataFrame:
    """`specialization` over runs at one MoE layer (an index into the run's MoE layers;
    -1 the last), grouping occurrences by token id (`by="token_id"`, with a `token` column)
    or by position (`by="position"`, positions grouped in bins of `position_bin`). OpenMoE's
    finding is that routing follows the token id more than its position or context: compare
    the mean `std` of the two tables (`specialization_contrast`)."""
    runs = [runs] if hasattr(runs, "arrays") else list(runs)
    if by not in ("token_id", "position"):
        raise WorkbenchError(f"by must be 'token_id' or 'position', got {by!r}")
    if position_bin < 1:
        raise WorkbenchError(f"position_bin must be >= 1, got {position_bin}")
    sizes = {n_experts(run) for run in runs}
    if len(sizes) != 1:
        raise WorkbenchError(f"the runs route over different numbers of experts {sorted(sizes)}; use runs of one model")
    experts = np.concatenate([trace(run)[:, moe_layer] for run in runs])
    if by == "token_id":
        keys = np.concatenate([run.table["token_id"].to_numpy(np.int64) for run in runs])
    else:
        keys = np.concatenate([run.table["position"].to_numpy(np.int64) // position_bin for run in runs])
    table = specialization(keys, experts, sizes.pop(), min_count)
    if by == "token_id":
        pieces = pd.concat([run.table[["token_id", "token"]] for run in runs]).drop_duplicates("token_id")
        table.insert(0, "token", pieces.set_index("token_id")["token"].reindex(table.index).to_numpy())
        table.index.name = "token_id"
    else:
        table.index = pd.Index(table.index * position_bin, name="position")
    return table


def specialization_contrast(runs: "Run | Sequence[Run]", *, moe_layer: int = -1, min_count: int = 3,
                            position_bin: int = 1) -> dict:
    """Mean specialization `std` of the token-id groups and of the position groups at one
    MoE layer, with the number of groups behind each. A higher token-id value than position
    value means routing follows the token rather than where it stands. Shares estimated
    from few occurrences are noisy, which raises their std even under random routing:
    compare groups of similar sizes (`min_count`, `position_bin`)."""
    out = {}
    for by in ("token_id", "position"):
        table = specialization_by(runs, by=by, moe_layer=moe_layer, min_count=min_count, position_bin=position_bin)
        out[by] = {"mean_std": float(table["std"].mean()) if len(table) else float("nan"), "groups": len(table)}
    return out


def top1_changes(trace_a: np.ndarray, trace_b: np.ndarray) -> np.ndarray:
    """Share of tokens whose top-1 expert differs between two traces [T, m] -> [m]."""
    if trace_a.shape != trace_b.shape:
        raise WorkbenchError(f"routing traces differ in shape {trace_a.shape} vs {trace_b.shape}")
    return (trace_a != trace_b).mean(axis=0)


def routing_stability(run_a: "Run", run_b: "Run", *, align: str = "same") -> pd.Series:
    """Routing stability between two runs: the share of tokens whose top-1 expert changes,
    per MoE layer (index: model layer), e.g. the same text under two checkpoints.
    align="same" needs the same tokens in both runs; align="suffix" compares the longest
    common suffix of tokens, e.g. one sentence after two different contexts (does routing
    depend on the token or on its context?)."""
    layers_a, layers_b = _routing_of(run_a)["routing_layers"], _routing_of(run_b)["routing_layers"]
    if not np.array_equal(layers_a, layers_b):
        raise WorkbenchError(f"the runs have different MoE layers ({layers_a.tolist()} vs {layers_b.tolist()})")
    ids_a, ids_b = run_a.table["token_id"].to_numpy(), run_b.table["token_id"].to_numpy()
    trace_a, trace_b = trace(run_a), trace(run_b)
    if align == "same":
        if not np.array_equal(ids_a, ids_b):
            raise WorkbenchError("the runs have different tokens; analyze the same text, or pass align='suffix' "
                                 "to compare a common ending")
    elif align == "suffix":
        reversed_equal = ids_a[::-1][: min(len(ids_a), len(ids_b))] == ids_b[::-1][: min(len(ids_a), len(ids_b))]
        common = len(reversed_equal) if reversed_equal.all() else int(np.argmin(reversed_equal))
        if common == 0:
            raise WorkbenchError("the runs end with different tokens: no common suffix to compare")
        trace_a, trace_b = trace_a[-common:], trace_b[-common:]
    else:
        raise WorkbenchError(f"align must be 'same' or 'suffix', got {align!r}")
    return pd.Series(top1_changes(trace_a, trace_b), index=pd.Index(layers_a, name="layer"), name="top1_changed")
