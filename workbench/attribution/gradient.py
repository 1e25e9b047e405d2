"""Gradient attribution: saliency, input x gradient, integrated gradients, with many targets
per backward.

With e_s the input embedding of source s and f_t the target function (`target.scores`):

    saliency               ||d f_t / d e_s||_2        (Simonyan et al. 2014)
    input x gradient       <e_s, d f_t / d e_s>       (Shrikumar et al. 2016)
    integrated gradients   (e_s - b_s) . (1/m) sum_{k=1..m} d f_t / d e_s at b + (k/m)(e - b)
                           (Sundararajan et al. 2017); completeness: sum_s IG_s -> f_t(e) - f_t(b)
                           as m grows; the gap sum_s IG_s - (f_t(e) - f_t(b)) is reported per
                           target (it shrinks like 1/m: a right Riemann sum).

Efficient by construction: one forward of the (interpolated) inputs serves every target, and
each backward returns the input gradients of a whole batch of targets at once: the cotangents
are the rows of an identity matrix, vectorized with `torch.autograd.grad(...,
is_grads_batched=True)`. The interpolated inputs of integrated gradients do not depend on the
target, so one path serves all of them. Weights take no gradient (`input_only`): the backward
computes only what the input gradients need. Batch sizes come from the memory estimate
(`budget.gradient_batches`).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import WorkbenchError
from . import budget
from .result import Attribution, lower_triangular, source_mask
from .target import Targets, hidden_states, scores

if TYPE_CHECKING:
    from ..model.handle import Model

METHODS = ("saliency", "input_x_gradient", "integrated_gradients")


@contextmanager
def input_only(model: "Model"):
    """Parameters take no gradient inside the block (restored afterwards)."""
    parameters = list(model.hf.parameters())
    flags = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(parameters, flags):
            p.requires_grad_(flag)


def baseline_embeddings(model: "Model", embeds: torch.Tensor, baseline) -> torch.Tensor:
    """The integrated-gradients baseline b [1, T, d]: "zeros", or a token id whose embedding
    stands at every position."""
    if baseline == "zeros":
        return torch.zeros_like(embeds)
    if isinstance(baseline, int) and not isinstance(baseline, bool) and 0 <= baseline < model.vocab_size:
        ids = torch.full(embeds.shape[:2], baseline, device=embeds.device)
        return model.hf.get_input_embeddings()(ids).to(embeds.dtype)
    raise WorkbenchError(f"baseline must be 'zeros' or a token id in [0, {model.vocab_size}), got {baseline!r}")


def _batched_input_gradients(values: torch.Tensor, inputs: torch.Tensor, rows: range, retain: bool) -> torch.Tensor:
    """values [P, K] (f of K targets at P inputs [P, T, d]) -> d values[:, k] / d inputs for
    the targets k in `rows`: [len(rows), P, T, d], from one vectorized backward."""
    cotangents = torch.zeros((len(rows),) + tuple(values.shape), dtype=values.dtype, device=values.device)
    cotangents[torch.arange(len(rows)), :, torch.tensor(list(rows))] = 1
    (gradients,) = torch.autograd.grad(values, inputs, grad_outputs=cotangents, is_grads_batched=True,
                                       retain_graph=retain)
    return gradients


def gradient_attribution(model: "Model", ids: torch.Tensor, targets: Targets, method: str, *, steps: int = 32,
                         baseline="zeros", target_batch: int | None = None, point_batch: int | None = None,
                         progress: bool = True) -> Attribution:
    """Attribute each target of `targets` to every earlier position of `ids` [T] with
    `method` (one of METHODS). steps and baseline: integrated gradients only. target_batch:
    targets per backward; point_batch: interpolated inputs per forward (None: as many as
    the memory estimate allows)."""
    if method not in METHODS:
        raise WorkbenchError(f"unknown gradient method '{method}'; use one of {', '.join(METHODS)}")
    integrated = method == "integrated_gradients"
    if integrated and (not isinstance(steps, int) or steps < 1):
        raise WorkbenchError(f"steps must be a positive integer, got {steps!r}")
    n_tokens, n_targets = len(ids), len(targets)
    alphas = [k / steps for k in range(1, steps + 1)] if integrated else [1.0]
    points, per_backward = budget.gradient_batches(model, n_tokens, n_targets, len(alphas), method.replace("_", " "),
                                                   target_batch, point_batch)
    sums = torch.zeros(n_targets, n_tokens, dtype=torch.float64)  # [K, T]
    rows_at = targets.positions - 1
    with input_only(model):
        with torch.no_grad():
            embeds = model.hf.get_input_embeddings()(ids[None])  # [1, T, d]
            base = baseline_embeddings(model, embeds, baseline) if integrated else None
        point_chunks = [alphas[i:i + points] for i in range(0, len(alphas), points)]
        target_chunks = [range(i, min(i + per_backward, n_targets)) for i in range(0, n_targets, per_backward)]
        bar = tqdm(total=len(point_chunks) * len(target_chunks), desc=method.replace("_", " "), unit="backward",
                   disable=not progress, leave=False)
        at_input = None
        for chunk in point_chunks:
            alpha = torch.tensor(chunk, dtype=embeds.dtype, device=embeds.device)[:, None, None]  # [P, 1, 1]
            inputs = (base + alpha * (embeds - base) if integrated else embeds).detach().requires_grad_(True)
            values = scores(model, hidden_states(model, inputs_embeds=inputs)[:, rows_at],
                            targets.ids.expand(len(chunk), -1), _expand(targets.foils, len(chunk)))  # [P, K]
            if chunk[-1] == 1.0:
                at_input = values[-1].detach()
            for index, rows in enumerate(target_chunks):
                gradients = _batched_input_gradients(values, inputs, rows, retain=index < len(target_chunks) - 1)
                sums[rows.start:rows.stop] += _reduce(method, gradients, embeds, base).double().cpu()
                bar.update()
            del values, inputs
        bar.close()
        result = sums / len(alphas) if integrated else sums
        per_target = {}
        if integrated:
            with torch.no_grad():
                at_base = scores(model, hidden_states(model, inputs_embeds=base)[:, rows_at], targets.ids[None],
                                 _expand(targets.foils, 1))[0]
            mask = torch.from_numpy(source_mask(targets.positions, n_tokens))
            total = (result * mask).sum(1)
            per_target["ig_gap"] = (total - (at_input - at_base).double().cpu()).numpy()
            per_target["ig_delta"] = (at_input - at_base).double().cpu().numpy()
    params = {"steps": steps, "baseline": baseline} if integrated else {}
    return Attribution(lower_triangular(result.numpy(), targets.positions), at_input.double().cpu().numpy(),
                       per_target, params)


def _expand(foils: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if foils is None else foils.expand(n, -1)


def _reduce(method: str, gradients: torch.Tensor, embeds: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
    """gradients [Kc, P, T, d] -> per-source values [Kc, T] (summed over the P points)."""
    if method == "saliency":
        return torch.linalg.vector_norm(gradients[:, 0], dim=-1)
    if method == "input_x_gradient":
        return (gradients[:, 0] * embeds[0]).sum(-1)
    return (gradients.sum(1) * (embeds[0] - base[0])).sum(-1)
