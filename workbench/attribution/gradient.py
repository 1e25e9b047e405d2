"""Gradient attribution: saliency, input x gradient, integrated gradients, with many targets
per backward.

With e_s the input embedding of source s and f_t the target function (`target.scores`):

    saliency               ||d f_t / d e_s||_2        (Simonyan et al. 2014)
    input x gradient       <e_s, d f_t / d e_s>       (Shrikumar et al. 2016)
    integrated gradients   (e_s - b_s) . sum_k w_k d f_t / d e_s at b + alpha_k (e - b)
                           (Sundararajan et al. 2017), the path integral over alpha in [0, 1] by
                           an m-point rule (`path_points`); completeness: sum_s IG_s -> f_t(e) -
                           f_t(b) as m grows; the gap sum_s IG_s - (f_t(e) - f_t(b)) is reported
                           per target, and `incomplete` flags a gap above COMPLETENESS_TOLERANCE.

The defaults of integrated gradients (STEPS, BASELINE, RULE: 32 steps of the right Riemann sum
from the zero embedding) were chosen by benchmarks/ig_completeness.py (results in
benchmarks/results/ig-completeness-cpu.json): on the embedded SmolLM2 and two short texts, the
largest relative gap |gap| / |f(e) - f(b)| over their targets is, for 16 / 32 / 64 steps,
    zero baseline     right 6.6 / 3.5 / 0.74   midpoint 4.2 / 2.1 / 2.6   Gauss-Legendre 4.2 / 3.4 / 9.4
                      trapezoid: NaN (the gradient at the zero embedding itself is not defined)
    <|im_end|> (eos)  right 9.2 / 17 / 7.3     midpoint 24 / 2.1 / 24     Gauss-Legendre up to 47
    <|im_start|>      right 12 / 6.0 / 2.9     midpoint 24 / 1.9 / 10     trapezoid 12 / 6.0 / 2.9
f along the path is rough: on "The capital of France is Paris." (alpha on a grid of 2,001
points) it travels six times |f(e) - f(b)|, with jumps of up to 8 nats between neighbouring
points (from zero near alpha = 0.01, likely where RMSNorm of the shrunken embeddings switches
on; from <|im_end|> near 0.54). The higher-order rules, which assume a smooth integrand, gain
nothing, no baseline offered is smoother than zero, and even the right
Riemann sum from zero does not shrink steadily (128 steps: 1.5, 256: 5.1).
No setting within 8 times the cost resolves the integral there, so the default keeps the
cheapest of the least bad, and a result whose gap is too large says so
(IncompleteAttributionWarning) instead of every target paying for more steps.
"""
from __future__ import annotations

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
RULES = ("right", "midpoint", "trapezoid", "gauss_legendre")
STEPS, BASELINE, RULE = 32, "zeros", "right"  # integrated gradients' defaults (see the module's docstring)
COMPLETENESS_TOLERANCE = 0.1  # a gap above this share of |f(x) - f(b)| is reported (`incomplete`)
GAP_FLOOR = 0.01  # nats: a smaller gap is never reported


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


def path_points(steps: int, rule: str) -> tuple[list[float], list[float]]:
    """The quadrature of integrated gradients' path integral over alpha in [0, 1]: (points
    alpha_k, weights w_k) with sum_k w_k = 1. right: k/m, k = 1..m, each 1/m (error ~ 1/m);
    midpoint: (k - 1/2)/m (error ~ 1/m^2 for a smooth integrand); trapezoid: k/m, k = 0..m,
    1/m inside and 1/(2m) at both ends (m + 1 points); gauss_legendre: the m-point
    Gauss-Legendre nodes mapped to [0, 1]."""
    if rule == "right":
        return [k / steps for k in range(1, steps + 1)], [1 / steps] * steps
    if rule == "midpoint":
        return [(k - 0.5) / steps for k in range(1, steps + 1)], [1 / steps] * steps
    if rule == "trapezoid":
        return [k / steps for k in range(steps + 1)], [0.5 / steps] + [1 / steps] * (steps - 1) + [0.5 / steps]
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return ((nodes + 1) / 2).tolist(), (weights / 2).tolist()
    raise WorkbenchError(f"unknown integration rule '{rule}'; use one of {', '.join(RULES)}")


def gradient_attribution(model: "Model", ids: torch.Tensor, targets: Targets, method: str, *, steps: int = STEPS,
                         baseline=BASELINE, rule: str = RULE, target_batch: int | None = None,
                         point_batch: int | None = None, progress: bool = True) -> Attribution:
    """Attribute each target of `targets` to every earlier position of `ids` [T] with
    `method` (one of METHODS). steps, baseline and rule (one of RULES, see `path_points`):
    integrated gradients only. target_batch: targets per backward; point_batch: interpolated
    inputs per forward (None: as many as the memory estimate allows)."""
    if method not in METHODS:
        raise WorkbenchError(f"unknown gradient method '{method}'; use one of {', '.join(METHODS)}")
    integrated = method == "integrated_gradients"
    if integrated and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise WorkbenchError(f"steps must be a positive integer, got {steps!r}")
    n_tokens, n_targets = len(ids), len(targets)
    alphas, weights = path_points(steps, rule) if integrated else ([1.0], [1.0])
    points, per_backward = budget.gradient_batches(model, n_tokens, n_targets, len(alphas), method.replace("_", " "),
                                                   target_batch, point_batch)
    sums = torch.zeros(n_targets, n_tokens, dtype=torch.float64)  # [K, T]
    rows_at = targets.positions - 1
    with input_only(model):
        with torch.no_grad():
            embeds = model.hf.get_input_embeddings()(ids[None])  # [1, T, d]
            base = baseline_embeddings(model, embeds, baseline) if integrated else None
        point_chunks = [range(i, min(i + points, len(alphas))) for i in range(0, len(alphas), points)]
        target_chunks = [range(i, min(i + per_backward, n_targets)) for i in range(0, n_targets, per_backward)]
        bar = tqdm(total=len(point_chunks) * len(target_chunks), desc=method.replace("_", " "), unit="backward",
                   disable=not progress, leave=False)
        for chunk in point_chunks:
            alpha = torch.tensor([alphas[i] for i in chunk], dtype=embeds.dtype, device=embeds.device)[:, None, None]
            weight = torch.tensor([weights[i] for i in chunk], dtype=_summing(embeds), device=embeds.device)  # [P]
            inputs = (base + alpha * (embeds - base) if integrated else embeds).detach().requires_grad_(True)
            values = scores(model, hidden_states(model, inputs_embeds=inputs)[:, rows_at],
                            targets.ids.expand(len(chunk), -1), _expand(targets.foils, len(chunk)))  # [P, K]
            if not integrated:
                at_input = values[0].detach()
            for index, rows in enumerate(target_chunks):
                gradients = _batched_input_gradients(values, inputs, rows, retain=index < len(target_chunks) - 1)
                sums[rows.start:rows.stop] += _reduce(method, gradients, embeds, base, weight).double().cpu()
                bar.update()
            del values, inputs
        bar.close()
        per_target = {}
        if integrated:
            with torch.no_grad():  # f at the input and at the baseline: one forward of both
                ends = scores(model, hidden_states(model, inputs_embeds=torch.cat([embeds, base]))[:, rows_at],
                              targets.ids.expand(2, -1), _expand(targets.foils, 2))  # [2, K]
            at_input, delta = ends[0], (ends[0] - ends[1]).double().cpu()
            total = (sums * torch.from_numpy(source_mask(targets.positions, n_tokens))).sum(1)
            per_target["ig_gap"] = (total - delta).numpy()
            per_target["ig_delta"] = delta.numpy()
    params = {"steps": steps, "baseline": baseline, "rule": rule} if integrated else {}
    return Attribution(lower_triangular(sums.numpy(), targets.positions), at_input.double().cpu().numpy(),
                       per_target, params)


def incomplete(gap: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """[K] bool: the targets whose completeness gap exceeds COMPLETENESS_TOLERANCE of
    |f(x) - f(b)| (and GAP_FLOOR nats, below which a gap is rounding), or is not finite (a NaN
    gradient on the path: nothing is resolved)."""
    gap, delta = np.asarray(gap, dtype=np.float64), np.asarray(delta, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        beyond = np.abs(gap) > np.maximum(COMPLETENESS_TOLERANCE * np.abs(delta), GAP_FLOOR)
    return ~np.isfinite(gap) | ~np.isfinite(delta) | beyond


def completeness_note(positions: np.ndarray, gap: np.ndarray, delta: np.ndarray) -> str | None:
    """One sentence naming the targets (positions [K]) that miss completeness, or None."""
    missed = incomplete(gap, delta)
    if not missed.any():
        return None
    with np.errstate(invalid="ignore"):
        relative = np.nan_to_num(np.abs(gap) / np.maximum(np.abs(delta), GAP_FLOOR), nan=np.inf)
    worst = int(np.argmax(np.where(missed, relative, -1)))
    return (f"integrated gradients: the attributions of {int(missed.sum())} of {len(gap)} targets miss "
            f"f(x) - f(baseline) by more than {COMPLETENESS_TOLERANCE:.0%} or are not finite (worst: position "
            f"{int(positions[worst])}, gap {gap_said(gap[worst])} of {gap_said(delta[worst])}); the path integral is "
            "not resolved: use more steps or another baseline, and read those targets' attributions with care "
            "(column ig_gap)")


def gap_said(value: float) -> str:
    """A gap (or f(x) - f(b)) for a sentence: the number, or 'not finite'."""
    return f"{value:+.3g}" if np.isfinite(value) else "not finite"


def _expand(foils: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if foils is None else foils.expand(n, -1)


def _reduce(method: str, gradients: torch.Tensor, embeds: torch.Tensor, base: torch.Tensor | None,
            weight: torch.Tensor) -> torch.Tensor:
    """gradients [Kc, P, T, d] -> per-source values [Kc, T] (integrated gradients: the P
    points summed with their quadrature weights [P])."""
    if method == "saliency":
        return torch.linalg.vector_norm(gradients[:, 0], dim=-1)
    if method == "input_x_gradient":
        return (gradients[:, 0] * embeds[0]).sum(-1)
    summing = _summing(embeds)
    return (torch.einsum("kptd,p->ktd", gradients.to(summing), weight) * (embeds[0] - base[0]).to(summing)).sum(-1)


def _summing(embeds: torch.Tensor) -> torch.dtype:
    """The dtype of the quadrature sum: at least fp32 (bf16 would round the rule's weights to
    3 digits, and a Gauss-Legendre rule would lose its exactness)."""
    return torch.promote_types(embeds.dtype, torch.float32)
