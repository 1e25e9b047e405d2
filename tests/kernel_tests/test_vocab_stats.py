"""vocab_stats against DESIGN.md's test vectors and an independent float64 NumPy
computation of every statistic from the full softmax. Tolerance: 1e-5 relative + 1e-5
absolute for fp32 inputs (the reference accumulates in fp32; NumPy uses float64)."""
import numpy as np
import pytest
import torch

from workbench.kernels import IGNORE_INDEX, vocab_stats, vocab_stats_reference
from workbench.kernels.dispatch import choose


def numpy_stats(logits: np.ndarray, targets: np.ndarray, temperature=1.0):
    """Straight from the definitions, in float64, one row at a time."""
    out = {k: [] for k in ("lse", "entropy", "varentropy", "logprob", "rank", "margin")}
    for z, y in zip(logits.astype(np.float64) / temperature, targets):
        m = z.max()
        lse = m + np.log(np.exp(z - m).sum())
        logp = z - lse
        p = np.exp(logp)
        nz = p > 0
        entropy = -(p[nz] * logp[nz]).sum()
        out["lse"].append(lse)
        out["entropy"].append(entropy)
        out["varentropy"].append((p[nz] * (logp[nz] + entropy) ** 2).sum())
        out["logprob"].append(logp[y])
        out["rank"].append(int((z > z[y]).sum()))
        top2 = np.sort(z)[::-1][:2]
        out["margin"].append(top2[0] - top2[1])
    return {k: np.array(v) for k, v in out.items()}


def test_design_vector():
    # DESIGN.md: z = (2, 1, 0, -1), y = 1
    s = vocab_stats(torch.tensor([[2.0, 1.0, 0.0, -1.0]]), torch.tensor([1]), top_k=4)
    assert s.topk_probs[0].tolist() == pytest.approx([0.643914, 0.236883, 0.087144, 0.032059], abs=1e-6)
    assert s.entropy.item() == pytest.approx(0.947537, abs=1e-6)
    assert s.varentropy.item() == pytest.approx(0.616586, abs=1e-6)
    assert -s.target_logprob.item() == pytest.approx(1.44019, abs=1e-5)
    assert s.target_rank.item() == 1
    assert s.margin.item() == pytest.approx(1.0, abs=1e-6)
    assert s.topk_ids[0].tolist() == [0, 1, 2, 3]


def test_temperature_vector():
    # DESIGN.md: T = .5 -> (.864955, .117059, .015842, .002144)
    s = vocab_stats(torch.tensor([[2.0, 1.0, 0.0, -1.0]]), top_k=4, temperature=0.5)
    assert s.topk_probs[0].tolist() == pytest.approx([0.864955, 0.117059, 0.015842, 0.002144], abs=1e-6)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
@pytest.mark.parametrize("vocab", [2, 7, 1000, 4099])
def test_matches_full_softmax(scale, vocab):
    gen = torch.Generator().manual_seed(vocab)
    logits = torch.randn(9, vocab, generator=gen) * scale
    targets = torch.randint(0, vocab, (9,), generator=gen)
    s = vocab_stats(logits, targets, top_k=min(3, vocab))
    ref = numpy_stats(logits.numpy(), targets.numpy())
    tol = dict(rtol=1e-5, atol=1e-5 * max(1.0, scale))
    np.testing.assert_allclose(s.lse.numpy(), ref["lse"], **tol)
    np.testing.assert_allclose(s.entropy.numpy(), ref["entropy"], **tol)
    np.testing.assert_allclose(s.varentropy.numpy(), ref["varentropy"], rtol=1e-4, atol=1e-4 * max(1.0, scale**2))
    np.testing.assert_allclose(s.target_logprob.numpy(), ref["logprob"], **tol)
    np.testing.assert_array_equal(s.target_rank.numpy(), ref["rank"])
    np.testing.assert_allclose(s.margin.numpy(), ref["margin"], **tol)
    expected_top = np.argsort(-logits.numpy(), axis=-1, kind="stable")[:, :3]
    np.testing.assert_array_equal(np.sort(s.topk_ids.numpy(), -1), np.sort(expected_top[:, : s.topk_ids.shape[1]], -1))


def test_neg_inf_all_equal_and_one_hot_rows():
    inf = float("inf")
    logits = torch.tensor([
        [0.0, -inf, 1.0, -inf],  # -inf entries carry no mass
        [3.0, 3.0, 3.0, 3.0],  # uniform: H = log 4, varentropy 0, margin 0
        [0.0, -inf, -inf, -inf],  # one-hot: H = 0
        [-inf, -inf, -inf, -inf],  # masked row: NaN
    ])
    s = vocab_stats(logits, torch.tensor([2, 1, 0, 0]), top_k=2)
    ref = numpy_stats(logits[:1].numpy(), np.array([2]))
    assert s.entropy[0].item() == pytest.approx(ref["entropy"][0], abs=1e-6)
    assert s.entropy[1].item() == pytest.approx(np.log(4), abs=1e-6)
    assert s.varentropy[1].item() == pytest.approx(0.0, abs=1e-6)
    assert s.margin[1].item() == 0.0
    assert s.target_rank[1].item() == 0  # ties rank together
    assert s.entropy[2].item() == 0.0 and s.target_logprob[2].item() == 0.0
    assert torch.isinf(s.margin[2])  # second choice has probability 0
    assert all(torch.isnan(t[3]) for t in (s.lse, s.entropy, s.varentropy, s.target_logprob))


def test_ignored_targets_and_dtypes():
    logits = torch.randn(5, 300, generator=torch.Generator().manual_seed(0)) * 4
    targets = torch.tensor([1, IGNORE_INDEX, 3, 4, IGNORE_INDEX])
    full = vocab_stats(logits, targets)
    assert torch.isnan(full.target_logprob[[1, 4]]).all() and (full.target_rank[[1, 4]] == -1).all()
    for dtype, tol in ((torch.bfloat16, 0.05), (torch.float16, 0.01)):
        low = vocab_stats(logits.to(dtype), targets)
        assert low.entropy.dtype == torch.float32  # fp32 accumulation
        ref = vocab_stats(logits.to(dtype).float(), targets)  # same rounded inputs, fp32 math
        torch.testing.assert_close(low.entropy, ref.entropy, rtol=0, atol=1e-6)
        torch.testing.assert_close(ref.entropy, full.entropy, rtol=0, atol=tol)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\[T, V\]"):
        vocab_stats(torch.zeros(3))
    with pytest.raises(ValueError, match="targets"):
        vocab_stats(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="backend"):
        vocab_stats(torch.zeros(3, 4), backend="cuda")
    with pytest.raises(NotImplementedError, match="backend='torch'"):  # a kernel without a Triton module
        choose("no_such_kernel", vocab_stats_reference, torch.zeros(3, 4), "triton")
