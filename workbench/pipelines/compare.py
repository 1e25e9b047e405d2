"""`compare`: the same tokens under two predictors -> per-token pair signals -> `Run`.

The two predictors are the model (p) and a reference (q): another model with the same
vocabulary, or the same model reading another context before the scored tokens (a document
or not, two system prompts). Each side runs one forward over its own input; the pair
statistics come from the final hidden states (`compare.statistics`), never from [T, V]
logits. Signals and their formulas: `workbench.compare.signals`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..compare.branches import greedy_branches
from ..compare.commitment import commitment_layers
from ..compare.sides import Pair, Side, pair_inputs
from ..compare.signals import pair_columns
from ..compare.statistics import pair_bytes, pair_stats
from ..errors import WorkbenchError
from ..finite import all_finite, arrays_finite, flag, table_finite
from ..forward import memory
from ..forward.capture import Capture, run_forward
from ..model.handle import Model
from ..model.vocabulary import check_same_vocabulary
from ..results.run import Run
from ..signals import resolve
from .analyze import MAX_TOP_K, run_meta, sequence_figures, token_table

LENS_ARRAYS = ("lens_rank", "lens_top1_id", "lens_top1_prob")  # kept per side with commitment=True


def compare(model: Model, text: str | None = None, *, messages: Sequence[dict] | None = None,
            reference: Model | None = None, context: str | None = None, reference_context: str | None = None,
            beta: float = 0.1, cdpo_beta: float = 1.0, top_k: int = 5, commitment: bool = False,
            branches: int = 8, branch_tokens: int = 6, progress: bool = True) -> Run:
    """Per-token pair signals of `text` (or chat `messages`) under the model (p) and the
    reference (q): `reference` (a model with the same vocabulary; default: the model itself)
    reading `reference_context`, the model reading `context`.

    context, reference_context: with text, a text placed before the scored text on that side;
    with messages, a system prompt put first in that side's conversation (see
    `workbench.compare.sides`). beta: the DPO implicit reward's beta; cdpo_beta: the cDPO
    contrast's. top_k: alternatives kept per side and position (>= 1). commitment: also each
    side's logit lens and commitment layer (one lens pass per layer and side). branches: at
    most this many divergent positions (the greedy choices differ), those of largest JS, get
    both sides' greedy continuations of `branch_tokens` tokens (0: none).

    Returns a Run: one row per scored token, the model's columns as `analyze` names them, the
    reference's prefixed `ref_`, the pair's (kl_pq, kl_qp, js, acceptance, log_ratio,
    implicit_reward, excess_loss, cdpo_weight, top1_token, ref_top1_token, top1_agree; with
    commitment: commit_layer, ref_commit_layer; branch, ref_branch at the branched rows).
    A row has values when both sides predict its token (the first token has none unless both
    sides have a context). meta["compare"] says what was compared.
    """
    reference = model if reference is None else reference
    _check_arguments(model, text, messages, reference, context, reference_context, beta, cdpo_beta, top_k, branches,
                     branch_tokens)
    vocab_size = check_same_vocabulary(model, reference, "compare")
    pair = pair_inputs(model.tokenizer, text, messages, context, reference_context)
    for who, side_model, side in (("the model", model, pair.model), ("the reference", reference, pair.reference)):
        _check_length(who, side_model, side)
    needs = {"final_hidden"} | ({"layer_hidden"} if commitment else set())
    _check_memory(model, reference, pair, needs, vocab_size)

    captures = run_forward(model, pair.model.ids, needs), run_forward(reference, pair.reference.ids, needs)
    rows = np.flatnonzero(pair.predicted)
    hidden = [c.final_hidden[torch.as_tensor(s.positions[rows] - 1, device=c.final_hidden.device)]
              for c, s in zip(captures, (pair.model, pair.reference))]  # [N, d] each
    targets = torch.tensor([pair.tokens.ids[r] for r in rows], dtype=torch.long, device=hidden[0].device)
    stats = pair_stats(model, hidden[0], reference, hidden[1], targets, vocab_size=vocab_size, top_k=top_k,
                       beta=cdpo_beta)

    table = token_table(pair.tokens, model.tokenizer)
    for name, values in pair_columns(stats, rows, len(table), model.tokenizer, beta=beta).items():
        table[name] = values
    arrays = {}
    if commitment:
        for prefix, capture, side in (("", captures[0], pair.model), ("ref_", captures[1], pair.reference)):
            lens = _lens(capture, side, progress)
            arrays.update({f"{prefix}{name}": values for name, values in lens.items()})
            table[f"{prefix}commit_layer"] = _commit_column(lens["lens_top1_id"], pair.predicted)
    branches_finite = not branches or _add_branches(table, model, reference, pair, stats, rows, branches,
                                                    branch_tokens, progress)

    meta = run_meta(model, pair.tokens, ["compare"], {"top_k": top_k, "beta": beta, "cdpo_beta": cdpo_beta,
                                                      "commitment": commitment, "branches": branches,
                                                      "branch_tokens": branch_tokens})
    meta["compare"] = {"reference": reference.name, "reference_revision": reference.revision,
                       "reference_dtype": str(reference.dtype).replace("torch.", ""),
                       "context": context, "reference_context": reference_context,
                       "form": "models" if reference is not model else "contexts"}
    scored = "every token both sides predict"
    meta["sequence"] = sequence_figures(table.loc[pair.predicted, "surprisal"], scored)
    meta["reference_sequence"] = sequence_figures(table.loc[pair.predicted, "ref_surprisal"], scored)
    if not (all(all_finite(h) for h in hidden) and table_finite(table, pair.predicted) and arrays_finite(arrays)
            and branches_finite):
        flag(meta, model, "the comparison", pair.model.ids)
    return Run(pair.tokens.text, table, arrays, meta)


def _check_arguments(model, text, messages, reference, context, reference_context, beta, cdpo_beta, top_k, branches,
                     branch_tokens) -> None:
    if (text is None) == (messages is None):
        raise WorkbenchError("give either text or messages (exactly one)")
    if reference is model and context == reference_context:
        raise WorkbenchError("nothing to compare: give reference= (another model with the same vocabulary), or a "
                             "context and a reference_context that differ")
    if model.device != reference.device:
        raise WorkbenchError(f"the model is on {model.device} and the reference on {reference.device}; load both "
                             "with the same device=")
    if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise WorkbenchError(f"top_k must be an integer in [1, {MAX_TOP_K}], got {top_k!r}")
    if not beta > 0 or not cdpo_beta >= 0:
        raise WorkbenchError(f"beta must be > 0 and cdpo_beta >= 0, got beta={beta}, cdpo_beta={cdpo_beta}")
    if not isinstance(branches, int) or branches < 0:
        raise WorkbenchError(f"branches must be an integer >= 0, got {branches!r}")
    if not isinstance(branch_tokens, int) or branch_tokens < 1:
        raise WorkbenchError(f"branch_tokens must be a positive integer, got {branch_tokens!r}")


def _check_length(who: str, model: Model, side: Side) -> None:
    limit = model.context_length
    if limit is not None and len(side.ids) > limit:
        raise WorkbenchError(f"{who}'s input (its context and the text) is {len(side.ids)} tokens but {model.name} "
                             f"takes at most {limit}; shorten the text or the context")


def _check_memory(model: Model, reference: Model, pair: Pair, needs: set[str], vocab_size: int) -> None:
    """Refuse before the forwards: each side's forward, its kept hidden states (every layer's
    with commitment), and the pair statistics' blocks of logits."""
    needed = pair_bytes(vocab_size)
    for side_model, side in ((model, pair.model), (reference, pair.reference)):
        layers = side_model.n_layers + 1 if "layer_hidden" in needs else 1
        needed += memory.forward_bytes(side_model, len(side.ids)) + 4 * layers * len(side.ids) * side_model.hidden_size
    memory.check_fits(f"comparing {len(pair.tokens.ids)} tokens", needed, model.device,
                      "compare a shorter text, or without commitment=True")


def _lens(capture: Capture, side: Side, progress: bool) -> dict[str, np.ndarray]:
    """The side's logit-lens arrays at the scored tokens: [L+1, T] each (`signals.logit_lens`,
    whose column p describes the prediction of the side's token p)."""
    (lens,) = resolve(["logit_lens"], capture.model)
    output = lens.compute(capture, {"top_k": 1, "progress": progress})
    return {name: output.arrays[name][:, side.positions] for name in LENS_ARRAYS}


def _commit_column(lens_top1: np.ndarray, predicted: np.ndarray) -> pd.array:
    layers = pd.array(commitment_layers(lens_top1), dtype="Int64")
    layers[~predicted] = pd.NA
    return layers


def _add_branches(table, model, reference, pair, stats, rows, branches, tokens, progress) -> bool:
    """Columns branch / ref_branch: both greedy continuations at the `branches` divergent rows
    of largest JS (None elsewhere). Whether every logit of every branch was finite."""
    top1 = [s.topk_ids[:, 0].cpu().numpy() for s in (stats.model, stats.reference)]
    divergent = np.flatnonzero(top1[0] != top1[1])  # indices into rows
    js = stats.divergence.js.double().cpu().numpy()[divergent]
    chosen = sorted(divergent[np.argsort(-np.nan_to_num(js, nan=-1.0), kind="stable")[:branches]].tolist())
    finite = True
    for prefix, side_model, side, ids in (("", model, pair.model, top1[0]), ("ref_", reference, pair.reference, top1[1])):
        texts, side_finite = greedy_branches(side_model, side, [int(rows[i]) for i in chosen],
                                             [int(ids[i]) for i in chosen], tokens=tokens, progress=progress)
        column = [None] * len(table)
        for i, text in zip(chosen, texts):
            column[int(rows[i])] = text
        table[f"{prefix}branch"] = column
        finite = finite and side_finite
    return finite
