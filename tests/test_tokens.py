"""Token spans must tile the input text exactly, for tricky strings, with both the tiny
byte-level tokenizer and the embedded model's tokenizer."""
import pytest

from workbench.model.tiny import tiny_tokenizer
from workbench.tokens import contiguous_spans, tokenize_messages, tokenize_text

TRICKY = [
    "The capital of France is Paris.",
    "  leading spaces and   repeated   spaces",
    "line one\nline two\n\n\nafter blank lines\n",
    "emoji 🙂👍🏽 and a family 👨‍👩‍👧 in text",
    "日本語のテキストと中文混合",
    "combining marks: e\u0301 a\u0308 n\u0303 (NFD) vs é ä ñ",
    "tabs\tand\r\nwindows newlines",
    "<script>alert('&amp;')</script>",
]


@pytest.fixture(params=["tiny", "smollm2"])
def tokenizer(request):
    if request.param == "tiny":
        return tiny_tokenizer()
    return request.getfixturevalue("smol").tokenizer


@pytest.mark.parametrize("text", TRICKY)
def test_spans_rebuild_text(tokenizer, text):
    tokens = tokenize_text(tokenizer, text)
    pieces = [text[s:e] for s, e in zip(tokens.starts, tokens.ends)]
    assert "".join(pieces) == text
    assert (tokens.starts[1:] == tokens.ends[:-1]).all() and tokens.starts[0] == 0
    # Independent check: a token that decodes to whole characters covers exactly them.
    for token_id, piece in zip(tokens.ids, pieces):
        decoded = tokenizer.decode([token_id])
        if "\ufffd" not in decoded and piece:
            assert piece == decoded


def test_contiguous_spans_rules():
    # overlapping (split character), a gap (trimmed space), a special token at (0, 0)
    starts, ends = contiguous_spans([(0, 0), (0, 2), (1, 2), (3, 5)], 5)
    assert list(zip(starts, ends)) == [(0, 0), (0, 2), (2, 2), (2, 5)]


def test_chat_roles(tokenizer):
    messages = [{"role": "user", "content": "What is 7 times 8?"}, {"role": "assistant", "content": "It is 56."}]
    tokens = tokenize_messages(tokenizer, messages)
    text_of = lambda role: "".join(tokens.text[s:e] for s, e, r in zip(tokens.starts, tokens.ends, tokens.roles) if r == role)
    assert text_of("prompt") == "What is 7 times 8?"
    assert text_of("response") == "It is 56."
    assert "<|im_start|>" in text_of("template")
    assert "".join(tokens.text[s:e] for s, e in zip(tokens.starts, tokens.ends)) == tokens.text
