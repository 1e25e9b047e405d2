"""Group rollouts: G sampled responses to one prompt, their rewards, GRPO advantages and
per-token signals, as a `Group`.

All rows go through the model at once with one KV cache (`sample_continuations`): the
prefixes are left-padded to a common length under an attention mask (position ids count
real tokens only), each distinct prefix is prefilled once and its cache repeated for its n
rows, every step draws one token per row with `sampler.sample(logits [B, V], generator)`,
and a row leaves the batch (its cache rows dropped) when it draws an end-of-sequence token.
The draws come from one seeded generator: the same seed gives the same group.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import memory
from .analyze import run_meta
from .errors import WorkbenchError
from .finite import flag, logits_valid
from .generate import _eos_ids, check_context_room, generated_spans, seeded_generator
from .group import ADVANTAGE_EPS, Group
from .kernels import vocab_stats
from .models import Model
from .rewards import as_reward
from .samplers import Sampler, as_sampler, default_spec, from_spec
from .signals.uncertainty import decode_pieces
from .tokens import Tokens, tokenize_messages, tokenize_text

THR_MODES = ("auto", "exact", "cheap", None)
STEP_SIGNALS = ("logprob", "entropy", "rank", "kept", "kept_entropy", "sample_prob")


@dataclass
class Continuations:
    """Per row (prefix-major: prefix 0's n rows first), the drawn ids and each step's values."""

    ids: list[list[int]]
    steps: list[dict[str, list]] = field(default_factory=list)  # row -> signal name -> values per step
    stop: list[str] = field(default_factory=list)  # "eos" or "length"
    finite: bool = True  # whether every step's logits were valid (`finite.logits_valid`: no NaN, no +inf)


def sample_continuations(model: Model, prefixes: Sequence[Sequence[int]], *, n: int = 1, sampler: Sampler,
                         max_new_tokens: int, generator: torch.Generator, progress: bool = True,
                         desc: str = "sampling") -> Continuations:
    """n sampled continuations of each prefix (token ids), all rows batched.

    Each step records, per row: the drawn token's log-probability `logprob`, the entropy
    and the token's rank under the model's own distribution (temperature 1, before any
    truncation), and the sampler's kept-set size, kept-set entropy and the token's
    probability under the sampling distribution.
    """
    if not prefixes or any(len(p) == 0 for p in prefixes):
        raise WorkbenchError("every prefix needs at least one token")
    width = max(len(p) for p in prefixes)
    check_sampling_memory(model, len(prefixes) * n, width + max_new_tokens, prefill_tokens=len(prefixes) * width)
    eos = torch.tensor(sorted(set(_eos_ids(model))), device=model.device)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else int(eos[0])
    input_ids = torch.full((len(prefixes), width), pad, dtype=torch.long, device=model.device)
    mask = torch.zeros_like(input_ids)
    for u, prefix in enumerate(prefixes):  # left padding
        input_ids[u, width - len(prefix):] = torch.tensor(list(prefix), device=model.device)
        mask[u, width - len(prefix):] = 1
    padded = any(len(p) != width for p in prefixes)  # without padding, no mask is needed (faster)
    rows_total = len(prefixes) * n
    out = Continuations(ids=[[] for _ in range(rows_total)],
                        steps=[{name: [] for name in STEP_SIGNALS} for _ in range(rows_total)],
                        stop=["length"] * rows_total)
    cache = model.adapter.new_cache(model.hf)
    with torch.inference_mode():
        output = model.adapter.forward_cached(model.hf, cache, input_ids=input_ids, attention_mask=mask if padded else None,
                                              position_ids=(mask.cumsum(-1) - 1).clamp_min(0))
        hidden = output.last_hidden_state[:, -1].repeat_interleave(n, 0)  # [B, d]
        if n > 1:
            cache.batch_repeat_interleave(n)
        mask = mask.repeat_interleave(n, 0)  # [B, width + steps]
        positions = mask.sum(-1)  # [B]: the next token's position id
        rows = torch.arange(rows_total, device=model.device)  # output row of each batch row
        for step in tqdm(range(max_new_tokens), desc=desc, unit="tok", disable=not progress, leave=False):
            logits = model.adapter.logits(model.hf, hidden).float()  # [B, V]
            out.finite = out.finite and logits_valid(logits)
            draw = sampler.sample(logits, generator)
            stats = vocab_stats(logits, draw.ids)
            values = {"logprob": stats.target_logprob, "entropy": stats.entropy, "rank": stats.target_rank,
                      "kept": draw.kept, "kept_entropy": draw.kept_entropy, "sample_prob": draw.prob}
            values = {name: tensor.tolist() for name, tensor in values.items()}
            for b, (row, token) in enumerate(zip(rows.tolist(), draw.ids.tolist())):
                out.ids[row].append(token)
                for name in STEP_SIGNALS:
                    out.steps[row][name].append(values[name][b])
            done = torch.isin(draw.ids, eos)
            for row in rows[done].tolist():
                out.stop[row] = "eos"
            alive = ~done
            if step == max_new_tokens - 1 or not alive.any():
                break
            if not alive.all():  # finished rows leave the batch
                keep = alive.nonzero()[:, 0]
                cache.batch_select_indices(keep)
                rows, mask, positions, draw_ids = rows[keep], mask[keep], positions[keep], draw.ids[keep]
            else:
                draw_ids = draw.ids
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            output = model.adapter.forward_cached(model.hf, cache, input_ids=draw_ids[:, None],
                                                  attention_mask=mask if padded else None, position_ids=positions[:, None])
            positions = positions + 1
            hidden = output.last_hidden_state[:, -1]
    return out


def prompt_tokens(model: Model, prompt: str | None, messages: Sequence[dict] | None, chat: bool | None) -> Tokens:
    """The prompt as the model sees it. A plain `prompt` is sent as the user's message
    through the chat template when the tokenizer has one (chat=None or True), or continued
    as raw text (chat=False); `messages` always go through the template. The assistant
    turn is left open."""
    if (prompt is None) == (messages is None):
        raise WorkbenchError("give either prompt or messages (exactly one)")
    has_template = bool(getattr(model.tokenizer, "chat_template", None))
    if messages is None and chat is True and not has_template:
        raise WorkbenchError("chat=True but this model's tokenizer has no chat template; pass chat=False")
    if messages is None and (chat is False or not has_template):
        return tokenize_text(model.tokenizer, prompt)
    if messages is None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise WorkbenchError("the prompt is empty; give a question or instruction")
        messages = [{"role": "user", "content": prompt}]
    return tokenize_messages(model.tokenizer, messages, add_generation_prompt=True)


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
    GRPO). chat: see `prompt_tokens` (a plain prompt goes through the chat template when
    there is one). thr: Token Hidden Reward per token (`workbench.credit.token_hidden_reward`):
    "exact", "cheap", "auto" (exact when its memory estimate fits, else cheap) or None.
    The table also gets `d3s` = |A| * H (`workbench.credit.d3s_priority`). Through the chat
    template, meta["template_system_prompt"] is the system prompt the template added on its
    own (`workbench.tokens.template_system_prompt`; None when it added none).
    """
    from . import credit

    if reward is None:
        raise WorkbenchError("give a reward: an expected answer, a workbench.rewards reward or a callable text -> number")
    reward = as_reward(reward)
    if not isinstance(n, int) or n < 1:
        raise WorkbenchError(f"n must be a positive integer, got {n!r}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise WorkbenchError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if thr not in THR_MODES:
        raise WorkbenchError(f"thr must be one of {', '.join(map(str, THR_MODES))}, got {thr!r}")
    sampler = as_sampler(sampler, from_spec(default_spec("rollouts")))
    tokens = prompt_tokens(model, prompt, messages, chat)
    check_context_room(model, tokens, max_new_tokens)

    generator = seeded_generator(model.device, seed)
    drawn = sample_continuations(model, [tokens.ids], n=n, sampler=sampler, max_new_tokens=max_new_tokens,
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


def response_table(model: Model, drawn: Continuations) -> tuple[list[str], pd.DataFrame]:
    """Each row's text (without its end-of-sequence token) and one table row per drawn token;
    the end-of-sequence token is a zero-width row at the end of its response's text."""
    eos = set(_eos_ids(model))
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
            part[name] = np.asarray(drawn.steps[row][name], dtype=np.int64 if name in ("rank", "kept") else np.float64)
        texts.append(text)
        parts.append(pd.DataFrame(part))
    return texts, pd.concat(parts, ignore_index=True)


def _fill_advantages(group: Group) -> None:
    """Each token's response reward and advantage, as columns right after its span."""
    table = group.table
    at = table.columns.get_loc("end") + 1
    table.insert(at, "reward", group.rewards[table["response"].to_numpy()])
    table.insert(at + 1, "advantage", group.advantages[table["response"].to_numpy()])


def check_sampling_memory(model: Model, rows: int, length: int, *, prefill_tokens: int) -> None:
    """Refuse, before allocating, a batch whose KV cache and logits would not fit: per row
    2 x layers x hidden x length cache entries (an upper bound under GQA) and a few [V] rows,
    plus the prefill forward of `prefill_tokens`."""
    element = torch.finfo(model.dtype).bits // 8
    cache = 2 * model.n_layers * model.hidden_size * length * element
    needed = rows * (cache + 4 * model.vocab_size * 4) + memory.forward_bytes(model, prefill_tokens)
    memory.check_fits(f"sampling {rows} responses of up to {length} tokens", needed, model.device,
                      "ask for fewer responses (n), fewer new tokens or smaller batches")
