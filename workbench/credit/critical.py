"""Critical tokens: the tokens of an incorrect response that the failure hinges on.

Contrastive estimation (cDPO, Lin et al. 2024, "Critical Tokens Matter"): with a positive
model (one that tends to answer correctly) and a negative one (tends to fail), the score of
token y_t is

    s_t = softmax((1 + beta) z_pos - beta z_neg)[y_t],   beta = 1,

and its cDPO weight in an incorrect response is 1 - s_t: a token the positive model would
not have produced (low s_t) is likely critical.
[p_pos = (.7, .2, .1), p_neg = (.2, .7, .1): s = (.9397, .0219, .0384), weights (.060, .978, .962)]
Positive and negative may be two models with one tokenizer, or one model under two prompts
(contrastive prompting: pass (model, prompt) pairs).

Rollout definition: for an incorrect response y, sample n completions after each prefix
y_<=t and count the correct ones c_t; the critical token ends the shortest prefix with
c_t = 0. The success rate c_t / n along the response shows where the answer was lost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..decoding.engine import decode, seeded_generator
from ..errors import WorkbenchError, check_positive_int
from ..kernels import divergence, linear_divergence
from ..model.handle import Model
from ..model.vocabulary import check_same_vocabulary
from ..results.group import Group
from ..rewards import as_reward
from ..samplers import Sampler
from ..tokens import prompt_tokens
from .forward import response_batch, response_hidden, response_logits


def cdpo_scores(z_positive: torch.Tensor, z_negative: torch.Tensor, targets: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """s_t = softmax((1 + beta) z_pos - beta z_neg)[y_t] [T] (fp32) for logits [T, V] and
    targets [T]: the contrastive score of `kernels.divergence` (Triton on CUDA)."""
    return divergence(z_positive, z_negative, targets, beta=beta, js=False).contrastive


def _scorer(group: Group, spec) -> tuple[Model, list[int] | None]:
    """A Model (scores under the group's own prompt) or a (Model, prompt) pair: a prompt
    string (sent as the group's prompt was: through the chat template or as raw text) or
    chat messages."""
    if isinstance(spec, Model):
        return spec, None
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], Model):
        model, prompt = spec
        if isinstance(prompt, str):
            return model, prompt_tokens(model.tokenizer, prompt, None, group.meta.get("chat")).ids
        return model, prompt_tokens(model.tokenizer, None, prompt, None).ids
    raise WorkbenchError("positive and negative must each be a Model or a (Model, prompt) pair")


def contrastive_critical_tokens(group: Group, positive, negative, *, beta: float = 1.0,
                                responses: Sequence[int] | None = None) -> pd.DataFrame:
    """cDPO scores s_t and weights 1 - s_t of the tokens of `responses` (default: the
    incorrect ones, reward <= 0), aligned with the group's table (NaN elsewhere).

    positive, negative: a Model, or (Model, prompt) to score the responses after another
    prompt (e.g. one model told to answer carefully vs. told to answer carelessly).
    """
    if beta < 0:
        raise WorkbenchError(f"beta must be >= 0, got {beta}")
    positive_model, positive_prompt = _scorer(group, positive)
    negative_model, negative_prompt = _scorer(group, negative)
    shared = check_same_vocabulary(positive_model, negative_model, "contrastive estimation")
    if positive_model is negative_model and positive_prompt == negative_prompt:
        raise WorkbenchError("positive and negative are the same model under the same prompt; "
                             "give two models or two prompts")
    responses = np.flatnonzero(~group.correct()).tolist() if responses is None else list(responses)
    scores = pd.Series(np.nan, index=group.table.index)
    for response in responses:
        s, index = _response_cdpo(group, response, (positive_model, positive_prompt),
                                  (negative_model, negative_prompt), shared, beta)
        scores[index] = s.double().cpu().numpy()
    frame = pd.DataFrame({"cdpo_score": scores, "cdpo_weight": 1.0 - scores})
    frame.attrs = {"beta": beta, "positive": positive_model.name, "negative": negative_model.name}
    return frame


def _response_cdpo(group: Group, response: int, positive, negative, shared: int, beta: float):
    """cDPO scores [T] of one response's tokens and their table rows. From the two models'
    final hidden states through `kernels.linear_divergence` (no [T, V] logits) when both
    lm_heads are plain linear layers on one device; else from their logits."""
    (p_model, p_prompt), (q_model, q_prompt) = positive, negative
    heads = p_model.adapter.head(p_model.hf), q_model.adapter.head(q_model.hf)
    if None in heads or p_model.device != q_model.device:
        z_positive, index = response_logits(p_model, group, response, prompt_ids=p_prompt)
        z_negative, _ = response_logits(q_model, group, response, prompt_ids=q_prompt)
        targets = torch.tensor(group.table.loc[index, "token_id"].to_numpy(), device=z_positive.device)
        return cdpo_scores(z_positive[:, :shared], z_negative[:, :shared].to(z_positive.device), targets, beta), index
    p_batch = response_batch(p_model, group, [response], p_prompt)
    q_batch = response_batch(q_model, group, [response], q_prompt)
    (w_p, b_p, cap_p), (w_q, b_q, cap_q) = heads
    b_p, b_q = (None if bias is None else bias[:shared] for bias in (b_p, b_q))
    targets = torch.tensor(group.table.loc[p_batch.index, "token_id"].to_numpy(), device=p_model.device)
    with torch.inference_mode():
        hidden_p, hidden_q = response_hidden(p_model, p_batch), response_hidden(q_model, q_batch)  # [T, d]
        scores = linear_divergence(hidden_p, w_p[:shared], hidden_q, w_q[:shared], targets, bias_p=b_p, bias_q=b_q,
                                   softcap_p=cap_p, softcap_q=cap_q, beta=beta, js=False).contrastive
    return scores, p_batch.index


# ----- rollout definition ----------------------------------------------------------------------
@dataclass
class CriticalTokens:
    """Result of the rollout definition for one response."""

    response: int
    n: int  # completions per prefix
    positions: np.ndarray  # evaluated prefixes, by the position of their last token
    correct: np.ndarray  # c_t: correct completions after each evaluated prefix
    critical: int | None  # position of the critical token (None: no prefix with c_t = 0 found)
    exact: bool  # every prefix evaluated (the definition) rather than a bisection
    baseline: float  # success rate from the prompt alone: the group's share of correct responses
    index: pd.Index  # the response's table rows, by position

    @property
    def success_rate(self) -> np.ndarray:
        return self.correct / self.n

    def columns(self) -> pd.DataFrame:
        """`success_rate` (c_t / n; NaN where not evaluated) and `critical` (True at the
        critical token) for this response's table rows, for `group.add`."""
        rate = np.full(len(self.index), np.nan)
        rate[self.positions] = self.success_rate
        critical = np.zeros(len(self.index), dtype=bool)
        if self.critical is not None:
            critical[self.critical] = True
        return pd.DataFrame({"success_rate": rate, "critical": pd.array(critical, dtype="boolean")}, index=self.index)


def find_critical(evaluate: Callable[[list[int]], list[int]], length: int, budget: int | None = None,
                  per_round: int = 1):
    """The shortest prefix with c = 0 among prefixes ending at positions 0..length-1.

    evaluate(positions) -> c for each. budget None (or >= length): every prefix, in one
    call: the definition. Otherwise at most `budget` prefixes: first the whole response,
    then rounds that each evaluate `per_round` prefixes evenly spaced inside the bracket
    (last prefix known to succeed, first known to fail), the prompt taken as succeeding
    (per_round = 1: bisection). This finds a position where c drops to 0 right after a
    prefix with c > 0, which is the critical token when c falls monotonically along the
    response. Returns ({position: c}, critical or None when the budget ran out first, exact).
    """
    counts: dict[int, int] = {}

    def ask(positions):
        positions = [p for p in positions if p not in counts]
        if positions:
            counts.update(zip(positions, (int(c) for c in evaluate(positions))))

    if budget is None or budget >= length:
        ask(list(range(length)))
        zeros = [p for p in range(length) if counts[p] == 0]
        return counts, (zeros[0] if zeros else None), True
    if budget < 1 or per_round < 1:
        raise WorkbenchError(f"budget and per_round must be at least 1 prefix, got {budget} and {per_round}")
    ask([length - 1])
    if counts[length - 1] > 0:
        return counts, None, False
    low, high, left = -1, length - 1, budget - 1
    while high - low > 1 and left > 0:
        k = min(per_round, left, high - low - 1)
        points = sorted({low + round(i * (high - low) / (k + 1)) for i in range(1, k + 1)} - {low, high})
        ask(points)
        left -= len(points)
        zeros = [p for p in points if counts[p] == 0]
        high = zeros[0] if zeros else high
        low = max([p for p in points if p < high] + [low])
    return counts, (high if high - low == 1 else None), False


def rounds_plan(length: int, budget: int, capacity: int) -> int:
    """Prefixes per round so that `budget` prefixes (one spent on the whole response) narrow
    a bracket of `length` positions to one in as few rounds as possible, at most `capacity`
    per round (what one batch holds); 1 (bisection) when the budget cannot narrow it fully."""
    left = budget - 1
    for rounds in range(1, max(left, 0) + 1):
        k = min(capacity, left // rounds)
        if k >= 1 and (k + 1) ** rounds >= length:
            return k
    return 1


def rollout_critical_tokens(model: Model, group: Group, response: int, *, n: int = 8, reward=None,
                            sampler: Sampler | None = None, max_new_tokens: int | None = None,
                            budget: int | None = None, seed: int | None = None, threshold: float = 0.0,
                            batch_rows: int = 64, progress: bool = True) -> CriticalTokens:
    """Success rate after every prefix of `response` and its critical token.

    reward: the group's own (kept by `rollouts`; needed again after `Group.load`) unless
    given. n: completions per prefix. max_new_tokens: per completion (default: the group's).
    budget: at most this many prefixes, searched in as few sampling rounds as the budget
    allows (see `find_critical`); None: all (the definition). batch_rows: completions
    sampled together.
    """
    reward = as_reward(reward if reward is not None else _group_reward(group))
    ids = group.response_ids(response)
    if not ids:
        raise WorkbenchError(f"response {response} has no tokens")
    check_positive_int(n, "n")
    max_new_tokens = max_new_tokens or int(group.meta.get("max_new_tokens", 64))
    sampler = sampler or Sampler()
    generator = seeded_generator(model.device, seed)
    eos, prompt = set(model.eos_ids), group.prompt_ids
    per_batch = max(1, batch_rows // n)
    bar = tqdm(total=len(ids) if budget is None else min(budget, len(ids)), desc="critical tokens",
               unit="prefix", disable=not progress, leave=False)

    def correct(token_ids) -> bool:
        body = token_ids[:-1] if token_ids and token_ids[-1] in eos else token_ids
        return reward(model.tokenizer.decode(body, clean_up_tokenization_spaces=False)) > threshold

    def evaluate(positions: list[int]) -> list[int]:
        counts = {}
        open_positions = []
        for position in positions:
            if ids[position] in eos:  # the response ended here: nothing to complete
                counts[position] = n * correct(ids[:position + 1])
            else:
                open_positions.append(position)
        for begin in range(0, len(open_positions), per_batch):
            part = open_positions[begin:begin + per_batch]
            drawn = decode(model, [prompt + ids[:p + 1] for p in part], n=n, sampler=sampler,
                           max_new_tokens=max_new_tokens, generator=generator, progress=False)
            for k, position in enumerate(part):
                rows = drawn.ids[k * n:(k + 1) * n]
                counts[position] = sum(correct(ids[:position + 1] + row) for row in rows)
        bar.update(len(positions))
        return [counts[p] for p in positions]

    try:
        per_round = 1 if budget is None else rounds_plan(len(ids), budget, per_batch)
        counts, critical, exact = find_critical(evaluate, len(ids), budget, per_round)
    finally:
        bar.close()
    positions = np.array(sorted(counts), dtype=np.int64)
    return CriticalTokens(response, n, positions, np.array([counts[p] for p in positions], dtype=np.int64),
                          critical, exact, float(group.correct(threshold).mean()), group.rows(response).index)


def _group_reward(group: Group):
    reward = getattr(group, "reward", None)
    if reward is None:
        raise WorkbenchError("this group does not carry its reward function (groups loaded from disk do not); "
                             "pass reward=")
    return reward
