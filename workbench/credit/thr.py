"""Token Hidden Reward (Deng et al. 2025, "Token Hidden Reward: Steering Exploration-
Exploitation in Group Relative Deep Reinforcement Learning").

For a group with advantages A_j and correct responses C (reward > threshold):

    THR(j,k) = (A_j / |y_j|) * < grad log pi(y_j,k | x, y_j,<k), g_C >,
    g_C      = sum_{i in C} grad log pi(y_i | x) / |y_i|,   log pi(y_i | x) = sum_l log pi(y_i,l | ...)

the first-order change of F = sum_{i in C} log pi(y_i | x) / |y_i| (the correct responses'
mean log-likelihood) caused by an SGD step on token (j,k)'s GRPO loss -(A_j/|y_j|) log pi(y_j,k):
with learning rate eta, F changes by eta * THR(j,k) + O(eta^2). Positive THR: the update
makes correct answers more likely (exploitation); negative: less (exploration).

exact  g_C by one backward pass; then <grad log pi(y_n), g_C> for every token n at once by one
       forward-mode JVP along g_C (`torch.func.jvp`), with eager attention and eager MoE
       experts (SDPA / flash / grouped-mm kernels have no forward-mode derivative), restored
       afterwards. Where the model's eager path cannot run forward-mode AD, a central
       difference along g_C takes its place (`method="difference"`, fp32 or wider).
       `params` restricts both to a subset of the parameters on large models.
cheap  the paper's hidden-state approximation: gradients w.r.t. the last layer only, where
       grad_W log pi(y | h) = (e_y - p) h^T, so
       < grad log pi(y_n), grad log pi(y_m) > = < e_yn - p_n, e_ym - p_m > * < h_n, h_m >,
       the vocabulary restricted to the tokens present in the group (`vocabulary="all"`:
       the whole vocabulary, which equals the exact THR over the lm_head weight alone).

`reweighted_advantages`: the THR-guided preview A'(j,k) = A_j (1 + p sign(THR(j,k))),
p > 0 favours exploitation, p < 0 exploration.
"""
from __future__ import annotations

import math
import re
from contextlib import contextmanager
import numpy as np
import pandas as pd
import torch
from torch.func import functional_call, grad, jvp

from ..errors import MemoryEstimateExceeded, WorkbenchError
from ..forward import memory
from ..kernels.linear_vocab_stats import chunk_rows
from ..kernels.vocab_stats import row_blocks
from ..model.handle import Model
from ..results.group import Group
from .forward import ResponseLogprobs, chunks, response_batch, response_hidden

MODES = ("auto", "exact", "cheap")
METHODS = ("auto", "jvp", "difference")


def token_hidden_reward(model: Model, group: Group, *, mode: str = "exact", params=None, method: str = "auto",
                        threshold: float = 0.0, vocabulary: str = "group", batch_size: int | None = None) -> pd.Series:
    """THR of every response token, aligned with `group.table` (a Series named "thr"; its
    `attrs` record the mode, method and parameter count used).

    mode: "exact", "cheap" or "auto" (exact when its memory estimate fits, else cheap).
    params (exact): which parameters count: None (all), a regex searched in parameter
    names ("lm_head|layers\\.29\\."), a list of names, or a callable name -> bool.
    method (exact): "jvp", "difference", or "auto" (jvp, falling back to the difference
    when the model's eager path has no forward-mode derivative).
    threshold: responses with reward > threshold form the correct set C.
    vocabulary (cheap): "group" (tokens present in the group) or "all".
    batch_size: responses per forward (default: all at once).
    """
    if mode not in MODES:
        raise WorkbenchError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "auto":
        try:
            return token_hidden_reward(model, group, mode="exact", params=params, method=method,
                                       threshold=threshold, batch_size=batch_size)
        except MemoryEstimateExceeded:
            return token_hidden_reward(model, group, mode="cheap", threshold=threshold, vocabulary=vocabulary)
    correct = group.correct(threshold)
    lengths = group.lengths()
    if mode == "exact":
        values, attrs = _exact(model, group, correct, lengths, params, method, batch_size)
    else:
        values, attrs = _cheap(model, group, correct, lengths, vocabulary)
    series = pd.Series(values, index=group.table.index, name="thr", dtype="float64")
    series.attrs = {"mode": mode, "threshold": threshold, "n_correct": int(correct.sum()), **attrs}
    return series


def _token_coefficients(group: Group, index: pd.Index, lengths: np.ndarray) -> torch.Tensor:
    """A_j / |y_j| for the table rows `index`."""
    responses = group.table.loc[index, "response"].to_numpy()
    return torch.from_numpy(group.advantages[responses] / lengths[responses])


# ----- exact ---------------------------------------------------------------------------------
def select_parameters(model: Model, params=None) -> dict[str, torch.Tensor]:
    """The chosen parameters, by the names `named_parameters()` gives (a tied weight once,
    under its first name; either of its names selects it)."""
    canonical = dict(model.hf.named_parameters())
    name_of = {id(tensor): name for name, tensor in canonical.items()}
    aliases = {name: name_of[id(tensor)] for name, tensor in model.hf.named_parameters(remove_duplicate=False)}
    if params is None:
        chosen = list(canonical)
    elif isinstance(params, str):
        try:
            pattern = re.compile(params)
        except re.error as error:
            raise WorkbenchError(f"params: invalid regex {params!r}: {error}") from None
        chosen = [aliases[name] for name in aliases if pattern.search(name)]
    elif callable(params):
        chosen = [aliases[name] for name in aliases if params(name)]
    else:
        unknown = [name for name in params if name not in aliases]
        if unknown:
            raise WorkbenchError(f"params: no parameter named {unknown[0]!r}; names look like "
                                 f"{', '.join(list(canonical)[:3])}, ...")
        chosen = [aliases[name] for name in params]
    chosen = list(dict.fromkeys(chosen))
    if not chosen:
        raise WorkbenchError(f"params {params!r} selects no parameter; names look like "
                             f"{', '.join(list(canonical)[:3])}, ...")
    return {name: canonical[name].detach() for name in chosen}


def _exact(model, group, correct, lengths, params, method, batch_size):
    if method not in METHODS:
        raise WorkbenchError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    selected = select_parameters(model, params)
    n_params = sum(t.numel() for t in selected.values())
    attrs = {"params": n_params}
    values = np.zeros(len(group.table))
    movers = [j for j in range(len(group)) if group.advantages[j] != 0 and lengths[j] > 0]
    if not correct.any() or not movers:  # g_C = 0 or every A_j = 0: THR = 0
        return values, dict(attrs, method="none (no correct response or all advantages zero)")
    _check_exact_memory(model, group, n_params, batch_size)
    scorer = ResponseLogprobs(model)
    named = {f"hf.{name}": tensor for name, tensor in selected.items()}

    def logprobs(parameters, batch):
        return functional_call(scorer, parameters, ResponseLogprobs.inputs(batch))

    g_correct = {name: torch.zeros_like(tensor) for name, tensor in named.items()}  # g_C
    with torch.no_grad():
        for responses in chunks(np.flatnonzero(correct).tolist(), batch_size):
            batch = response_batch(model, group, responses)
            weights = torch.from_numpy(1.0 / lengths[group.table.loc[batch.index, "response"].to_numpy()])
            weights = weights.to(model.device, torch.promote_types(model.dtype, torch.float32))

            def objective(parameters):
                return (logprobs(parameters, batch) * weights).sum()

            for name, part in grad(objective)(named).items():
                g_correct[name] += part

        method_used = method
        for responses in chunks(movers, batch_size):
            batch = response_batch(model, group, responses)
            tangent, method_used = _directional(model, logprobs, named, g_correct, batch, method_used)
            coefficients = _token_coefficients(group, batch.index, lengths)
            values[group.table.index.get_indexer(batch.index)] = (coefficients * tangent.double().cpu()).numpy()
    return values, dict(attrs, method=method_used)


def _directional(model, logprobs, named, direction, batch, method):
    """<grad log pi(y_n), direction> for every scored token of `batch` [N], and the method
    that computed it."""
    if method in ("auto", "jvp"):
        try:
            with eager_kernels(model):
                _, tangent = jvp(lambda parameters: logprobs(parameters, batch), (named,), (direction,))
            return tangent, "jvp"
        except (NotImplementedError, RuntimeError) as error:
            if method == "jvp" or isinstance(error, torch.OutOfMemoryError):
                raise
    if torch.finfo(model.dtype).bits < 32:
        raise WorkbenchError(f"the central difference along g_C needs fp32 or wider weights, and {model.name} "
                             f"is in {model.dtype}; load it with dtype='float32' or use mode='cheap'")
    norm_direction = math.sqrt(sum(float((d.double() ** 2).sum()) for d in direction.values()))
    norm_weights = math.sqrt(sum(float((t.double() ** 2).sum()) for t in named.values()))
    step = torch.finfo(model.dtype).eps ** (1 / 3) * max(norm_weights, 1.0) / max(norm_direction, 1e-30)
    plus = logprobs({k: t + step * direction[k] for k, t in named.items()}, batch)
    minus = logprobs({k: t - step * direction[k] for k, t in named.items()}, batch)
    return (plus - minus) / (2 * step), "difference"


@contextmanager
def eager_kernels(model: Model):
    """Eager attention and eager MoE experts while inside (forward-mode AD runs through them),
    the model's own implementations restored afterwards."""
    hf, config = model.hf, model.hf.config
    attention = config._attn_implementation
    experts = getattr(config, "_experts_implementation", None)
    try:
        if attention != "eager":
            hf.set_attn_implementation("eager")
        if experts not in (None, "eager"):
            hf.set_experts_implementation("eager")
        yield
    finally:
        if config._attn_implementation != attention:
            hf.set_attn_implementation(attention)
        if experts not in (None, "eager") and getattr(config, "_experts_implementation", None) != experts:
            hf.set_experts_implementation(experts)


def exact_bytes(model: Model, n_params: int, rows: int, length: int) -> int:
    """Memory of the exact mode: g_C and one more parameter-sized tensor (the tangent of
    each parameter, or the perturbed weights of the difference), the backward pass's saved
    activations of every layer for `rows` sequences of `length` tokens (the forward-mode
    pass carries a tangent beside each activation, which is less), and a few [N, V]
    log-softmax tensors."""
    element = torch.finfo(model.dtype).bits // 8
    tokens = rows * length
    activations = model.n_layers * memory.forward_bytes(model, tokens)
    return 2 * n_params * element + activations + 3 * tokens * model.vocab_size * 4


def _check_exact_memory(model, group, n_params, batch_size):
    rows = min(batch_size or len(group), len(group))
    length = len(group.prompt_ids) + int(group.lengths().max())
    memory.check_fits(f"exact THR ({n_params / 1e6:.1f}M parameters, {rows} responses of up to {length} tokens)",
                      exact_bytes(model, n_params, rows, length), model.device,
                      "restrict it with params= (e.g. params='lm_head|layers\\.\\d+\\.mlp'), a smaller batch_size, "
                      "or use mode='cheap'")


# ----- cheap -------------------------------------------------------------------------------
def _cheap(model, group, correct, lengths, vocabulary):
    if vocabulary not in ("group", "all"):
        raise WorkbenchError(f"vocabulary must be 'group' or 'all', got {vocabulary!r}")
    values = np.zeros(len(group.table))
    if not correct.any() or not group.advantages.any():
        return values, {"vocabulary": vocabulary}
    batch = response_batch(model, group, range(len(group)))
    kept = (torch.from_numpy(np.unique(group.table["token_id"].to_numpy())) if vocabulary == "group"
            else torch.arange(model.vocab_size))  # S
    dtype = torch.float64
    memory.check_fits(f"cheap THR over {len(batch.index)} tokens x {len(kept)} vocabulary entries",
                      4 * len(batch.index) * (len(kept) + model.hidden_size) * 8, model.device,
                      "use vocabulary='group'")
    with torch.inference_mode():
        hidden = response_hidden(model, batch)  # [N, d]
        kept = kept.to(model.device)
        probs = []  # p restricted to S, [N, |S|]
        for block in row_blocks(len(hidden), chunk_rows(model.vocab_size)):
            logits = model.adapter.logits(model.hf, hidden[block]).to(dtype)
            probs.append((logits[:, kept] - torch.logsumexp(logits, -1, keepdim=True)).exp())
        p = torch.cat(probs)
        h = hidden.to(dtype)
        d = -p  # e_y - p over S
        d[torch.arange(len(d)), torch.searchsorted(kept, batch.targets)] += 1.0
        responses = group.table.loc[batch.index, "response"].to_numpy()
        weights = torch.from_numpy(np.where(correct[responses], 1.0 / lengths[responses], 0.0)).to(h)  # 1/|y_i| on C
        gradient = d.T @ (weights[:, None] * h)  # [|S|, d]: grad_W F restricted to S
        inner = ((d @ gradient) * h).sum(-1)  # <e_yn - p_n, .> <h_n, .> summed over C's tokens
        coefficients = _token_coefficients(group, batch.index, lengths).to(inner)
        values[group.table.index.get_indexer(batch.index)] = (coefficients * inner).cpu().numpy()
    return values, {"vocabulary": vocabulary, "vocabulary_size": len(kept)}


# ----- using THR ---------------------------------------------------------------------------
def reweighted_advantages(group: Group, p: float, *, column: str = "thr") -> pd.Series:
    """THR-guided reweighting preview: A'(j,k) = A_j (1 + p sign(THR(j,k))); p > 0 amplifies
    tokens that raise the correct answers' likelihood (exploit), p < 0 those that lower it
    (explore). A Series named "advantage_thr" aligned with the table."""
    if column not in group.table:
        raise WorkbenchError(f"the group's table has no '{column}' column; compute it with token_hidden_reward")
    table = group.table
    values = table["advantage"].to_numpy(float) * (1.0 + p * np.sign(table[column].to_numpy(float)))
    return pd.Series(values, index=table.index, name="advantage_thr")


def sign_agreement(reference, other, top: int = 20) -> float:
    """Among the `top` tokens with the largest |reference|, the share where `other` has the
    same sign (tokens where reference is 0 are left out)."""
    reference, other = np.asarray(reference, float), np.asarray(other, float)
    order = np.argsort(-np.abs(reference), kind="stable")
    order = [i for i in order if reference[i] != 0][:top]
    if not order:
        raise WorkbenchError("no token has a non-zero reference value")
    return float(np.mean(np.sign(reference[order]) == np.sign(other[order])))


__all__ = ["eager_kernels", "exact_bytes", "reweighted_advantages", "select_parameters", "sign_agreement",
           "token_hidden_reward"]
