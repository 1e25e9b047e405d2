"""linear_vocab_stats (reference and Triton under the interpreter) against the float64
statistics of float64 logits softcap(h W^T + b) computed from the same inputs (exact.py).

Tolerances. The Triton kernel keeps each tile's logits in its fp32 accumulator, so it
matches the float64 statistics of the inputs' exact products to fp32 rounding of a
d-term dot product: 2e-5 relative + 2e-5 * max(1, |z|) absolute (varentropy 1e-4 and
1e-4 * max(1, |z|^2)). The reference computes logits in the inputs' dtype, as the model's
lm_head does, so it is compared on fp32 and float64 inputs only. Ranks and top-k ids
exactly (the test logits have no near-ties).
"""
import importlib

import pytest
import torch

import exact
from exact import assert_matches
from workbench.kernels import IGNORE_INDEX, linear_vocab_stats, vocab_stats

reference_module = importlib.import_module("workbench.kernels.linear_vocab_stats")  # the package's name is the function

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter evaluates both sides of tl.where


def inputs(tokens, vocab, dim, dtype, seed, bias=True, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(tokens, dim, generator=gen) * scale).to(dtype)
    weight = (torch.randn(vocab, dim, generator=gen) / dim**0.5).to(dtype)
    b = torch.randn(vocab, generator=gen).to(dtype) if bias else None
    targets = torch.randint(0, vocab, (tokens,), generator=gen)
    targets[0] = IGNORE_INDEX
    return hidden, weight, b, targets


def expected(hidden, weight, bias, targets, softcap=None, top_k=5, temperature=1.0):
    return exact.vocab_stats(exact.head_logits(hidden, weight, bias, softcap), targets, top_k, temperature)


@pytest.mark.parametrize("tokens, vocab, dim, dtype, softcap, top_k", [
    (5, 1000, 64, torch.float32, None, 5),
    (18, 2049, 96, torch.bfloat16, 30.0, 3),  # two blocks of 16 rows
    (9, 777, 40, torch.float16, None, 0),  # d not a multiple of the K step, top_k = 0
    (3, 300, 16, torch.float32, 5.0, 16),  # a tight soft-cap: many logits near +-5
])
def test_triton_matches_float64(tokens, vocab, dim, dtype, softcap, top_k):
    hidden, weight, bias, targets = inputs(tokens, vocab, dim, dtype, seed=vocab, scale=4.0)
    got = linear_vocab_stats(hidden, weight, targets, bias=bias, softcap=softcap, top_k=top_k, backend="triton")
    want = expected(hidden, weight, bias, targets, softcap, top_k)
    size = want["lse"][1:].abs().max().item()
    assert_matches(got, want, exact.vocab_tolerances(size, first=2e-5))


def test_triton_without_targets_bias_and_with_temperature():
    hidden, weight, _, _ = inputs(7, 1100, 32, torch.float32, seed=5)
    got = linear_vocab_stats(hidden, weight, top_k=2, temperature=0.7, backend="triton")
    want = expected(hidden, weight, None, None, top_k=2, temperature=0.7)
    assert_matches(got, want, exact.vocab_tolerances(want["lse"].abs().max().item(), first=2e-5))
    assert got.target_logprob is None and got.target_rank is None


def test_reference_blocks_rows_and_matches_float64(monkeypatch):
    hidden, weight, bias, targets = inputs(10, 500, 24, torch.float64, seed=6)
    monkeypatch.setattr(reference_module, "CHUNK_BYTES", 3 * 4 * 500)  # three rows per block: four blocks
    got = linear_vocab_stats(hidden, weight, targets, bias=bias, softcap=8.0, top_k=4)
    assert_matches(got, expected(hidden, weight, bias, targets, 8.0, 4), exact.vocab_tolerances(10.0, first=2e-5))
    single = linear_vocab_stats(hidden.float(), weight.float(), targets, bias=bias.float(), top_k=4)
    blocked = vocab_stats(exact.head_logits(hidden, weight, bias).float(), targets, top_k=4)
    torch.testing.assert_close(single.entropy, blocked.entropy, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    hidden, weight = torch.zeros(3, 8), torch.zeros(20, 8)
    with pytest.raises(ValueError, match="hidden size differs"):
        linear_vocab_stats(hidden, torch.zeros(20, 9))
    with pytest.raises(ValueError, match="share dtype"):
        linear_vocab_stats(hidden, weight.double())
    with pytest.raises(ValueError, match="bias must be"):
        linear_vocab_stats(hidden, weight, bias=torch.zeros(19))
    with pytest.raises(ValueError, match="softcap"):
        linear_vocab_stats(hidden, weight, softcap=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        linear_vocab_stats(hidden, weight, top_k=21, backend="triton")
    with pytest.raises(ValueError, match="token ids"):
        linear_vocab_stats(hidden, weight, torch.tensor([0, 1, 20]), backend="triton")
