"""ReAGent (Zhao & Shan 2024, "ReAGent: A Model-agnostic Feature Attribution Method for
Generative Language Models"): attribution by replacement, no gradients.

For a target y_t and its context x_<t, each of `chains` independent chains keeps logit-scale
importance scores u [t] (initialized uniformly in [0, 1)) and repeats:

1. replace a random subset R of the context (each token with probability `ratio`) by sampled
   tokens, giving x~;
2. delta = p(y_t | x) - p(y_t | x~) (contrastive: half the change of p(y) - p(foil), so that it
   stays in [-1, 1]);
3. u_s += logit(0.5 + 0.5 d_s) with d_s = delta for s in R, -delta otherwise: replaced tokens
   gain importance when the prediction suffers, kept ones lose it;
4. stop the chain when its `keep` most important tokens alone, everything else replaced,
   keep y_t among the model's `top_k` predictions (contrastive: keep p(y) > p(foil)).

The importance is softmax(u) averaged over the chains that stopped (over all chains when none
did within `max_steps`); it sums to 1 over the context. Replacement tokens need no second
model: "uniform" over the vocabulary (special tokens excluded), or "predictions", drawn from
the model's own next-token distribution at each position of the original text (the first
position, which has none, from the uniform one). Any other replacer - a masked LM, say - is a
callable `(ids [N, L], mask [N, L] bool, generator) -> ids [N, L]` that fills the masked
positions.

Every target draws from its own generator, seeded by `seed` and its position, so a target's
result does not depend on which other targets are attributed with it; all active chains of all
targets run in one batched forward per step (two: the update and the stopping check).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import WorkbenchError
from . import budget
from .result import Attribution
from .target import Targets, hidden_states

if TYPE_CHECKING:
    from ..model.handle import Model

REPLACEMENTS = ("uniform", "predictions")
Replacer = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
LOGIT_EPS = 1e-6  # keeps logit(0.5 + 0.5 d) finite when a change is total (d = +-1)


def uniform_replacer(model: "Model") -> Replacer:
    """Masked positions get tokens drawn uniformly from the vocabulary without special tokens."""
    special = set(model.tokenizer.all_special_ids)
    allowed = torch.tensor([i for i in range(model.vocab_size) if i not in special], device=model.device)

    def replace(ids: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        drawn = torch.randint(len(allowed), (int(mask.sum()),), generator=generator, device=generator.device)
        out = ids.clone()
        out[mask] = allowed[drawn.to(allowed.device)]
        return out

    return replace


def prediction_replacer(model: "Model", ids: torch.Tensor) -> Replacer:
    """Masked position s gets a token drawn from p(x_s | x_<s) of the original `ids` [T] (one
    forward; the distributions are built only for the positions being replaced); position 0
    from the uniform replacer."""
    with torch.no_grad():
        hidden = hidden_states(model, input_ids=ids[None])[0]  # [T, d]
    uniform = uniform_replacer(model)

    def replace(batch: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = uniform(batch, mask & (torch.arange(mask.shape[1], device=mask.device) == 0), generator)
        where = mask.clone()
        where[:, 0] = False
        columns = where.nonzero()[:, 1]  # [M] in row-major order
        if len(columns):
            with torch.no_grad():
                logits = model.adapter.logits(model.hf, hidden[columns - 1]).float()  # [M, V]
            drawn = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
            out[where] = drawn.to(out.dtype)
        return out

    return replace


def _replacer(model: "Model", ids: torch.Tensor, replacement) -> Replacer:
    if callable(replacement):
        return replacement
    if replacement == "uniform":
        return uniform_replacer(model)
    if replacement == "predictions":
        return prediction_replacer(model, ids)
    raise WorkbenchError(f"unknown replacement '{replacement}'; use one of {', '.join(REPLACEMENTS)} "
                         "or a callable (ids, mask, generator) -> ids")


def check_parameters(ratio: float, keep: int, top_k: int, chains: int, max_steps: int) -> None:
    if not 0 < ratio < 1:
        raise WorkbenchError(f"ratio must be in (0, 1), got {ratio!r}")
    for name, value in {"keep": keep, "top_k": top_k, "chains": chains, "max_steps": max_steps}.items():
        if not isinstance(value, int) or value < 1:
            raise WorkbenchError(f"{name} must be a positive integer, got {value!r}")


def target_generator(model: "Model", seed: int, position: int) -> torch.Generator:
    """The generator of the target at `position`."""
    return torch.Generator(device=model.device).manual_seed(seed * 1_000_003 + position)


@torch.no_grad()
def predictions(model: "Model", batch: torch.Tensor, lengths: torch.Tensor, ids: torch.Tensor,
                foils: torch.Tensor | None, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For N contexts batch [N, L] (right-padded, lengths [N]) predicting ids [N] (foils [N]):
    the change measure m [N] (p(y), or (p(y) - p(foil)) / 2) and whether the prediction holds
    [N] bool (y among the top_k; contrastive: p(y) > p(foil))."""
    hidden = hidden_states(model, input_ids=batch, lengths=lengths)[torch.arange(len(batch), device=batch.device),
                                                                    lengths - 1]
    logits = model.adapter.logits(model.hf, hidden).double()  # [N, V]
    probs = logits.softmax(-1)
    p_y = probs.gather(-1, ids[:, None])[:, 0]
    if foils is None:
        rank = (logits > logits.gather(-1, ids[:, None])).sum(-1)
        return p_y, rank < top_k
    p_foil = probs.gather(-1, foils[:, None])[:, 0]
    return (p_y - p_foil) / 2, p_y > p_foil


def reagent(model: "Model", ids: torch.Tensor, targets: Targets, *, replacement="uniform", ratio: float = 0.3,
            keep: int = 5, top_k: int = 5, chains: int = 4, max_steps: int = 100, seed: int = 0,
            batch: int | None = None, progress: bool = True) -> Attribution:
    """ReAGent importance of every earlier token for each target: values [K, T], each row a
    distribution over the target's context (NaN from the target on). per_target:
    "reagent_steps" (steps run) and "reagent_stopped" (share of chains that met the stopping
    condition). batch: sequences per forward (None: from the memory estimate)."""
    check_parameters(ratio, keep, top_k, chains, max_steps)
    replace = _replacer(model, ids, replacement)
    n_tokens, n_targets = len(ids), len(targets)
    positions = targets.positions.tolist()
    size = budget.forward_batch(model, max(positions), 1, n_targets * chains, "ReAGent", batch)
    original, _ = predictions(model, ids[None].expand(n_targets, -1), targets.positions, targets.ids, targets.foils,
                              top_k)
    states = [_Chains(model, ids[:t], chains, target_generator(model, seed, t)) for t in positions]
    bar = tqdm(total=max_steps, desc="ReAGent", unit="step", disable=not progress, leave=False)
    for _ in range(max_steps):
        active = [k for k, state in enumerate(states) if not state.stopped.all()]
        if not active:
            break
        updates = [states[k].draw_update(replace, ratio) for k in active]
        changed, _ = _run(model, [u[0] for u in updates], active, targets, top_k, size)
        for k, (_, mask), value in zip(active, updates, changed):
            states[k].update(mask, original[k] - value)
        checks = [states[k].draw_check(replace, keep) for k in active]
        _, holds = _run(model, checks, active, targets, top_k, size)
        for k, hold in zip(active, holds):
            states[k].stop(hold)
        bar.update()
    bar.close()
    values = np.full((n_targets, n_tokens), np.nan)
    for k, (t, state) in enumerate(zip(positions, states)):
        values[k, :t] = state.importance().cpu().numpy()
    per_target = {"reagent_steps": np.array([s.steps for s in states], dtype=np.float64),
                  "reagent_stopped": np.array([float(s.stopped.double().mean()) for s in states])}
    params = {"replacement": replacement if isinstance(replacement, str) else getattr(replacement, "__name__", "custom"),
              "ratio": ratio, "keep": keep, "top_k": top_k, "chains": chains, "max_steps": max_steps, "seed": seed}
    # scores: the change measure on the unchanged input, p(y) (contrastive: (p(y) - p(foil)) / 2)
    return Attribution(values, original.double().cpu().numpy(), per_target, params)


def _run(model, contexts: list[torch.Tensor], active: list[int], targets: Targets, top_k: int, size: int):
    """The change measure and whether the prediction holds ([chains] each) for the contexts
    [chains, t_k] of the active targets, `size` sequences per forward."""
    flat = [(k, row) for k, context in zip(active, contexts) for row in context]
    measures, holds = [], []
    for start in range(0, len(flat), size):
        part = flat[start:start + size]
        lengths = torch.tensor([len(row) for _, row in part], device=targets.ids.device)
        batch = torch.zeros((len(part), int(lengths.max())), dtype=part[0][1].dtype, device=lengths.device)
        for i, (_, row) in enumerate(part):
            batch[i, :len(row)] = row
        index = torch.tensor([k for k, _ in part], device=lengths.device)
        measure, hold = predictions(model, batch, lengths, targets.ids[index],
                                    None if targets.foils is None else targets.foils[index], top_k)
        measures.append(measure)
        holds.append(hold)
    measures, holds = torch.cat(measures), torch.cat(holds)
    per_target = [len(c) for c in contexts]
    return torch.split(measures, per_target), torch.split(holds, per_target)


class _Chains:
    """The chains of one target: context [t], logit scores u [chains, t], stopped [chains]."""

    def __init__(self, model: "Model", context: torch.Tensor, chains: int, generator: torch.Generator):
        self.context, self.generator = context, generator
        self.scores = torch.rand((chains, len(context)), generator=generator, device=generator.device,
                                 dtype=torch.float64).to(context.device)
        self.stopped = torch.zeros(chains, dtype=torch.bool, device=context.device)
        self.steps = 0

    def draw_update(self, replace: Replacer, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(the contexts with a random subset replaced [chains, t], the subset [chains, t])."""
        tiled = self.context.expand(len(self.scores), -1)
        mask = (torch.rand(tiled.shape, generator=self.generator, device=self.generator.device) < ratio).to(tiled.device)
        return replace(tiled, mask, self.generator), mask

    def update(self, mask: torch.Tensor, delta: torch.Tensor) -> None:
        """u += logit(0.5 + 0.5 d) for the chains still running; delta [chains]."""
        signed = torch.where(mask, delta[:, None], -delta[:, None]).double()
        step = torch.logit((0.5 + 0.5 * signed).clamp(LOGIT_EPS, 1 - LOGIT_EPS))
        self.scores = torch.where(self.stopped[:, None], self.scores, self.scores + step)
        self.steps += 1

    def draw_check(self, replace: Replacer, keep: int) -> torch.Tensor:
        """The contexts with all but each chain's `keep` most important tokens replaced."""
        tiled = self.context.expand(len(self.scores), -1)
        top = self.scores.topk(min(keep, tiled.shape[1]), dim=1).indices
        mask = torch.ones(tiled.shape, dtype=torch.bool, device=tiled.device)
        mask.scatter_(1, top, False)
        return replace(tiled, mask, self.generator)

    def stop(self, holds: torch.Tensor) -> None:
        self.stopped |= holds

    def importance(self) -> torch.Tensor:
        """softmax(u) averaged over the stopped chains (all chains when none stopped): [t]."""
        weights = self.scores.softmax(1)
        chosen = self.stopped if self.stopped.any() else torch.ones_like(self.stopped)
        return weights[chosen].mean(0)
