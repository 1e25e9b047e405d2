"""Group rollouts: G sampled responses to one prompt, their rewards, GRPO advantages and
per-token signals, as a `Group`.

The n responses are drawn together by the decode engine (`workbench.decoding.engine.decode`:
one KV cache, the prompt prefilled once, a row leaving the batch at its end-of-sequence token),
from one seeded generator: the same seed gives the same group.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .. import credit
from ..decoding.engine import WHOLE_STEP_FIELDS, Decoded, check_context_room, decode, seeded_generator
from ..errors import WorkbenchError, check_positive_int
from ..finite import flag
from ..model.handle import Model
from ..results.group import ADVANTAGE_EPS, Group
from ..rewards import as_reward
from ..samplers import Sampler, as_sampler, default_spec, from_spec
from ..signals.uncertainty import decode_pieces
from ..tokens import generated_spans, prompt_tokens
from .analyze import run_meta

THR_MODES = ("auto", "exact", "cheap", None)
STEP_SIGNALS = ("logprob", "entropy", "rank", "kept", "kept_entropy", "sample_prob")


def rollouts(
    model: Model,
    prompt: str | None = None,
    *,
    messages: Sequence[dict] | None = None,
    n: int = 8,
    reward=None,
    sampler: Sampler | str | None = None,
    max_new_tokens: int = 64,
    seed: int | None = None,
    chat: bool | None = None,
    thr: str | None = "auto",
    progress: bool = True,
) -> Group:
    """Sample `n` responses to `prompt` (or chat `messages`), score each with `reward`, and
    return a `Group` with GRPO advantages and a per-token table.

    reward: a `workbench.rewards` reward (`exact_answer("56")`, `numeric_answer`, `regex`),
    any callable text -> number, or an expected answer (str / number: `exact_answer`).
    sampler: a `workbench.samplers` sampler or a spec string such as "top-p:0.9"; default
    plain sampling at temperature 1 (the policy's own distribution, as in
    GRPO). chat: see `workbench.tokens.prompt_tokens` (a plain prompt goes through the chat template when
    there is one). thr: Token Hidden Reward per token (`workbench.credit.token_hidden_reward`):
    "exact", "cheap", "auto" (exact when its memory estimate fits, else cheap) or None.
    The table also gets `d3s` = |A| * H (`workbench.credit.d3s_priority`). Through the chat
    template, meta["template_system_prompt"] is the system prompt the template added on its
    own (`workbench.tokens.template_system_prompt`; None when it added none).
    """
    if reward is None:
        raise WorkbenchError("give a reward: an expected answer, a workbench.rewards reward or a callable text -> number")
    reward = as_reward(reward)
    check_positive_int(n, "n")
    check_positive_int(max_new_tokens, "max_new_tokens")
    if thr not in THR_MODES:
        raise WorkbenchError(f"thr must be one of {', '.join(map(str, THR_MODES))}, got {thr!r}")
    sampler = as_sampler(sampler, from_spec(default_spec("rollouts")))
    tokens = prompt_tokens(model.tokenizer, prompt, messages, chat)
    check_context_room(model, tokens, max_new_tokens)

    generator = seeded_generator(model.device, seed)
    drawn = decode(model, [tokens.ids], n=n, sampler=sampler, max_new_tokens=max_new_tokens,
                   generator=generator, progress=progress, desc="rollouts")
    texts, table = response_table(model, drawn)
    rewards = np.array([reward(text) for text in texts], dtype=np.float64)
    meta = run_meta(model, tokens, ["rollouts"], {})
    meta.update({"chat": tokens.chat, "n": n,
                 "sampler": sampler.describe(), "seed": seed, "max_new_tokens": max_new_tokens,
                 "reward": reward.name, "stop_reasons": drawn.stop, "advantage_eps": ADVANTAGE_EPS})
    if not drawn.finite:
        flag(meta, model, "the rollouts", tokens.ids + drawn.ids[0])
    group = Group(tokens.text, texts, rewards, table, {"prompt_ids": np.asarray(tokens.ids, dtype=np.int64)}, meta,
                  reward=reward)
    _fill_advantages(group)
    group.add(credit.d3s_priority(group))
    if thr is not None:
        group.add(credit.token_hidden_reward(model, group, mode=thr))
    return group


def response_table(model: Model, drawn: Decoded) -> tuple[list[str], pd.DataFrame]:
    """Each row's text (without its end-of-sequence token) and one table row per drawn token;
    the end-of-sequence token is a zero-width row at the end of its response's text."""
    eos = set(model.eos_ids)
    traces = drawn.traces(STEP_SIGNALS)
    pieces = decode_pieces(model.tokenizer, [i for ids in drawn.ids for i in ids] or [0])
    texts, parts = [], []
    for row, ids in enumerate(drawn.ids):
        body = ids[:-1] if ids and ids[-1] in eos else ids
        text, starts, ends = generated_spans(model.tokenizer, body, 0)
        extra = len(ids) - len(body)
        part = {"response": np.full(len(ids), row, dtype=np.int64), "position": np.arange(len(ids), dtype=np.int64),
                "token_id": np.asarray(ids, dtype=np.int64), "token": [pieces[i] for i in ids],
                "start": np.concatenate([starts, np.full(extra, len(text), dtype=np.int64)]),
                "end": np.concatenate([ends, np.full(extra, len(text), dtype=np.int64)])}
        for name in STEP_SIGNALS:
            part[name] = np.asarray(traces[row][name], dtype=np.int64 if name in WHOLE_STEP_FIELDS else np.float64)
        texts.append(text)
        parts.append(pd.DataFrame(part))
    return texts, pd.concat(parts, ignore_index=True)


def _fill_advantages(group: Group) -> None:
    """Each token's response reward and advantage, as columns right after its span."""
    table = group.table
    at = table.columns.get_loc("end") + 1
    table.insert(at, "reward", group.rewards[table["response"].to_numpy()])
    table.insert(at + 1, "advantage", group.advantages[table["response"].to_numpy()])
