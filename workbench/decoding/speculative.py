"""Speculative sampling, traced: a draft model proposes, the target model verifies, and the
output is distributed exactly as sampling from the target alone.

Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding" (Algorithm 1);
Chen et al. 2023, "Accelerating Large Language Model Decoding with Speculative Sampling". With S
the user's sampler as a map logits -> distribution (temperature, then truncation: the same
`Sampler.filter` for both models), x the tokens so far, one step is:

  1. draft:  d_i ~ q_i = S(draft logits after x d_1..d_{i-1}),  i = 1..gamma
  2. score:  p_i = S(target logits after x d_1..d_{i-1}),  i = 1..gamma+1, one target forward
  3. verify: accept d_i with probability min(1, p_i(d_i) / q_i(d_i)), in order; at the first
     rejection draw the step's last token from the residual norm(max(0, p_i - q_i)); when all
     gamma are accepted draw a bonus token from p_{gamma+1}.

Every emitted token is then a draw from p given the tokens before it (Leviathan et al. 2023,
Appendix A.1; Chen et al. 2023, Theorem 1). The acceptance rate at a position is
alpha_i = sum_v min(p_i,v, q_i,v) = 1 - TV(p_i, q_i); with a constant alpha the expected number
of tokens per step is (1 - alpha^(gamma+1)) / (1 - alpha) (Leviathan et al. 2023, eq. 1).

The engine's pieces carry it: each model keeps one KV cache (`FamilyAdapter.new_cache` /
`forward_cached`) and the count of tokens it holds; a forward feeds only the tokens its cache
lacks (the first one is the prefill). After a step both caches are rolled back to the tokens
that were kept with the cache's own `crop` (transformers' `DynamicCache.crop`: no
recomputation; a cache that cannot roll back, such as a sliding-window layer past its window,
is rebuilt by recomputing the kept tokens). Every draw (drafts, acceptance uniforms, residual and bonus tokens) comes from
the one seeded generator (`engine.seeded_generator`): the same seed gives the same output.
One prompt, one row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import WorkbenchError
from ..finite import all_finite, logits_valid, non_finite_cause
from ..kernels import vocab_stats
from ..kernels.sample import SampleResult
from ..model.vocabulary import check_same_vocabulary
from ..samplers import Sampler
from .engine import Decoded, Step, check_sampling_memory

if TYPE_CHECKING:
    from ..model.handle import Model


@dataclass
class DraftStep:
    """One speculative step: gamma_s = len(drafted) tokens proposed (gamma, or fewer at the
    end of the budget), `accepted` of them kept in order, then `token` drawn from the residual
    norm(max(0, p - q)) at the first rejected position (`residual` True) or from the target's
    p after all of them (the bonus, `residual` False). Per drafted position i: the draft's and
    the target's sampling probabilities of d_i, the acceptance probability min(1, p_i(d_i) /
    q_i(d_i)) and the acceptance rate alpha_i = sum_v min(p_i,v, q_i,v). Positions after the
    first rejection were scored but not tried."""

    drafted: list[int]
    draft_prob: list[float]
    target_prob: list[float]
    accept_prob: list[float]
    alpha: list[float]
    accepted: int
    token: int
    residual: bool

    @property
    def tokens(self) -> int:
        """Tokens this step made: the accepted drafts and the one drawn after them."""
        return self.accepted + 1

    def expected_tokens(self) -> float:
        """E[tokens of this step | its drafts] = 1 + sum_{i=1..gamma_s} prod_{j<=i} min(1, p_j/q_j)(d_j):
        exact given the drafted tokens (only the acceptance draws are random)."""
        expected, survive = 1.0, 1.0
        for a in self.accept_prob:
            survive *= a
            expected += survive
        return expected


def acceptance_probability(p_token: torch.Tensor, q_token: torch.Tensor) -> torch.Tensor:
    """min(1, p(d) / q(d)) for a token d drawn from q (so q(d) > 0)."""
    return torch.clamp(p_token / q_token, max=1.0)


def expected_tokens_per_step(alpha, gamma: int):
    """Leviathan et al. 2023, eq. 1: (1 - alpha^(gamma+1)) / (1 - alpha) tokens per step for
    i.i.d. acceptances at rate alpha (gamma + 1 at alpha = 1); alpha a number or an array (a
    float, or an array of the same shape). [alpha .7, gamma 4 -> 2.7731]"""
    a = np.asarray(alpha, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(a >= 1, gamma + 1.0, (1 - a ** (gamma + 1)) / (1 - a))
    return float(expected) if expected.ndim == 0 else expected


def summary(trace: Sequence[DraftStep], gamma: int) -> dict:
    """The trace in numbers: steps, tokens drafted and accepted, the measured mean tokens per
    step (accepted drafts + 1), its exact expectation given the drafts (mean of
    `DraftStep.expected_tokens`), the mean acceptance rate alpha over all drafted positions and
    the analytic expectation from it (eq. 1, with each step's own gamma_s, averaged)."""
    drafted = sum(len(step.drafted) for step in trace)
    alphas = [a for step in trace for a in step.alpha]
    mean_alpha = sum(alphas) / len(alphas) if alphas else None
    # With no drafts at all every step makes one token, whatever alpha.
    analytic = sum(expected_tokens_per_step(mean_alpha or 0.0, len(step.drafted)) for step in trace) / len(trace)
    tried = sum(min(step.accepted + 1, len(step.drafted)) for step in trace)
    return {
        "gamma": gamma,
        "steps": len(trace),
        "drafted": drafted,
        "accepted": sum(step.accepted for step in trace),
        "acceptance_rate": sum(step.accepted for step in trace) / tried if tried else None,
        "mean_alpha": mean_alpha,
        "tokens_per_step": sum(step.tokens for step in trace) / len(trace),
        "expected_tokens_given_drafts": sum(step.expected_tokens() for step in trace) / len(trace),
        "expected_tokens_analytic": analytic,
    }


def require_shared_vocabulary(model: Model, draft: Model) -> None:
    """Speculative sampling compares p and q token by token: the draft must use the target's
    token ids (`check_same_vocabulary`) over the same head size, and sit on the same device."""
    check_same_vocabulary(model, draft, "speculative sampling")
    if draft.vocab_size != model.vocab_size:
        raise WorkbenchError(
            f"the draft {draft.name} does not share {model.name}'s head size ({draft.vocab_size} vs {model.vocab_size} "
            "output tokens); speculative sampling needs the same one (for the embedded SmolLM2: workbench:smollm2-first-k)")
    if draft.device != model.device:
        raise WorkbenchError(f"the draft is on {draft.device} and {model.name} on {model.device}; load both on one device")


class CachedModel:
    """One model with its KV cache and the number of leading tokens the cache holds."""

    def __init__(self, model: Model):
        self.model = model
        self.cache = model.adapter.new_cache(model.hf)
        self.length = 0
        self.finite = True

    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        """Bring the cache to hold `ids` (it holds a prefix of them) by one forward of the
        tokens it lacks; their final hidden states [new, d]."""
        new = torch.tensor(list(ids[self.length:]), device=self.model.device)[None]  # [1, new]
        positions = torch.arange(self.length, len(ids), device=self.model.device)[None]
        output = self.model.adapter.forward_cached(self.model.hf, self.cache, input_ids=new, position_ids=positions)
        self.length = len(ids)
        hidden = output.last_hidden_state[0]
        self.finite = self.finite and all_finite(hidden)
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., d] -> fp32 logits [..., V], noting non-finite ones."""
        logits = self.model.adapter.logits(self.model.hf, hidden).float()
        self.finite = self.finite and logits_valid(logits)
        return logits

    def roll_back(self, length: int) -> None:
        """Keep only the first `length` tokens in the cache: the cache's own crop (a negative
        count removes that many tokens), or, for a cache that cannot roll back (a sliding-window
        layer past its window), an empty cache whose next forward recomputes them."""
        if self.length <= length:
            return
        try:
            self.cache.crop(length - self.length)
        except (RuntimeError, ValueError, AttributeError):
            self.cache, length = self.model.adapter.new_cache(self.model.hf), 0
        self.length = length


def speculative_decode(model: Model, draft: Model, prompt: Sequence[int], *, sampler: Sampler, gamma: int,
                       max_new_tokens: int, generator: torch.Generator, stops: Sequence[str] = (), top_k: int = 0,
                       final_hidden: bool = False, progress: bool = True) -> tuple[Decoded, list[DraftStep]]:
    """Continue `prompt` (token ids) by speculative sampling with `draft` proposing `gamma`
    tokens per step; at most `max_new_tokens` tokens, ending early at an end-of-sequence token
    or once the text contains one of `stops`.

    Returns the engine's `Decoded` (one row: the emitted ids, why it stopped, one `Step` per
    emitted token holding the target's statistics at temperature 1 (`top_k` of them) and its
    sampler's view of that position (kept set, its entropy, the token's probability); the
    prompt's final hidden states; with `final_hidden`, one more target forward for the hidden
    state after the last token unless it was the end of sequence) and the trace, one
    `DraftStep` per step.
    """
    if not isinstance(gamma, int) or gamma < 1:
        raise WorkbenchError(f"gamma (tokens drafted per step) must be a positive integer, got {gamma!r}")
    if not prompt:
        raise WorkbenchError("the prompt needs at least one token")
    require_shared_vocabulary(model, draft)
    for each in (model, draft):
        check_sampling_memory(each, 1, len(prompt) + max_new_tokens + gamma, prefill_tokens=len(prompt) + gamma)
    eos = set(model.eos_ids)
    target, proposer = CachedModel(model), CachedModel(draft)
    ids = list(prompt)
    out = Decoded(ids=[[]], stop=["length"], final_hidden=[None], steps=[], prefill_hidden=None)
    trace: list[DraftStep] = []
    bar = tqdm(total=max_new_tokens, desc="speculative sampling", unit="tok", disable=not progress, leave=False)
    with torch.inference_mode():
        while out.stop[0] == "length" and len(out.ids[0]) < max_new_tokens:
            steps = min(gamma, max_new_tokens - len(out.ids[0]) - 1)
            drafted, q = _draft(proposer, ids, steps, sampler, generator)  # q: [steps, V]
            hidden = target.feed(ids + drafted)
            if out.prefill_hidden is None:
                out.prefill_hidden = hidden[None, :len(prompt)]  # [1, P, d]
            logits = target.logits(hidden[-(steps + 1):])  # [steps + 1, V]
            kept, p = sampler.filter(logits)
            step = _verify(drafted, p.double(), q, generator)
            trace.append(step)
            made = drafted[:step.accepted] + [step.token]
            for offset, token in enumerate(made):  # emit one by one: eos and stop strings end the row mid-step
                out.ids[0].append(token)
                out.steps.append(_token_step(sampler, logits[offset], kept[offset], p[offset], token, top_k))
                if token in eos:
                    out.stop[0] = "eos"
                elif stops and any(s in model.tokenizer.decode(out.ids[0]) for s in stops):
                    out.stop[0] = "stop"
                if out.stop[0] != "length":
                    break
            bar.update(len(made))
            # the tokens both caches may keep: the accepted drafts, but never the last emitted token
            # (its hidden state is the next step's, or the final one), which a stop may leave early
            kept_length = min(len(ids) + step.accepted, len(prompt) + len(out.ids[0]) - 1)
            ids = list(prompt) + out.ids[0]
            target.roll_back(kept_length)
            proposer.roll_back(kept_length)
        if final_hidden and out.stop[0] != "eos":  # the prediction after the last token, as `decode` gives it
            out.final_hidden[0] = target.feed(ids)[-1]
    bar.close()
    out.finite = target.finite  # the draft's are checked as it proposes
    return out, trace


def _draft(proposer: CachedModel, ids: list[int], steps: int, sampler: Sampler,
           generator: torch.Generator) -> tuple[list[int], torch.Tensor]:
    """`steps` tokens drawn one by one from the draft's sampling distributions q_i [steps, V]
    (float64; [0, V] when steps is 0)."""
    drafted, rows = [], []
    for _ in range(steps):
        hidden = proposer.feed(ids + drafted)[-1]
        logits = proposer.logits(hidden)
        if not proposer.finite:  # q cannot be sampled: say why, instead of torch.multinomial's error
            raise WorkbenchError(f"the draft {proposer.model.name} gave NaN or infinite values, so its proposals "
                                 f"cannot be sampled: {non_finite_cause(proposer.model, ids)}")
        q = sampler.filter(logits)[1].double()  # [V]
        drafted.append(int(torch.multinomial(q, 1, generator=generator)))
        rows.append(q)
    vocab = proposer.model.vocab_size
    return drafted, torch.stack(rows) if rows else torch.zeros(0, vocab, dtype=torch.float64)


def _verify(drafted: list[int], p: torch.Tensor, q: torch.Tensor, generator: torch.Generator) -> DraftStep:
    """Accept drafts in order with probability min(1, p_i(d_i) / q_i(d_i)); then the residual
    or bonus draw. p: [steps + 1, V], q: [steps, V], float64."""
    index = torch.arange(len(drafted), device=p.device)
    tokens = torch.tensor(drafted, dtype=torch.long, device=p.device)
    p_drafted, q_drafted = p[index, tokens], q[index, tokens]  # [steps]
    accept = acceptance_probability(p_drafted, q_drafted)
    accepted = 0
    for chance in accept.tolist():
        if torch.rand((), generator=generator, device=p.device, dtype=torch.float64).item() >= chance:
            break
        accepted += 1
    residual = accepted < len(drafted)
    if residual:
        leftover = (p[accepted] - q[accepted]).clamp_min(0.0)
        # Rejection needs q(d) > p(d), so the residual has mass; rounding alone could empty it.
        target = leftover if leftover.sum() > 0 else p[accepted]
    else:
        target = p[accepted]
    token = int(torch.multinomial(target / target.sum(), 1, generator=generator))
    alpha = torch.minimum(p[:len(drafted)], q).sum(-1)  # [steps]
    return DraftStep(drafted=drafted, draft_prob=q_drafted.tolist(), target_prob=p_drafted.tolist(),
                     accept_prob=accept.tolist(), alpha=alpha.tolist(), accepted=accepted, token=token,
                     residual=residual)


def _token_step(sampler: Sampler, logits: torch.Tensor, kept: torch.Tensor, p: torch.Tensor, token: int,
                top_k: int) -> Step:
    """The engine's record of one emitted token from the target's logits [V] at its position:
    statistics at temperature 1 and the sampler's kept set, its entropy and the token's
    probability, as a plain draw would have recorded them."""
    rows = logits[None]
    target = torch.tensor([token], device=logits.device)
    stats = vocab_stats(rows, target, top_k=min(top_k, logits.shape[-1]))
    temperature = sampler.temperatures(rows)
    full = torch.softmax(rows / torch.where(temperature > 0, temperature, 1.0)[:, None], dim=-1)  # greedy: T = 1, as the kernel
    draw = SampleResult(ids=target, kept=kept.sum()[None], entropy=torch.special.entr(full).sum(-1),
                        kept_entropy=torch.special.entr(p[None]).sum(-1), prob=p[token][None])
    return Step([0], stats, temperature, draw)
