"""`attribute`: which earlier tokens made the model produce each token of a continuation.

The prompt and a continuation (given as text, or generated greedily with `max_new_tokens`)
form one sequence x of T tokens; every target token y_t (by default each continuation token;
without a continuation each token of the prompt after the first) is attributed to all the
tokens before it with one method of `workbench.attribution`:

    saliency, input_x_gradient, integrated_gradients     (gradients of f_t w.r.t. the inputs)
    occlusion                                              (leave one token, word or sentence out)
    reagent                                                (ReAGent: replace, score, aggregate)

f_t = log p(y_t | x_<t), or with a `foil` the contrast log p(y_t) - log p(foil_t) (Yin &
Neubig 2022); ReAGent measures p(y_t) (contrastive: (p(y_t) - p(foil_t)) / 2) as its paper does.

The Run: run.arrays["attr_<method>"] [target, source] (row k: target run.arrays["attr_targets"][k],
NaN where the source is not before the target: strictly lower-triangular over positions);
run.table: the token rows with "target" (bool), "target_score" (f_t), the method's per-target
values (the completeness gap "ig_gap" of integrated gradients and f(x) - f(baseline) "ig_delta",
ReAGent's steps), "foil" when contrastive, and "attr_<method>_total", each source's
attribution summed over the targets. Integrated gradients whose gap exceeds the tolerance
(`gradient.incomplete`) warn with IncompleteAttributionWarning and say so in
run.meta["attribution"]["incomplete"].
`workbench.attribution.aggregate(run, "word")` sums sources into words or sentences.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..attribution import gradient
from ..attribution.occlusion import occlusion
from ..attribution.reagent import reagent
from ..attribution.result import Attribution, source_mask
from ..attribution.spans import LEVELS, groups
from ..attribution.target import Targets
from ..errors import IncompleteAttributionWarning, WorkbenchError
from ..finite import flag
from ..model.handle import Model
from ..results.run import Run
from ..samplers import Greedy
from ..tokens import Tokens, generated_spans, tokenize_text
from .analyze import run_meta, token_table

METHODS = gradient.METHODS + ("occlusion", "reagent")


def attribute(
    model: Model,
    prompt: str,
    *,
    continuation: str | None = None,
    max_new_tokens: int | None = None,
    method: str = "saliency",
    targets: Sequence[int] | None = None,
    foil: str | int | Sequence[str | int] | None = None,
    steps: int = gradient.STEPS,
    baseline=gradient.BASELINE,
    rule: str = gradient.RULE,
    level: str = "token",
    replacement="uniform",
    ratio: float = 0.3,
    keep: int = 5,
    top_k: int = 5,
    chains: int = 4,
    max_steps: int = 100,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
) -> Run:
    """Attribute each target token of `prompt` + continuation to every token before it.

    continuation: text that follows the prompt (its tokens are the targets); max_new_tokens:
    generate that many tokens greedily instead; neither: the prompt's own tokens 1..T-1.
    method: one of METHODS. targets: positions (in run.table) to attribute instead of the
    default. foil: a token (text of exactly one token, or an id) to contrast every target
    with, or one per target. steps, baseline ("zeros" or a token id): integrated gradients.
    level ("token", "word", "sentence"): occlusion. replacement ("uniform", "predictions",
    or a callable (ids, mask, generator) -> ids such as a masked LM), ratio, keep, top_k,
    chains, max_steps, seed: ReAGent (`workbench.attribution.reagent`). batch_size: targets
    per backward (gradients) or sequences per forward (occlusion, ReAGent); None: the
    largest the memory estimate allows.
    """
    if method not in METHODS:
        raise WorkbenchError(f"unknown attribution method '{method}'; use one of {', '.join(METHODS)}")
    if level not in LEVELS:
        raise WorkbenchError(f"unknown level '{level}'; use one of {', '.join(LEVELS)}")
    if continuation is not None and max_new_tokens is not None:
        raise WorkbenchError("give either a continuation or max_new_tokens, not both")
    tokens, n_prompt = _sequence(model, prompt, continuation, max_new_tokens, seed, progress)
    ids = torch.tensor(tokens.ids, device=model.device)
    positions = _target_positions(targets, n_prompt, len(tokens.ids))
    chosen = Targets(torch.tensor(positions, device=model.device), ids[positions],
                     _foils(model, foil, len(positions)))
    if method in gradient.METHODS:
        result = gradient.gradient_attribution(model, ids, chosen, method, steps=steps, baseline=baseline, rule=rule,
                                               target_batch=batch_size, progress=progress)
    elif method == "occlusion":
        result = occlusion(model, ids, chosen, groups(tokens.text, tokens.starts, tokens.ends, level), level=level,
                           batch=batch_size, progress=progress)
    else:
        result = reagent(model, ids, chosen, replacement=replacement, ratio=ratio, keep=keep, top_k=top_k,
                         chains=chains, max_steps=max_steps, seed=seed, batch=batch_size, progress=progress)
    run = _as_run(model, tokens, chosen, method, result, {"continuation": continuation is not None,
                                                          "max_new_tokens": max_new_tokens})
    if method == "integrated_gradients":
        _check_completeness(run, result)
    return run


def _check_completeness(run: Run, result: Attribution) -> None:
    """Warn (IncompleteAttributionWarning) and note in run.meta["attribution"]["incomplete"]
    when the completeness gap of some targets exceeds the tolerance."""
    note = gradient.completeness_note(run.arrays["attr_targets"], result.per_target["ig_gap"],
                                      result.per_target["ig_delta"])
    if note is not None:
        run.meta["attribution"]["incomplete"] = note
        warnings.warn(note, IncompleteAttributionWarning, stacklevel=3)


def _sequence(model: Model, prompt: str, continuation: str | None, max_new_tokens: int | None, seed: int,
              progress: bool) -> tuple[Tokens, int]:
    """The prompt and its continuation as one tokenized sequence, and the prompt's length."""
    tokens = tokenize_text(model.tokenizer, prompt)
    if max_new_tokens is not None:
        from .generate import generate

        generated = generate(model, prompt, sampler=Greedy(), max_new_tokens=max_new_tokens, seed=seed,
                             progress=progress)
        new_ids = generated.table.loc[generated.table["generated"], "token_id"].tolist()
        role = "generated"
    elif continuation is not None:
        if not isinstance(continuation, str) or not continuation:
            raise WorkbenchError("the continuation is empty; give the text that follows the prompt")
        new_ids = model.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        role = "continuation"
    else:
        new_ids, role = [], "continuation"
    text, starts, ends = generated_spans(model.tokenizer, new_ids, len(tokens.text))
    n = len(tokens.ids) + len(new_ids)
    whole = Tokens(tokens.text + text, tokens.ids + new_ids, np.concatenate([tokens.starts, starts]),
                   np.concatenate([tokens.ends, ends]), ["prompt"] * len(tokens.ids) + [role] * len(new_ids), n)
    limit = model.context_length
    if limit is not None and n > limit:
        raise WorkbenchError(f"prompt and continuation are {n} tokens but {model.name} takes at most {limit}; "
                             "shorten them")
    return whole, len(tokens.ids) if new_ids else 1


def _target_positions(targets, first: int, n_tokens: int) -> list[int]:
    """The positions to attribute: `targets`, or every position from `first` on."""
    if targets is None:
        if first >= n_tokens:
            raise WorkbenchError("the prompt is one token: nothing before it to attribute to; give a continuation")
        return list(range(first, n_tokens))
    positions = list(targets)
    bad = [p for p in positions if not isinstance(p, (int, np.integer)) or isinstance(p, bool) or not 1 <= p < n_tokens]
    if not positions or bad:
        raise WorkbenchError(f"targets must be token positions in [1, {n_tokens - 1}] (position 0 has nothing "
                             f"before it), got {bad or positions!r}")
    return [int(p) for p in positions]


def _foils(model: Model, foil, n_targets: int) -> torch.Tensor | None:
    """Foil ids [K]: one foil for every target, or one per target; a text must be one token."""
    if foil is None:
        return None
    listed = [foil] * n_targets if isinstance(foil, (str, int)) else list(foil)
    if len(listed) != n_targets:
        raise WorkbenchError(f"give one foil, or one per target ({n_targets}), got {len(listed)}")
    ids = []
    for item in listed:
        if isinstance(item, str):
            pieces = model.tokenizer(item, add_special_tokens=False)["input_ids"]
            if len(pieces) != 1:
                raise WorkbenchError(f"the foil {item!r} is {len(pieces)} tokens; a foil must be exactly one token "
                                     "(mind the leading space: ' Paris')")
            item = pieces[0]
        if not isinstance(item, (int, np.integer)) or not 0 <= item < model.vocab_size:
            raise WorkbenchError(f"a foil must be a one-token text or a token id in [0, {model.vocab_size}), "
                                 f"got {item!r}")
        ids.append(int(item))
    return torch.tensor(ids, device=model.device)


def _as_run(model: Model, tokens: Tokens, targets: Targets, method: str, result: Attribution, source: dict) -> Run:
    table = token_table(tokens, model.tokenizer)
    n_tokens = len(tokens.ids)
    positions = targets.positions.cpu().numpy()
    is_target = np.zeros(n_tokens, dtype=bool)
    is_target[positions] = True
    table["target"] = is_target
    table["target_score"] = _per_target(result.scores, positions, n_tokens)
    for name, values in result.per_target.items():
        table[name] = _per_target(values, positions, n_tokens)
    if targets.foils is not None:
        pieces = [model.tokenizer.decode([i]) for i in targets.foils.tolist()]
        foil_column = [None] * n_tokens
        for position, piece in zip(positions, pieces):
            foil_column[position] = piece
        table["foil"] = pd.Series(foil_column, dtype="str")  # the text columns' dtype: a saved run reads back equal
    values = result.values
    defined = ~np.isnan(values).all(axis=0)
    table[f"attr_{method}_total"] = pd.array(np.where(defined, np.nansum(values, axis=0), np.nan), dtype="Float64")
    meta = run_meta(model, tokens, ["attribution"], result.params)
    meta["attribution"] = {"method": method, "targets": positions.tolist(), "contrastive": targets.foils is not None,
                           "score": _score_name(method, targets.foils is not None), **result.params, **source}
    mask = source_mask(targets.positions, n_tokens)
    checked = np.concatenate([result.scores, values[mask & ~np.isnan(values)]]
                             + [v for v in result.per_target.values()])
    if not np.isfinite(checked).all():
        flag(meta, model, "the attribution", tokens.ids)
    arrays = {f"attr_{method}": values, "attr_targets": positions.astype(np.int64)}
    return Run(tokens.text, table, arrays, meta)


def _per_target(values: np.ndarray, positions: np.ndarray, n_tokens: int) -> pd.arrays.FloatingArray:
    column = np.full(n_tokens, np.nan)
    column[positions] = values
    return pd.array(column, dtype="Float64")


def _score_name(method: str, contrastive: bool) -> str:
    if method == "reagent":
        return "(p(y) - p(foil)) / 2" if contrastive else "p(y)"
    return "log p(y) - log p(foil)" if contrastive else "log p(y)"
