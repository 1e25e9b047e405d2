"""Tokenization with character offsets that map exactly back onto the input text, and
chat messages rendered through the template with each token's role.

Offsets from fast tokenizers can overlap (a byte-level token that splits a multi-byte
character reports the whole character, and so does its neighbour) and leave gaps (trimmed
whitespace, a dummy prefix space). `contiguous_spans` turns them into spans that tile the
text: token i covers text[start_i:end_i], spans do not overlap, and their concatenation is
the text. A character belongs to the first token whose reported span reaches it; tokens
left with nothing (special tokens, the later pieces of a split character) are zero-width.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import WorkbenchError

ROLES_OF_SPEAKERS = {"system": "prompt", "user": "prompt", "assistant": "response"}


@dataclass
class Tokens:
    text: str
    ids: list[int]
    starts: np.ndarray  # [T] int64, character offsets into text
    ends: np.ndarray  # [T]
    roles: list[str]  # "text", or "template" / "prompt" / "response" for chat input
    n_original: int  # tokens before truncation
    template_system: str | None = None  # chat input: the system prompt the template added (`template_system_prompt`)

    @property
    def chat(self) -> bool:
        """Whether these tokens come from chat messages (`tokenize_messages`)."""
        return bool(self.roles) and self.roles[0] != "text"

    @property
    def truncated(self) -> bool:
        return self.n_original > len(self.ids)

    def truncate(self, n: int) -> "Tokens":
        """The first n tokens; the text is cut where the last kept token ends."""
        end = int(self.ends[n - 1]) if n else 0
        return Tokens(self.text[:end], self.ids[:n], self.starts[:n], self.ends[:n], self.roles[:n], self.n_original,
                      self.template_system)


def contiguous_spans(offsets: Sequence[tuple[int, int]], text_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Reported (start, end) offsets [T] -> spans that tile text[0:text_length] in order.

    start_i = end_{i-1} (gaps go to the following token), end_i = max(reported end_i,
    start_i); the last span is stretched to the end of the text.
    """
    starts = np.zeros(len(offsets), dtype=np.int64)
    ends = np.zeros(len(offsets), dtype=np.int64)
    cursor = 0
    for i, (_, end) in enumerate(offsets):
        starts[i] = cursor
        cursor = max(cursor, min(int(end), text_length))
        ends[i] = cursor
    if len(offsets):
        ends[-1] = text_length
    return starts, ends


def tokenize_text(tokenizer, text: str) -> Tokens:
    """Tokenize plain text with the tokenizer's own special tokens (e.g. a BOS).

    The tokenizer's "Token indices sequence length is longer than the specified maximum
    sequence length" warning is off: every caller checks the length against the model's own
    context and says so in one line (without padding or truncation, the tokenizer's `verbose`
    flag gates only that warning)."""
    check_text(text, "text")
    encoding = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True, verbose=False)
    ids = list(encoding["input_ids"])
    starts, ends = contiguous_spans(encoding["offset_mapping"], len(text))
    return Tokens(text, ids, starts, ends, ["text"] * len(ids), len(ids))


def check_text(text, what: str, *, blank: bool = False) -> None:
    """Refuse what no tokenizer takes, with what is wrong and where: a value that is not a
    string, a blank text (unless `blank`: one chat message of several may be), or one with an
    invalid character (`first_invalid`)."""
    if not isinstance(text, str):
        raise WorkbenchError(f"{what} must be a string, got {type(text).__name__}")
    if not blank and not text.strip():
        raise WorkbenchError(f"the {what} is empty; give some text")
    invalid = first_invalid(text)
    if invalid is not None:
        raise WorkbenchError(
            f"the {what} is not valid Unicode at character {invalid} ({text[invalid]!r}, a lone surrogate: invalid "
            "UTF-8 bytes, or half of a UTF-16 pair); fix it, or replace such characters with U+FFFD: "
            "workbench.tokens.replace_invalid(text) (CLI: --replace-invalid)")


def first_invalid(text: str) -> int | None:
    """The offset of the first character UTF-8 cannot encode (a lone surrogate, U+D800 to
    U+DFFF: what Python makes of invalid UTF-8 bytes in a command line), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def replace_invalid(text: str) -> str:
    """`text` with each lone surrogate (U+D800 to U+DFFF; one per invalid UTF-8 byte of a
    command line) replaced by U+FFFD, the replacement character."""
    return "".join("\ufffd" if "\ud800" <= character <= "\udfff" else character for character in text)


def tokenize_messages(tokenizer, messages: Sequence[dict], *, add_generation_prompt: bool = False) -> Tokens:
    """Render chat `messages` ([{"role", "content"}, ...]) with the chat template and
    tokenize the result. Tokens inside a message's content get role "prompt" (system,
    user) or "response" (assistant); everything the template adds is "template".
    add_generation_prompt: end with the template's opening of an assistant turn. No length
    warning from the tokenizer, as in `tokenize_text`."""
    _check_messages(messages)
    if not getattr(tokenizer, "chat_template", None):
        raise WorkbenchError("this model's tokenizer has no chat template; pass text= instead of messages=")
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    encoding = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False, verbose=False)
    ids = list(encoding["input_ids"])
    starts, ends = contiguous_spans(encoding["offset_mapping"], len(text))
    roles = ["template"] * len(ids)
    cursor = 0
    for message in messages:
        content = message["content"]
        where = text.find(content, cursor) if content else -1
        if where < 0:
            continue  # the template rewrote this content; its tokens stay "template"
        role = ROLES_OF_SPEAKERS.get(message["role"], "prompt")
        inside = (starts < where + len(content)) & (ends > where) & (ends > starts)
        for i in np.flatnonzero(inside):
            roles[i] = role
        cursor = where + len(content)
    return Tokens(text, ids, starts, ends, roles, len(ids),
                  template_system_prompt(tokenizer, messages, text, add_generation_prompt))


SENTINEL = "WorkbenchSystemSentinel"  # a system message's content no template writes itself


def template_system_prompt(tokenizer, messages: Sequence[dict], given: str, add_generation_prompt: bool) -> str | None:
    """The system prompt the chat template adds to `messages` that have no system message
    of their own (SmolLM2's: "You are a helpful AI assistant named SmolLM, trained by Hugging
    Face"); None when it adds none, or when the messages start with a system message.

    `given` is the messages' rendering (with `add_generation_prompt`, as `tokenize_messages`
    made it). The messages are rendered once more, after a system message with SENTINEL as its
    content: where the template adds a default system prompt, `given` is that rendering with
    the default in place of SENTINEL."""
    if not messages or messages[0]["role"] == "system":
        return None
    from jinja2.exceptions import TemplateError

    try:
        marked = tokenizer.apply_chat_template([{"role": "system", "content": SENTINEL}, *messages], tokenize=False,
                                               add_generation_prompt=add_generation_prompt)
    except TemplateError:  # a template without a system role
        return None
    before, found, after = marked.partition(SENTINEL)
    if not found or not (given.startswith(before) and given.endswith(after)):
        return None
    default = given[len(before):len(given) - len(after)]
    return default if default.strip() else None


def _check_messages(messages) -> None:
    if not messages:
        raise WorkbenchError("messages is empty; give at least one {'role': ..., 'content': ...}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise WorkbenchError(f"message {i} must be a dict with 'role' and 'content', got {message!r}")
        check_text(message["content"], f"message {i} content", blank=True)
    if not any(m["content"].strip() for m in messages):
        raise WorkbenchError("every message is empty; give some text to analyze")


def check_one_input(text, messages, name: str = "text") -> None:
    """Exactly one of `text` (the argument `name`: "text", "prompt") and chat `messages`."""
    if (text is None) == (messages is None):
        raise WorkbenchError(f"give either {name} or messages (exactly one)")


def tokenize_input(tokenizer, text: str | None, messages: Sequence[dict] | None, *, name: str = "text",
                   add_generation_prompt: bool = False) -> Tokens:
    """`text` as it is (`tokenize_text`) or chat `messages` through the template
    (`tokenize_messages`): exactly one of them (`check_one_input`)."""
    check_one_input(text, messages, name)
    if messages is None:
        return tokenize_text(tokenizer, text)
    return tokenize_messages(tokenizer, messages, add_generation_prompt=add_generation_prompt)


def prompt_tokens(tokenizer, prompt: str | None, messages: Sequence[dict] | None, chat: bool | None) -> Tokens:
    """The prompt as the model sees it. A plain `prompt` is sent as the user's message
    through the chat template when the tokenizer has one (chat=None or True), or continued
    as raw text (chat=False); `messages` always go through the template. The assistant
    turn is left open."""
    check_one_input(prompt, messages, "prompt")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if messages is None and chat is True and not has_template:
        raise WorkbenchError("chat=True but this model's tokenizer has no chat template; pass chat=False")
    if messages is None and (chat is False or not has_template):
        return tokenize_text(tokenizer, prompt)
    if messages is None:
        check_text(prompt, "prompt")
        messages = [{"role": "user", "content": prompt}]
    return tokenize_messages(tokenizer, messages, add_generation_prompt=True)


def generated_spans(tokenizer, ids: list[int], offset: int) -> tuple[str, np.ndarray, np.ndarray]:
    """Decoded text of `ids` and each token's span in it (shifted by `offset`), from the
    lengths of decoded prefixes; a token that ends inside a multi-byte character gets the
    character only when a later token completes it (same rule as `contiguous_spans`)."""
    text = tokenizer.decode(ids, clean_up_tokenization_spaces=False)
    starts, ends = np.zeros(len(ids), np.int64), np.zeros(len(ids), np.int64)
    cursor = 0
    for i in range(len(ids)):
        prefix = tokenizer.decode(ids[: i + 1], clean_up_tokenization_spaces=False).rstrip("\ufffd")
        end = len(prefix) if text.startswith(prefix) else cursor
        starts[i], cursor = cursor, max(cursor, min(end, len(text)))
        ends[i] = cursor
    if len(ids):
        ends[-1] = len(text)
    return text, starts + offset, ends + offset
