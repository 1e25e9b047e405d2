"""The two inputs of a comparison: the same scored tokens, each side with its own context.

A comparison scores the tokens of one text (or one chat conversation) under two predictors,
p (the model) and q (the reference): two models that share a vocabulary, or one model
that reads a different context before the scored tokens. Each side's input is its context
followed by the scored tokens, so scored token t sits at `positions[t]` of that side's ids
and is predicted by the hidden state at `positions[t] - 1`.

- text: the context (a string) is tokenized on its own and placed after the text's leading
  special tokens (a BOS) and before the rest of the text's tokens.
- chat messages: the context is a system prompt, put first in the side's conversation;
  each side renders its conversation through the model's chat template, and the scored
  tokens are the longest common ending of the two renderings (all of it when neither side
  has a context). It must cover every message but the system prompt.

Both sides read the model's tokenizer and chat template (the vocabularies are equal).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import WorkbenchError
from ..tokens import Tokens, check_text, tokenize_messages, tokenize_text


@dataclass
class Side:
    ids: list[int]  # this side's input: its context and the scored tokens
    positions: np.ndarray  # [T] int64: where scored token t sits in `ids`


@dataclass
class Pair:
    tokens: Tokens  # the scored tokens: the Run's rows
    model: Side  # p
    reference: Side  # q

    @property
    def predicted(self) -> np.ndarray:
        """[T] bool: the scored tokens both sides predict (something comes before them on each side)."""
        return (self.model.positions >= 1) & (self.reference.positions >= 1)


def pair_inputs(tokenizer, text: str | None, messages: Sequence[dict] | None, context: str | None,
                reference_context: str | None) -> Pair:
    """The scored tokens and both sides' inputs (see the module docstring)."""
    for name, value in (("context", context), ("reference_context", reference_context)):
        if value is not None:
            check_text(value, name)
    if messages is None:
        return _text_pair(tokenizer, text, context, reference_context)
    return _chat_pair(tokenizer, messages, context, reference_context)


def _text_pair(tokenizer, text: str, context: str | None, reference_context: str | None) -> Pair:
    tokens = tokenize_text(tokenizer, text)
    special = set(tokenizer.all_special_ids)
    lead = 0  # leading special tokens (a BOS) stay first
    while lead < len(tokens.ids) and tokens.ids[lead] in special and tokens.starts[lead] == tokens.ends[lead]:
        lead += 1

    def side(prefix: str | None) -> Side:
        context_ids = [] if prefix is None else tokenizer(prefix, add_special_tokens=False, verbose=False)["input_ids"]
        ids = tokens.ids[:lead] + list(context_ids) + tokens.ids[lead:]
        positions = np.arange(len(tokens.ids), dtype=np.int64)
        positions[lead:] += len(context_ids)
        return Side(ids, positions)

    return Pair(tokens, side(context), side(reference_context))


def _chat_pair(tokenizer, messages: Sequence[dict], context: str | None, reference_context: str | None) -> Pair:
    if context is None and reference_context is None:
        tokens = tokenize_messages(tokenizer, messages)
        whole = Side(tokens.ids, np.arange(len(tokens.ids), dtype=np.int64))
        return Pair(tokens, whole, Side(whole.ids, whole.positions.copy()))
    if any(message.get("role") == "system" for message in messages if isinstance(message, dict)):
        raise WorkbenchError("with messages, context and reference_context are system prompts: leave the system "
                             "message out of messages")
    sides = [tokenize_messages(tokenizer, ([{"role": "system", "content": prompt}] if prompt is not None else [])
                               + list(messages)) for prompt in (context, reference_context)]
    # the common ending, without the last tokens of the system prompts (two prompts may both end in ".")
    common = min(_common_ending(sides[0].ids, sides[1].ids),
                 *(_tokens_after(side, prompt) for side, prompt in zip(sides, (context, reference_context))))
    text = sides[0].text
    after_system = text.find(context) + len(context) if context is not None else 0
    first = text.find(next(m["content"] for m in messages if m.get("content")), after_system)  # the conversation
    if common == 0 or sides[0].starts[len(sides[0].ids) - common] > first:
        raise WorkbenchError("the two system prompts' chat renderings share no common ending that holds the whole "
                             "conversation; compare the texts with text= and context= instead")
    scored = _last_tokens(sides[0], common)
    return Pair(scored, *(Side(s.ids, np.arange(len(s.ids) - common, len(s.ids), dtype=np.int64)) for s in sides))


def _common_ending(a: list[int], b: list[int]) -> int:
    """The number of tokens at the end of `a` and `b` that are equal."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _tokens_after(tokens: Tokens, prompt: str | None) -> int:
    """The number of tokens that start after the system prompt `prompt` in the rendered text
    (all of them without one)."""
    if prompt is None:
        return len(tokens.ids)
    end = tokens.text.find(prompt) + len(prompt)
    return int((tokens.starts >= end).sum())


def _last_tokens(tokens: Tokens, n: int) -> Tokens:
    """The last n tokens, their text starting where the first of them starts."""
    begin = len(tokens.ids) - n
    offset = int(tokens.starts[begin])
    return Tokens(tokens.text[offset:], tokens.ids[begin:], tokens.starts[begin:] - offset,
                  tokens.ends[begin:] - offset, tokens.roles[begin:], n, tokens.template_system)
