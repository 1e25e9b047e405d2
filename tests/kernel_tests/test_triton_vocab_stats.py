"""Triton vocab_stats (run by the interpreter on CPU) against the float64 definitions in
exact.py and against DESIGN.md's vectors.

Tolerances. The kernel loads logits as they are (bf16 and fp16 upcast exactly) and
accumulates in fp32, so each dtype is compared with the float64 statistics of the same
rounded logits: lse, entropy, target log-prob, top-k probabilities and margin to
rtol 1e-5 + atol 1e-5 * max(1, scale); varentropy (a difference of second moments) to
rtol 1e-4 + atol 1e-4 * max(1, scale^2). Ranks and top-k ids exactly (ties: lower id
first, as a stable sort).
"""
import math

import pytest
import torch

from exact import assert_matches
import exact
from workbench.kernels import IGNORE_INDEX, vocab_stats

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter evaluates both sides of tl.where


def check(logits, targets=None, top_k=5, temperature=1.0, scale=1.0):
    got = vocab_stats(logits, targets, top_k=top_k, temperature=temperature, backend="triton")
    assert got.entropy.dtype == torch.float32 and got.topk_ids.dtype == torch.int64
    assert_matches(got, exact.vocab_stats(logits, targets, top_k, temperature), exact.vocab_tolerances(scale))
    return got


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
@pytest.mark.parametrize("vocab", [1000, 2049])
def test_random_rows(vocab, scale, dtype):
    gen = torch.Generator().manual_seed(vocab + int(scale * 10))
    logits = (torch.randn(11, vocab, generator=gen) * scale).to(dtype)  # V not a multiple of the tile
    targets = torch.randint(0, vocab, (11,), generator=gen)
    targets[3] = IGNORE_INDEX
    check(logits, targets, top_k=5, scale=scale)


def test_special_rows():
    inf = math.inf
    logits = torch.randn(8, 1500, generator=torch.Generator().manual_seed(1))
    logits[0, 100:] = -inf  # -inf logits carry no mass; the top-k still fills (with p = 0 entries)
    logits[1] = 3.0  # all equal: H = log V, varentropy 0, margin 0, rank 0, top ids 0, 1, 2, ...
    logits[2] = -inf
    logits[2, 1234] = 7.0  # one-hot: H = 0, the rest p = 0
    logits[3] = -inf  # masked row: NaN
    logits[4, 1024:] += 50.0  # the mass sits in the second tile
    logits[5, :3] = -inf  # target on a -inf logit: log-prob -inf
    logits[6] = 1e4 * torch.sign(logits[6])  # huge magnitudes: exp underflows for half the row
    targets = torch.tensor([5, 10, 1234, 0, 1030, 1, 0, IGNORE_INDEX])
    got = check(logits, targets, top_k=4)
    assert got.entropy[1].item() == pytest.approx(math.log(1500), abs=1e-5) and got.target_rank[1] == 0
    assert got.topk_ids[1].tolist() == [0, 1, 2, 3]
    assert got.entropy[2].item() == pytest.approx(0.0, abs=1e-7) and torch.isinf(got.margin[2])
    assert got.topk_probs[0, :].sum().item() < 1 and (got.topk_ids[0] < 100).all()
    assert torch.isneginf(got.target_logprob[5])
    assert torch.isnan(got.entropy[3]) and got.target_rank[7] == -1


def test_top_k_sizes_temperature_and_small_vocabularies():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 17, generator=gen) * 3
    targets = torch.randint(0, 17, (6,), generator=gen)
    for top_k in (0, 1, 16, 17):  # k <= 2 still tracks two for the margin; 17 pads the list to 32
        check(logits, targets, top_k=top_k)
    check(logits, targets, top_k=3, temperature=0.5)
    check(torch.randn(3, 2, generator=gen), torch.tensor([0, 1, 1]), top_k=2)
    one = check(torch.randn(3, 1, generator=gen), torch.tensor([0, 0, 0]), top_k=1)  # V = 1: margin NaN
    assert torch.isnan(one.margin).all()


def test_adversarial_increasing_rows_and_ties():
    rising = torch.arange(3000.0).repeat(2, 1) / 100  # every tile beats the running top-k
    rising[1, ::2] = 5.0  # many ties in value
    got = check(rising, top_k=16)
    assert got.topk_ids[0].tolist() == list(range(2999, 2983, -1))


def test_design_vectors():
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    s = vocab_stats(z, torch.tensor([1]), top_k=4, backend="triton")
    assert s.topk_probs[0].tolist() == pytest.approx([0.643914, 0.236883, 0.087144, 0.032059], abs=1e-6)
    assert s.entropy.item() == pytest.approx(0.947537, abs=1e-6)
    assert s.varentropy.item() == pytest.approx(0.616586, abs=1e-6)
    assert -s.target_logprob.item() == pytest.approx(1.44019, abs=1e-5)
    assert s.target_rank.item() == 1 and s.margin.item() == pytest.approx(1.0, abs=1e-6)
    hot = vocab_stats(z, top_k=4, temperature=0.5, backend="triton")
    assert hot.topk_probs[0].tolist() == pytest.approx([0.864955, 0.117059, 0.015842, 0.002144], abs=1e-6)


def test_strided_logits_int32_targets_and_empty_input():
    wide = torch.randn(5, 1200, generator=torch.Generator().manual_seed(3))
    view = wide[:, :1000]  # row stride 1200
    targets = torch.tensor([1, 2, 3, 4, 5], dtype=torch.int32)
    check(view, targets)
    empty = vocab_stats(torch.zeros(0, 10), top_k=2, backend="triton")
    assert empty.lse.shape == (0,) and empty.topk_ids.shape == (0, 2)


def test_targets_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"token ids in \[0, 10\)"):
        vocab_stats(torch.zeros(2, 10), torch.tensor([3, 10]), backend="triton")


def test_load_schedule_without_prefetch(monkeypatch):
    # GPUs may tune to either load schedule (triton_online.ROW_CONFIGS); the interpreter's
    # own config prefetches, so the plain schedule is pinned here
    import triton

    from workbench.kernels import triton_vocab_stats

    plain = triton.Config({"BLOCK": 512, "PREFETCH": False}, num_warps=1)
    monkeypatch.setattr(triton_vocab_stats._vocab_stats_kernel, "configs", [plain])
    logits = torch.randn(7, 1300, generator=torch.Generator().manual_seed(4)) * 5
    check(logits, torch.randint(0, 1300, (7,), generator=torch.Generator().manual_seed(5)), top_k=6, scale=5.0)
