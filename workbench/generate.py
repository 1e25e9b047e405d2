"""`generate`: sample a continuation with the KV cache and record every step's signals.

For each generated token: the model's next-token statistics before truncation (entropy,
varentropy, surprisal, rank, margin, top-k, as `analyze` computes them), and the sampler's
view of the step: the temperature used, the kept-set size, the entropy of the renormalized
kept set, and the drawn token's probability under it. Prompt tokens carry the ordinary
uncertainty signals from the prefill. One forward per step over the new token only
(past keys and values come from the cache), so the cost is linear in the length. The
prediction after the last generated token goes to meta["next_token"], as `analyze` stores
it (none when generation ended with the end-of-sequence token). For chat messages,
meta["template_system_prompt"] is the system prompt the chat template added on its own
(`workbench.tokens.template_system_prompt`; None when it added none).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .analyze import _check_memory, run_meta, sequence_figures, token_table
from .capture import Capture
from .errors import WorkbenchError
from .finite import all_finite, flag, logits_valid
from .kernels import VocabStats, vocab_stats
from .models import Model
from .run import Run
from .samplers import Sampler, as_sampler, default_spec, from_spec
from .signals import resolve
from .signals.uncertainty import decode_pieces, next_token_record, uncertainty
from .tokens import Tokens, tokenize_messages, tokenize_text
from .vocab import hidden_vocab_stats

VIEW_TOP = 50  # per step, the top of the distribution kept for the sampling views
STEP_COLUMNS = {"temperature": "Float64", "kept": "Int64", "kept_entropy": "Float64", "sample_prob": "Float64"}


def default_sampler() -> Sampler:
    """The sampler `generate` uses when none is given, as the CLI's --sampler default:
    DEFAULT_SAMPLER["generate"] at its value in `BY_NAME` (top-p 0.9)."""
    return from_spec(default_spec("generate"))


def generate(
    model: Model,
    prompt: str | None = None,
    *,
    messages: Sequence[dict] | None = None,
    sampler: Sampler | str | None = None,
    max_new_tokens: int = 64,
    seed: int | None = None,
    stop: Sequence[str] | str | None = None,
    top_k: int = 5,
    progress: bool = True,
) -> Run:
    """Continue `prompt` (or chat `messages`, with the assistant turn opened) by sampling.

    sampler: a `workbench.samplers` sampler or a spec string such as "top-p:0.9" (see
    `workbench.samplers.from_spec`; default `default_sampler()`, top-p 0.9); seed: the draws are
    reproducible for a given seed; stop: strings that end generation once they appear in
    the generated text (the end-of-sequence token always does).
    """
    if (prompt is None) == (messages is None):
        raise WorkbenchError("give either prompt or messages (exactly one)")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise WorkbenchError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    sampler = as_sampler(sampler, default_sampler())
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    tokens = (tokenize_text(model.tokenizer, prompt) if messages is None
              else tokenize_messages(model.tokenizer, messages, add_generation_prompt=True))
    check_context_room(model, tokens, max_new_tokens)
    _check_memory(model, len(tokens.ids) + max_new_tokens, resolve(["uncertainty"], model))

    generator = seeded_generator(model.device, seed)
    decoded = _decode(model, tokens, sampler, max_new_tokens, generator, stops, top_k, progress)
    role = "generated" if messages is None else "response"
    run = _as_run(model, tokens, decoded, top_k, role)
    run.meta.update({"sampler": sampler.describe(), "seed": seed, "max_new_tokens": max_new_tokens,
                     "stop_reason": decoded.stop_reason, "n_generated": len(decoded.new_ids)})
    if decoded.last_hidden is not None:
        run.meta["next_token"] = _next_token(model, decoded.last_hidden, top_k)
    if not decoded.finite:
        flag(run.meta, model, "the generation", run.table["token_id"].tolist())
    run.meta["sequence"] = sequence_figures(run.table.loc[run.table["generated"], "surprisal"], "the generated tokens")
    return run


def check_context_room(model: Model, tokens: Tokens, max_new_tokens: int) -> None:
    """Refuse a prompt that leaves no room for `max_new_tokens` in the model's context."""
    limit = model.context_length
    if limit is not None and len(tokens.ids) + max_new_tokens > limit:
        raise WorkbenchError(f"the prompt is {len(tokens.ids)} tokens and {max_new_tokens} new tokens "
                             f"would exceed {model.name}'s context of {limit}; shorten the prompt or ask for fewer")


def seeded_generator(device, seed: int | None) -> torch.Generator:
    """The generator all draws come from: seeded with `seed` (same seed, same draws), or
    with a fresh random seed when None."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**63))
    return generator


@dataclass
class Decoded:
    """What the sampling loop made: the new ids, per-step records, why it stopped, the
    prefill capture (for the prompt's own signals), the final hidden state after the last new
    token ([1, d]; None when that token is the end of sequence), and whether the prompt's
    hidden states were finite and every step's logits valid (`finite.logits_valid`)."""

    new_ids: list[int]
    steps: list[tuple]
    stop_reason: str
    prompt_capture: Capture
    last_hidden: torch.Tensor | None
    finite: bool


def _decode(model, tokens, sampler, max_new_tokens, generator, stops, top_k, progress) -> Decoded:
    """The sampling loop."""
    eos = set(_eos_ids(model))
    cache = model.adapter.new_cache(model.hf)
    new_ids, steps = [], []
    with torch.inference_mode():
        input_ids = torch.tensor([tokens.ids], device=model.device)
        output = model.adapter.forward_cached(model.hf, cache, input_ids=input_ids)
        prompt_capture = Capture(model, input_ids[0], final_hidden=output.last_hidden_state[0])
        decoded = Decoded(new_ids, steps, "length", prompt_capture, None, all_finite(output.last_hidden_state))
        hidden = output.last_hidden_state[:, -1]  # [1, d]
        for _ in tqdm(range(max_new_tokens), desc="generating", unit="tok", disable=not progress, leave=False):
            logits = model.adapter.logits(model.hf, hidden).float()  # [1, V]
            decoded.finite = decoded.finite and logits_valid(logits)
            temperature = sampler.temperatures(logits)
            draw = sampler.sample(logits, generator)
            token = int(draw.ids[0])
            stats = vocab_stats(logits, draw.ids, top_k=min(max(top_k, VIEW_TOP), logits.shape[-1]))
            steps.append((stats, float(temperature[0]), int(draw.kept[0]), float(draw.kept_entropy[0]), float(draw.prob[0])))
            new_ids.append(token)
            if token in eos:
                decoded.stop_reason = "eos"
                return decoded
            output = model.adapter.forward_cached(model.hf, cache, input_ids=torch.tensor([[token]], device=model.device))
            hidden = output.last_hidden_state[:, -1]
            if stops and any(s in model.tokenizer.decode(new_ids) for s in stops):
                decoded.stop_reason = "stop"
                break
    decoded.last_hidden = hidden
    return decoded


def _next_token(model, hidden: torch.Tensor, top_k: int) -> dict:
    """The prediction from the final hidden state [1, d], as `analyze` makes meta["next_token"]."""
    stats = hidden_vocab_stats(model, hidden, None, top_k=min(top_k, model.vocab_size))
    return next_token_record(model.tokenizer, stats, 0)


def _eos_ids(model) -> list[int]:
    ids = [model.tokenizer.eos_token_id]
    config_eos = getattr(getattr(model.hf, "generation_config", None), "eos_token_id", None)
    ids += config_eos if isinstance(config_eos, list) else [config_eos]
    return [i for i in ids if i is not None]


def generated_spans(tokenizer, ids: list[int], offset: int) -> tuple[str, np.ndarray, np.ndarray]:
    """Decoded text of `ids` and each token's span in it (shifted by `offset`), from the
    lengths of decoded prefixes; a token that ends inside a multi-byte character gets the
    character only when a later token completes it (same rule as `tokens.contiguous_spans`)."""
    text = tokenizer.decode(ids, clean_up_tokenization_spaces=False)
    starts, ends = np.zeros(len(ids), np.int64), np.zeros(len(ids), np.int64)
    cursor = 0
    for i in range(len(ids)):
        prefix = tokenizer.decode(ids[: i + 1], clean_up_tokenization_spaces=False).rstrip("\ufffd")
        end = len(prefix) if text.startswith(prefix) else cursor
        starts[i], cursor = cursor, max(cursor, min(end, len(text)))
        ends[i] = cursor
    if len(ids):
        ends[-1] = len(text)
    return text, starts + offset, ends + offset


def _as_run(model, tokens: Tokens, decoded: Decoded, top_k, role: str) -> Run:
    new_ids, steps = decoded.new_ids, decoded.steps
    generated_text, starts, ends = generated_spans(model.tokenizer, new_ids, len(tokens.text))
    everything = Tokens(tokens.text + generated_text, tokens.ids + new_ids,
                        np.concatenate([tokens.starts, starts]), np.concatenate([tokens.ends, ends]),
                        tokens.roles + [role] * len(new_ids), len(tokens.ids) + len(new_ids), tokens.template_system)
    table = token_table(everything, model.tokenizer)
    # The prefill's statistics describe prompt tokens 1..P-1; each step's describe its token.
    prompt_part = uncertainty(decoded.prompt_capture, {"top_k": top_k}).columns
    step_stats = VocabStats.cat([s[0] for s in steps])
    n_prompt = len(tokens.ids)
    for name, values in prompt_part.items():
        table[name] = pd.Series(list(values) + [None] * len(new_ids), dtype=getattr(values, "dtype", object))
    _fill_generated(table, n_prompt, step_stats, model.tokenizer, top_k)
    table["generated"] = [False] * n_prompt + [True] * len(new_ids)
    for column, dtype in STEP_COLUMNS.items():
        index = list(STEP_COLUMNS).index(column) + 1
        table[column] = pd.array([None] * n_prompt + [s[index] for s in steps], dtype=dtype)
    meta = run_meta(model, everything, ["uncertainty", "generation"], {"top_k": top_k})
    arrays = {"step_top_ids": step_stats.topk_ids.numpy(),  # [steps, 50] at temperature 1
              "step_top_probs": step_stats.topk_probs.numpy()}
    pieces = decode_pieces(model.tokenizer, arrays["step_top_ids"])
    meta["step_top_tokens"] = {str(i): piece for i, piece in pieces.items()}  # id -> text, for the views
    return Run(everything.text, table, arrays, meta)


def _fill_generated(table: pd.DataFrame, n_prompt: int, stats: VocabStats, tokenizer, top_k: int) -> None:
    rows = slice(n_prompt, None)
    values = {"entropy": stats.entropy, "varentropy": stats.varentropy, "surprisal": -stats.target_logprob,
              "target_logprob": stats.target_logprob, "margin": stats.margin}
    for name, tensor in values.items():
        table.loc[table.index[rows], name] = tensor.double().numpy()
    table.loc[table.index[rows], "rank"] = stats.target_rank.numpy()
    ids, probs = stats.topk_ids.numpy(), stats.topk_probs.double().numpy()
    ids, probs = ids[:, :top_k], probs[:, :top_k]
    pieces = decode_pieces(tokenizer, ids)
    for offset, (row_ids, row_probs) in enumerate(zip(ids, probs)):
        index = n_prompt + offset
        table.at[index, "topk_ids"] = row_ids.tolist()
        table.at[index, "topk_tokens"] = [pieces[i] for i in row_ids]
        table.at[index, "topk_probs"] = row_probs.tolist()
