"""The decode engine: prefixes -> sampled continuations, one token per row per step, with the
KV cache, recording every step the same way (`Step`, named fields).

All rows go through the model at once with one cache: the prefixes are left-padded to a
common length under an attention mask (position ids count real tokens only; without padding
no mask is passed, which is faster), each distinct prefix is prefilled once and its cache
repeated for its n rows, every step draws one token per row with `sampler.sample(logits
[B, V], generator)`, and a row leaves the batch (its cache rows dropped) when it draws an
end-of-sequence token or its text contains a stop string. The cached forward is always
`FamilyAdapter.new_cache` / `forward_cached`. The draws come from one seeded generator
(`seeded_generator`): the same seed gives the same continuations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..errors import WorkbenchError
from ..finite import all_finite, logits_valid
from ..forward import memory
from ..kernels import VocabStats, vocab_stats
from ..kernels.sample import SampleResult
from ..samplers import Sampler
from ..tokens import Tokens

if TYPE_CHECKING:
    from ..model.handle import Model


@dataclass
class Step:
    """One step of the rows still decoding; batch row b is output row `rows[b]`.

    stats: the model's own next-token distribution (temperature 1, before truncation) with
    the drawn tokens as targets, [B] (top-k ids and probabilities [B, k] when asked for);
    temperature: the sampler's temperature per row [B]; draw: the sampler's draw (ids, kept-set
    size, kept-set entropy, the drawn token's probability under the sampling distribution), [B].
    """

    rows: list[int]
    stats: VocabStats
    temperature: torch.Tensor
    draw: SampleResult


# What a step records per row, by name: the drawn token's log-probability, rank and the entropy
# under the model's own distribution; the sampler's temperature, kept-set size, kept-set
# entropy and the drawn token's probability under the sampling distribution. Each: Step -> [B].
STEP_FIELDS: dict[str, Callable[[Step], torch.Tensor]] = {
    "logprob": lambda step: step.stats.target_logprob,
    "entropy": lambda step: step.stats.entropy,
    "rank": lambda step: step.stats.target_rank,
    "temperature": lambda step: step.temperature,
    "kept": lambda step: step.draw.kept,
    "kept_entropy": lambda step: step.draw.kept_entropy,
    "sample_prob": lambda step: step.draw.prob,
}
WHOLE_STEP_FIELDS = frozenset({"rank", "kept"})  # the fields that are counts (integers); the others are floats


@dataclass
class Decoded:
    """What `decode` made, per output row (prefix-major: prefix 0's n rows first): the drawn
    ids, why the row stopped ("eos", "stop" or "length") and, when asked for, the final
    hidden state after its last token ([d]; None for a row that ended with end-of-sequence);
    the steps in order; the prefill's final hidden states [prefixes, width, d] (left-padded),
    kept only when asked for (None otherwise); whether the prefill's hidden states were finite
    and every step's logits valid (`finite.logits_valid`: no NaN, no +inf)."""

    ids: list[list[int]]
    stop: list[str]
    final_hidden: list[torch.Tensor | None]
    steps: list[Step]
    prefill_hidden: torch.Tensor | None
    finite: bool = True

    def traces(self, fields: Sequence[str]) -> list[dict[str, list]]:
        """Per row, each of `fields` (names in `STEP_FIELDS`) at each of the row's steps."""
        out = [{name: [] for name in fields} for _ in self.ids]
        for step in self.steps:
            for name in fields:
                for row, value in zip(step.rows, STEP_FIELDS[name](step).tolist()):
                    out[row][name].append(value)
        return out


def decode(model: Model, prefixes: Sequence[Sequence[int]], *, n: int = 1, sampler: Sampler,
           max_new_tokens: int, generator: torch.Generator, stops: Sequence[str] = (), top_k: int = 0,
           final_hidden: bool = False, keep_prefill: bool = False, progress: bool = True,
           desc: str = "sampling") -> Decoded:
    """n sampled continuations of each prefix (token ids), all rows batched.

    stops: strings that end a row once its generated text contains one. top_k: the top of
    each step's distribution kept in `Step.stats`. final_hidden: run one more forward for the
    rows that did not end with end-of-sequence, for the prediction after their last token.
    keep_prefill: keep the prefill's final hidden states [prefixes, width, d] in the result.
    """
    if not prefixes or any(len(p) == 0 for p in prefixes):
        raise WorkbenchError("every prefix needs at least one token")
    width = max(len(p) for p in prefixes)
    check_sampling_memory(model, len(prefixes) * n, width + max_new_tokens, prefill_tokens=len(prefixes) * width)
    eos = torch.tensor(sorted(set(model.eos_ids)), device=model.device)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else int(eos[0])
    input_ids = torch.full((len(prefixes), width), pad, dtype=torch.long, device=model.device)
    mask = torch.zeros_like(input_ids)
    for u, prefix in enumerate(prefixes):  # left padding
        input_ids[u, width - len(prefix):] = torch.tensor(list(prefix), device=model.device)
        mask[u, width - len(prefix):] = 1
    padded = any(len(p) != width for p in prefixes)
    rows_total = len(prefixes) * n
    cache = model.adapter.new_cache(model.hf)
    with torch.inference_mode():
        output = model.adapter.forward_cached(model.hf, cache, input_ids=input_ids, attention_mask=mask if padded else None,
                                              position_ids=(mask.cumsum(-1) - 1).clamp_min(0))
        out = Decoded(ids=[[] for _ in range(rows_total)], stop=["length"] * rows_total,
                      final_hidden=[None] * rows_total, steps=[],
                      prefill_hidden=output.last_hidden_state if keep_prefill else None,
                      finite=all_finite(output.last_hidden_state))
        hidden = output.last_hidden_state[:, -1].repeat_interleave(n, 0)  # [B, d]
        if n > 1:
            cache.batch_repeat_interleave(n)
        mask = mask.repeat_interleave(n, 0)  # [B, width + steps]
        positions = mask.sum(-1)  # [B]: the next token's position id
        rows = torch.arange(rows_total, device=model.device)  # output row of each batch row
        for step in tqdm(range(max_new_tokens), desc=desc, unit="tok", disable=not progress, leave=False):
            logits = model.adapter.logits(model.hf, hidden).float()  # [B, V]
            out.finite = out.finite and logits_valid(logits)
            temperature = sampler.temperatures(logits)
            draw = sampler.sample(logits, generator)
            stats = vocab_stats(logits, draw.ids, top_k=min(top_k, logits.shape[-1]))
            out.steps.append(Step(rows.tolist(), stats, temperature, draw))
            for row, token in zip(rows.tolist(), draw.ids.tolist()):
                out.ids[row].append(token)
            ended = torch.isin(draw.ids, eos)  # [B]
            stopped = _stopped(model, out, rows, stops) & ~ended if stops else torch.zeros_like(ended)
            for reason, which in (("eos", ended), ("stop", stopped)):
                for row in rows[which].tolist():
                    out.stop[row] = reason
            done = ended | stopped
            if step == max_new_tokens - 1:
                done[:] = True
            forward = ~ended if final_hidden else ~done  # rows whose next hidden state is needed
            if not forward.any():
                break
            keep = forward.nonzero()[:, 0]
            if not forward.all():
                cache.batch_select_indices(keep)
            rows, mask, positions, done = rows[keep], mask[keep], positions[keep], done[keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            output = model.adapter.forward_cached(model.hf, cache, input_ids=draw.ids[keep][:, None],
                                                  attention_mask=mask if padded else None, position_ids=positions[:, None])
            positions = positions + 1
            hidden = output.last_hidden_state[:, -1]
            if done.any():  # rows that only needed their final hidden state leave the batch
                for b in done.nonzero()[:, 0].tolist():
                    out.final_hidden[rows[b].item()] = hidden[b]
                if done.all():
                    break
                alive = (~done).nonzero()[:, 0]
                cache.batch_select_indices(alive)
                rows, mask, positions, hidden = rows[alive], mask[alive], positions[alive], hidden[alive]
    return out


def _stopped(model: Model, out: Decoded, rows: torch.Tensor, stops: Sequence[str]) -> torch.Tensor:
    """[B] bool: rows whose generated text contains a stop string."""
    hits = [any(s in model.tokenizer.decode(out.ids[row]) for s in stops) for row in rows.tolist()]
    return torch.tensor(hits, device=rows.device)


def seeded_generator(device, seed: int | None) -> torch.Generator:
    """The generator all draws come from: seeded with `seed` (same seed, same draws), or
    with a fresh random seed when None."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**63))
    return generator


def check_context_room(model: Model, tokens: Tokens, max_new_tokens: int) -> None:
    """Refuse a prompt that leaves no room for `max_new_tokens` in the model's context."""
    limit = model.context_length
    if limit is not None and len(tokens.ids) + max_new_tokens > limit:
        raise WorkbenchError(f"the prompt is {len(tokens.ids)} tokens and {max_new_tokens} new tokens "
                             f"would exceed {model.name}'s context of {limit}; shorten the prompt or ask for fewer")


def check_sampling_memory(model: Model, rows: int, length: int, *, prefill_tokens: int, what: str | None = None,
                          advice: str = "ask for fewer responses (n), fewer new tokens or smaller batches") -> None:
    """Refuse, before allocating, a batch whose KV cache and logits would not fit: per row
    2 x layers x hidden x length cache entries (an upper bound under GQA) and a few [V] rows,
    plus the prefill forward of `prefill_tokens`. what / advice: the refusal's words."""
    element = torch.finfo(model.dtype).bits // 8
    cache = 2 * model.n_layers * model.hidden_size * length * element
    needed = rows * (cache + 4 * model.vocab_size * 4) + memory.forward_bytes(model, prefill_tokens)
    memory.check_fits(what or f"sampling {rows} responses of up to {length} tokens", needed, model.device, advice)
