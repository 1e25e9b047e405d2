"""`analyze`: text (or chat messages) -> one forward -> per-token signals -> `Run`.

The plan: the requested signals declare what they need from the forward pass; the
input is checked (empty, too long for the context, too big for memory) before anything
is allocated; one forward captures only what is needed; each signal adds its columns,
arrays and metadata.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import WorkbenchError
from ..finite import all_finite, arrays_finite, flag, table_finite
from ..forward import memory
from ..forward.capture import run_forward
from ..model.handle import Model
from ..results.run import Run
from ..signals import resolve
from ..signals.uncertainty import decode_pieces
from ..tokens import Tokens, check_one_input, tokenize_input

MAX_TOP_K = 100


def analyze(
    model: Model,
    text: str | None = None,
    *,
    messages: Sequence[dict] | None = None,
    signals: Sequence[str] | str = ("uncertainty",),
    top_k: int = 5,
    truncate: bool = False,
    progress: bool = True,
) -> Run:
    """Per-token signals for `text` or chat `messages` (exactly one of them).

    signals: names from `workbench.signals.SIGNALS` ("uncertainty", "logit_lens", ...).
    top_k: alternatives kept per position. truncate: keep the first context-length tokens
    of a text that is too long instead of refusing it. progress: a progress bar for the slow
    parts (the logit lens of 512 tokens or more).

    Non-finite results (NaN or infinite hidden states or signal values at a position that has
    a prediction) set meta["non_finite"] and warn (`workbench.finite`). meta["sequence"]:
    the text's total log-probability, mean surprisal and perplexity (`sequence_figures`).
    """
    check_one_input(text, messages)
    if not isinstance(top_k, int) or not 0 <= top_k <= MAX_TOP_K:
        raise WorkbenchError(f"top_k must be an integer in [0, {MAX_TOP_K}], got {top_k!r}")
    specs = resolve(signals, model)
    tokens = tokenize_input(model.tokenizer, text, messages)
    tokens = _fit_context(tokens, model, truncate)
    memory.check_signals_fit(model, len(tokens.ids), specs)

    needs = {need for spec in specs for need in spec.needs}
    capture = run_forward(model, tokens.ids, needs)
    table, arrays = token_table(tokens, model.tokenizer), {}
    meta = run_meta(model, tokens, [s.name for s in specs], {"top_k": top_k})
    for spec in specs:
        output = spec.compute(capture, {"top_k": top_k, "progress": progress})
        for name, values in output.columns.items():
            table[name] = values
        arrays.update(output.arrays)
        meta.update(output.meta)
    predicted = table["position"].to_numpy() >= 1  # the first token has no prediction
    if not (all_finite(capture.final_hidden) and table_finite(table, predicted) and arrays_finite(arrays)):
        flag(meta, model, "the analysis", tokens.ids)
    if "surprisal" in table:
        meta["sequence"] = sequence_figures(table.loc[predicted, "surprisal"], "every token but the first")
    return Run(tokens.text, table, arrays, meta)


MAX_EXP = math.log(np.finfo(np.float64).max)  # 709.78: exp of more overflows


def sequence_figures(surprisal: pd.Series, scored: str) -> dict:
    """The sequence's figures from the surprisal -log p(y_t | y_<t) (nats) of its scored tokens:
    total log-probability sum_t log p = -sum_t surprisal, mean surprisal (nats per token) and
    perplexity exp(mean surprisal); `scored` says which tokens count. None for a figure with no
    token or a non-finite value (a perplexity past float64's range, mean surprisal > 709 nats,
    included)."""
    values = surprisal.astype("float64").to_numpy(na_value=np.nan)
    finite = len(values) > 0 and bool(np.isfinite(values).all())
    mean = float(values.mean()) if finite else None
    return {"scored": scored, "n_scored": len(values),
            "total_logprob": -float(values.sum()) if finite else None,
            "mean_surprisal": mean, "perplexity": math.exp(mean) if mean is not None and mean < MAX_EXP else None}


def token_table(tokens: Tokens, tokenizer) -> pd.DataFrame:
    """The columns every run has: position, token_id, token, start, end, role."""
    pieces = decode_pieces(tokenizer, tokens.ids)
    return pd.DataFrame({
        "position": pd.array(range(len(tokens.ids)), dtype="int64"),
        "token_id": pd.array(tokens.ids, dtype="int64"),
        "token": [pieces[i] for i in tokens.ids],
        "start": tokens.starts,
        "end": tokens.ends,
        "role": tokens.roles,
    })


def run_meta(model: Model, tokens: Tokens, signals: list[str], params: dict) -> dict:
    """What every Run records of its making; for chat input also "template_system_prompt",
    the system prompt the chat template added on its own (None when it added none)."""
    from .. import __version__

    chat = {"template_system_prompt": tokens.template_system} if tokens.chat else {}
    return {
        "model": model.name,
        "revision": model.revision,
        "family": model.adapter.name,
        "dtype": str(model.dtype).replace("torch.", ""),
        "device": str(model.device),
        "signals": signals,
        "params": params,
        "n_tokens": len(tokens.ids),
        "truncated_from": tokens.n_original if tokens.truncated else None,
        "workbench_version": __version__,
        "torch_version": torch.__version__,
        **chat,
    }


def _fit_context(tokens: Tokens, model: Model, truncate: bool) -> Tokens:
    limit = model.context_length
    if limit is None or len(tokens.ids) <= limit:
        return tokens
    if not truncate:
        raise WorkbenchError(
            f"the text is {len(tokens.ids)} tokens but {model.name} takes at most {limit}; "
            f"shorten it, or keep its first {limit} tokens: truncate=True (CLI: --truncate; dashboard: "
            "the 'truncate' box)"
        )
    return tokens.truncate(limit)
