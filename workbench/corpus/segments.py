"""Documents -> token segments the model can take, with every departure counted.

A document is tokenized as `analyze` tokenizes it (`workbench.tokens`: the tokenizer's
special tokens for text, the chat template for messages). Then:
    empty (blank text, no messages)     skipped, status "empty"
    invalid Unicode (a lone surrogate)  skipped, status "invalid_unicode"
    longer than max_tokens              by `long`: "error" (refuse, naming the document and the
                                        choices), "truncate" (keep the first max_tokens,
                                        status "truncated"), "split" (consecutive pieces of
                                        max_tokens, status "split"; each piece is a fresh
                                        context, so its first token has no prediction), or
                                        "skip" (status "too_long")
Nothing is dropped silently: each document's status goes into the documents table and
the manifest counts them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import WorkbenchError
from ..tokens import first_invalid, tokenize_messages, tokenize_text
from .sources import Document

LONG_POLICIES = ("error", "truncate", "split", "skip")
SKIPPED = ("empty", "invalid_unicode", "too_long")  # statuses of documents with no token rows


@dataclass(frozen=True)
class Segment:
    doc_id: int
    segment: int  # 0 for a document's first (or only) piece
    offset: int  # the document position of the segment's first token
    ids: list[int]  # [T] token ids, T <= max_tokens
    roles: list[str]  # [T] "text", or "template" / "prompt" / "response" for chat input


@dataclass(frozen=True)
class Prepared:
    doc_id: int
    status: str  # "ok", "truncated", "split", or one of SKIPPED
    n_tokens: int  # the document's tokens before any cut (0 when skipped before tokenizing)
    segments: tuple[Segment, ...]


def check_long_policy(long: str) -> None:
    if long not in LONG_POLICIES:
        raise WorkbenchError(f"long must be one of {', '.join(LONG_POLICIES)}, got {long!r}")


def prepare(tokenizer, document: Document, max_tokens: int, long: str) -> Prepared:
    """One document -> its segments and status (see the module docstring)."""
    if document.messages is None:
        if not document.text.strip():
            return Prepared(document.doc_id, "empty", 0, ())
        if first_invalid(document.text) is not None:
            return Prepared(document.doc_id, "invalid_unicode", 0, ())
        tokens = tokenize_text(tokenizer, document.text)
    else:
        if not document.messages:
            return Prepared(document.doc_id, "empty", 0, ())
        tokens = tokenize_messages(tokenizer, document.messages)
    ids, roles, n_tokens = tokens.ids, tokens.roles, len(tokens.ids)
    if n_tokens <= max_tokens:
        return Prepared(document.doc_id, "ok", n_tokens, (Segment(document.doc_id, 0, 0, ids, roles),))
    if long == "error":
        raise WorkbenchError(
            f"document {document.doc_id} is {n_tokens} tokens, longer than {max_tokens}; choose what to do with long "
            "documents: long='truncate', 'split' or 'skip' (CLI: --long truncate|split|skip)")
    if long == "skip":
        return Prepared(document.doc_id, "too_long", n_tokens, ())
    starts = [0] if long == "truncate" else range(0, n_tokens, max_tokens)
    pieces = tuple(Segment(document.doc_id, index, start, ids[start:start + max_tokens], roles[start:start + max_tokens])
                   for index, start in enumerate(starts))
    return Prepared(document.doc_id, "truncated" if long == "truncate" else "split", n_tokens, pieces)
