"""The compiled Triton kernels on a CUDA GPU at realistic shapes (V = 151936, d = 4096,
bf16), against the float64 definitions of exact.py (computed on the GPU) or the PyTorch
references. Skipped without CUDA; the CPU suite runs the same kernels in the interpreter at
small shapes. (attention_stats has its GPU test in test_attention_stats_triton.py.)

Tolerances: as in the interpreter tests for vocab_stats and divergence (fp32 accumulation
of the same inputs). linear_vocab_stats accumulates d = 4096 bf16 products in fp32 in its
own order: 1e-4 relative + 1e-4 * max(1, |z|) absolute, and ranks / top-k ids exact on at
least 98% of rows and within 2 elsewhere (random logits have neighbours within 1e-5).
"""
import math

import pytest
import torch

import exact
from exact import assert_matches
from workbench.kernels import IGNORE_INDEX, divergence, linear_divergence, linear_vocab_stats, sample, vocab_stats
from workbench.kernels.dispatch import triton_implementation

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
V = 151936
D = 4096


def generator(seed):
    return torch.Generator(device="cuda").manual_seed(seed)


def special_rows(logits):
    logits[0, 1000:] = -math.inf
    logits[1] = 2.0  # all equal
    logits[2] = -math.inf
    logits[2, 151000] = 5.0  # one-hot, in the last tile
    logits[3] = -math.inf  # masked
    logits[4, -5000:] += 40.0  # mass at the end of the row
    return logits


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_vocab_stats(dtype):
    logits = special_rows((torch.randn(384, V, device="cuda", generator=generator(0)) * 3).to(dtype))
    targets = torch.randint(0, V, (384,), device="cuda", generator=generator(1))
    targets[5] = IGNORE_INDEX
    got = vocab_stats(logits, targets, top_k=16)
    assert_matches(got, exact.vocab_stats(logits, targets, 16), exact.vocab_tolerances(3.0))


def test_vocab_stats_rows_past_int32_offsets():
    rows = 2**31 // V + 40  # the last rows start beyond 2^31 elements
    logits = (torch.randn(rows, V, device="cuda", generator=generator(2)) * 3).to(torch.bfloat16)
    targets = torch.randint(0, V, (rows,), device="cuda", generator=generator(3))
    got = vocab_stats(logits, targets, top_k=5)
    tail = slice(rows - 64, rows)
    want = exact.vocab_stats(logits[tail], targets[tail], 5)
    for name, value in want.items():
        torch.testing.assert_close(getattr(got, name)[tail].to(value.dtype), value, rtol=1e-5, atol=1e-4)


def test_no_top_k_no_targets_and_a_few_rows():
    # generation and rollouts call vocab_stats per step with a handful of rows and top_k = 0
    logits = (torch.randn(3, V, device="cuda", generator=generator(23)) * 3).to(torch.bfloat16)
    got = vocab_stats(logits)
    assert got.topk_ids.shape == (3, 0) and got.target_logprob is None
    assert_matches(got, exact.vocab_stats(logits), exact.vocab_tolerances(3.0))
    hidden = torch.randn(3, 256, device="cuda", generator=generator(24)).to(torch.bfloat16)
    weight = (torch.randn(V, 256, device="cuda", generator=generator(25)) / 8).to(torch.bfloat16)
    got = linear_vocab_stats(hidden, weight)
    assert_matches(got, exact.vocab_stats(exact.head_logits(hidden, weight)),
                   exact.vocab_tolerances(5.0, first=1e-4, second=1e-3))


def assert_mostly_exact(got, want, name):
    equal = (got.long() == want.long()).flatten(1).all(-1) if got.ndim > 1 else got.long() == want.long()
    assert equal.float().mean() >= 0.98, f"{name}: {int((~equal).sum())} rows differ"
    if got.ndim == 1:
        assert (got.long() - want.long()).abs().max() <= 2, name


@pytest.mark.parametrize("tokens", [300, 5])  # analyze-sized; a short logit-lens layer (many vocabulary splits)
def test_linear_vocab_stats(tokens):
    hidden = torch.randn(tokens, D, device="cuda", generator=generator(4)).to(torch.bfloat16)
    weight = (torch.randn(V, D, device="cuda", generator=generator(5)) * 3 / D**0.5).to(torch.bfloat16)
    targets = torch.randint(0, V, (tokens,), device="cuda", generator=generator(6))
    targets[0] = IGNORE_INDEX
    weight[[17, 90000, 151935]] = weight[targets[1]]  # exact ties with the target: not counted in its rank
    got = linear_vocab_stats(hidden, weight, targets, top_k=5)
    want = exact.vocab_stats(exact.head_logits(hidden, weight), targets, 5)
    size = want["lse"][1:].abs().max().item()
    floats = {name: value for name, value in want.items() if value.is_floating_point()}
    assert_matches(got, floats, exact.vocab_tolerances(size, first=1e-4, second=1e-3))
    assert got.target_rank[1] == want["target_rank"][1]
    assert_mostly_exact(got.target_rank, want["target_rank"], "target_rank")
    assert_mostly_exact(got.topk_ids, want["topk_ids"], "topk_ids")


def test_linear_vocab_stats_fp32_bias_softcap_and_extra_memory():
    hidden = torch.randn(64, 1024, device="cuda", generator=generator(7))
    weight = torch.randn(50000, 1024, device="cuda", generator=generator(8)) / 16
    bias = torch.randn(50000, device="cuda", generator=generator(9))
    targets = torch.randint(0, 50000, (64,), device="cuda", generator=generator(10))
    got = linear_vocab_stats(hidden, weight, targets, bias=bias, softcap=30.0, top_k=3)
    want = exact.vocab_stats(exact.head_logits(hidden, weight, bias, 30.0), targets, 3)
    floats = {name: value for name, value in want.items() if value.is_floating_point()}
    assert_matches(got, floats, exact.vocab_tolerances(30.0, first=1e-4, second=1e-3))
    assert_mostly_exact(got.target_rank, want["target_rank"], "target_rank")
    # memory beyond the inputs: outputs and partial states, never [T, V] logits (issue target: <= 10%)
    big_hidden = torch.randn(8192, D, device="cuda", generator=generator(11)).to(torch.bfloat16)
    big_weight = torch.randn(V, D, device="cuda", generator=generator(12)).to(torch.bfloat16) / 64
    linear_vocab_stats(big_hidden, big_weight, top_k=5)  # tune first: the tuner's timing runs allocate
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    linear_vocab_stats(big_hidden, big_weight, top_k=5)
    extra = torch.cuda.max_memory_allocated() - before
    inputs = (big_hidden.numel() + big_weight.numel()) * 2
    assert extra < 0.1 * inputs and extra < 0.02 * 8192 * V * 2, (extra, inputs)


def test_divergence():
    z_p = special_rows(torch.randn(256, V, device="cuda", generator=generator(13)) * 3)
    z_q = (z_p + torch.randn(256, V, device="cuda", generator=generator(14))).to(torch.bfloat16)
    z_p = z_p.to(torch.bfloat16)
    z_q[6, 77] = -math.inf  # KL(p||q) = inf
    targets = torch.randint(0, V, (256,), device="cuda", generator=generator(15))
    targets[7] = IGNORE_INDEX
    for js in (False, True):
        got = divergence(z_p, z_q, targets, js=js)
        want = exact.divergence(z_p, z_q, targets)
        if not js:
            want.pop("js")
            assert got.js is None
        kl = (1e-5, 1e-4)
        assert_matches(got, want, dict(kl_pq=kl, kl_qp=kl, js=kl, contrastive=(1e-4, 1e-6)))


def test_linear_divergence():
    if triton_implementation("linear_divergence") is None:
        pytest.skip("linear_divergence has no Triton implementation yet")
    h_p = torch.randn(200, D, device="cuda", generator=generator(16)).to(torch.bfloat16)
    h_q = torch.randn(200, 2048, device="cuda", generator=generator(17)).to(torch.bfloat16)
    w_p = (torch.randn(V, D, device="cuda", generator=generator(18)) * 3 / D**0.5).to(torch.bfloat16)
    w_q = (torch.randn(V, 2048, device="cuda", generator=generator(19)) * 3 / 2048**0.5).to(torch.bfloat16)
    targets = torch.randint(0, V, (200,), device="cuda", generator=generator(20))
    got = linear_divergence(h_p, w_p, h_q, w_q, targets)
    want = exact.divergence(exact.head_logits(h_p, w_p), exact.head_logits(h_q, w_q), targets)
    kl = (1e-4, 1e-3)
    assert_matches(got, want, dict(kl_pq=kl, kl_qp=kl, js=kl, contrastive=(1e-3, 1e-6)))


def test_sample_deterministic_outputs():
    if triton_implementation("sample") is None:
        pytest.skip("sample has no Triton implementation yet")
    logits = (torch.randn(64, V, device="cuda", generator=generator(21)) * 3).to(torch.bfloat16)
    got = sample(logits, temperature=0.8, top_p=0.9, generator=generator(22))
    want = sample(logits, temperature=0.8, top_p=0.9, generator=generator(22), backend="torch")
    torch.testing.assert_close(got.entropy, want.entropy, rtol=1e-5, atol=1e-4)
    assert ((got.kept - want.kept).abs() <= 1).all()  # the kept-set size, up to a tie at its edge
    assert ((got.ids >= 0) & (got.ids < V)).all()
