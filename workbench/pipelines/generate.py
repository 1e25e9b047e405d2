"""`generate`: sample a continuation with the KV cache and record every step's signals.

For each generated token: the model's next-token statistics before truncation (entropy,
varentropy, surprisal, rank, margin, top-k, as `analyze` computes them), and the sampler's
view of the step: the temperature used, the kept-set size, the entropy of the renormalized
kept set, and the drawn token's probability under it. Prompt tokens carry the ordinary
uncertainty signals from the prefill. The tokens are drawn by the decode engine
(`workbench.decoding.engine.decode`, one row): one forward per step over the new token only
(past keys and values come from the cache), so the cost is linear in the length. The
prediction after the last generated token goes to meta["next_token"], as `analyze` stores
it (none when generation ended with the end-of-sequence token). For chat messages,
meta["template_system_prompt"] is the system prompt the chat template added on its own
(`workbench.tokens.template_system_prompt`; None when it added none).

With a `draft` model the tokens come from exact speculative sampling instead
(`workbench.decoding.speculative`): the same distribution, fewer target forwards. The table
then also says per generated token which step made it (`spec_step`), whether it was an
accepted draft (`drafted`) and its acceptance probability min(1, p/q) (`accept_prob`); the
arrays hold the trace per step (`spec_*`, [steps, gamma] padded with -1 / NaN) and
meta["speculative"] the measured and expected tokens per step (`speculative.summary`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..decoding.engine import WHOLE_STEP_FIELDS, Decoded, check_context_room, decode, seeded_generator
from ..decoding.speculative import DraftStep, speculative_decode, summary
from ..errors import check_positive_int
from ..finite import flag
from ..forward import memory
from ..forward.capture import Capture
from ..forward.vocab_stats import hidden_vocab_stats
from ..kernels import VocabStats
from ..model.handle import Model, load
from ..results.run import Run
from ..samplers import Sampler, as_sampler, default_spec, from_spec
from ..signals import resolve
from ..signals.uncertainty import decode_pieces, next_token_record, uncertainty
from ..tokens import Tokens, check_one_input, generated_spans, tokenize_input
from .analyze import run_meta, sequence_figures, token_table

VIEW_TOP = 50  # per step, the top of the distribution kept for the sampling views
STEP_COLUMNS = ("temperature", "kept", "kept_entropy", "sample_prob")  # of the decode engine's STEP_FIELDS


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
    draft: Model | str | None = None,
    gamma: int = 4,
) -> Run:
    """Continue `prompt` (or chat `messages`, with the assistant turn opened) by sampling.

    sampler: a `workbench.samplers` sampler or a spec string such as "top-p:0.9" (see
    `workbench.samplers.from_spec`; default `default_sampler()`, top-p 0.9); seed: the draws are
    reproducible for a given seed; stop: strings that end generation once they appear in
    the generated text (the end-of-sequence token always does). draft: a model sharing this
    one's vocabulary (or its name, loaded with this model's dtype and device) that proposes
    `gamma` tokens per step for speculative sampling; the output has the same distribution.
    """
    check_one_input(prompt, messages, "prompt")
    check_positive_int(max_new_tokens, "max_new_tokens")
    sampler = as_sampler(sampler, default_sampler())
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    tokens = tokenize_input(model.tokenizer, prompt, messages, name="prompt", add_generation_prompt=True)
    check_context_room(model, tokens, max_new_tokens)
    memory.check_signals_fit(model, len(tokens.ids) + max_new_tokens, resolve(["uncertainty"], model))

    generator = seeded_generator(model.device, seed)
    if draft is None:
        decoded = decode(model, [tokens.ids], sampler=sampler, max_new_tokens=max_new_tokens, generator=generator,
                         stops=stops, top_k=max(top_k, VIEW_TOP), final_hidden=True, keep_prefill=True,
                         progress=progress, desc="generating")
    else:
        if isinstance(draft, str):
            draft = load(draft, dtype=model.dtype, device=model.device)
        check_context_room(draft, tokens, max_new_tokens)
        decoded, trace = speculative_decode(model, draft, tokens.ids, sampler=sampler, gamma=gamma,
                                            max_new_tokens=max_new_tokens, generator=generator, stops=stops,
                                            top_k=max(top_k, VIEW_TOP), final_hidden=True, progress=progress)
    role = "generated" if messages is None else "response"
    run = _as_run(model, tokens, decoded, top_k, role)
    if draft is not None:
        _add_trace(run, trace, model.tokenizer, len(tokens.ids), len(decoded.ids[0]), draft.name, gamma)
    run.meta.update({"sampler": sampler.describe(), "seed": seed, "max_new_tokens": max_new_tokens,
                     "stop_reason": decoded.stop[0], "n_generated": len(decoded.ids[0])})
    if decoded.final_hidden[0] is not None:
        run.meta["next_token"] = _next_token(model, decoded.final_hidden[0][None], top_k)
    if not decoded.finite:
        flag(run.meta, model, "the generation", run.table["token_id"].tolist())
    run.meta["sequence"] = sequence_figures(run.table.loc[run.table["generated"], "surprisal"], "the generated tokens")
    return run


def _add_trace(run: Run, trace: list[DraftStep], tokenizer, n_prompt: int, n_generated: int, draft_name: str,
               gamma: int) -> None:
    """The speculative trace into `run`: per generated token its step, whether it was an
    accepted draft and its acceptance probability; per step the drafted tokens, their
    probabilities, acceptance probabilities and alphas ([steps, gamma], padded with -1 / NaN),
    the accepted count, the token drawn after them and whether it came from the residual."""
    step_of, drafted, accept = [], [], []
    for index, step in enumerate(trace):
        step_of += [index] * step.tokens
        drafted += [True] * step.accepted + [False]
        accept += step.accept_prob[:step.accepted] + [None]
    pad = [None] * n_prompt
    run.table["spec_step"] = pd.array(pad + step_of[:n_generated], dtype="Int64")
    run.table["drafted"] = pd.array(pad + drafted[:n_generated], dtype="boolean")
    run.table["accept_prob"] = pd.array(pad + accept[:n_generated], dtype="Float64")

    def padded(field: str, fill, dtype) -> np.ndarray:
        values = np.full((len(trace), gamma), fill, dtype=dtype)
        for row, step in enumerate(trace):
            values[row, :len(step.drafted)] = getattr(step, field)
        return values

    run.arrays.update({
        "spec_drafted": padded("drafted", -1, np.int64),
        "spec_draft_prob": padded("draft_prob", np.nan, np.float64),
        "spec_target_prob": padded("target_prob", np.nan, np.float64),
        "spec_accept_prob": padded("accept_prob", np.nan, np.float64),
        "spec_alpha": padded("alpha", np.nan, np.float64),
        "spec_accepted": np.array([step.accepted for step in trace], dtype=np.int64),
        "spec_token": np.array([step.token for step in trace], dtype=np.int64),
        "spec_residual": np.array([step.residual for step in trace], dtype=bool),
    })
    run.meta["speculative"] = {"draft": draft_name, **summary(trace, gamma)}
    drafted = run.arrays["spec_drafted"]
    pieces = decode_pieces(tokenizer, np.concatenate([drafted[drafted >= 0], run.arrays["spec_token"]]))
    run.meta["spec_tokens"] = {str(i): piece for i, piece in pieces.items()}  # id -> text, for the trace view


def _next_token(model, hidden: torch.Tensor, top_k: int) -> dict:
    """The prediction from the final hidden state [1, d], as `analyze` makes meta["next_token"]."""
    stats = hidden_vocab_stats(model, hidden, None, top_k=min(top_k, model.vocab_size))
    return next_token_record(model.tokenizer, stats, 0)


def _as_run(model, tokens: Tokens, decoded: Decoded, top_k, role: str) -> Run:
    new_ids = decoded.ids[0]
    generated_text, starts, ends = generated_spans(model.tokenizer, new_ids, len(tokens.text))
    everything = Tokens(tokens.text + generated_text, tokens.ids + new_ids,
                        np.concatenate([tokens.starts, starts]), np.concatenate([tokens.ends, ends]),
                        tokens.roles + [role] * len(new_ids), len(tokens.ids) + len(new_ids), tokens.template_system)
    table = token_table(everything, model.tokenizer)
    # The prefill's statistics describe prompt tokens 1..P-1; each step's describe its token.
    prompt_capture = Capture(model, torch.tensor(tokens.ids, device=model.device), final_hidden=decoded.prefill_hidden[0])
    prompt_part = uncertainty(prompt_capture, {"top_k": top_k}).columns
    step_stats = VocabStats.cat([step.stats for step in decoded.steps])
    n_prompt = len(tokens.ids)
    for name, values in prompt_part.items():
        table[name] = pd.Series(list(values) + [None] * len(new_ids), dtype=getattr(values, "dtype", object))
    _fill_generated(table, n_prompt, step_stats, model.tokenizer, top_k)
    table["generated"] = [False] * n_prompt + [True] * len(new_ids)
    trace = decoded.traces(list(STEP_COLUMNS))[0]
    for column in STEP_COLUMNS:
        dtype = "Int64" if column in WHOLE_STEP_FIELDS else "Float64"
        table[column] = pd.array([None] * n_prompt + trace[column], dtype=dtype)
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
