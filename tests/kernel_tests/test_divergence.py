"""divergence and linear_divergence (references, and Triton under the interpreter) against
DESIGN.md's vectors and the float64 definitions in exact.py.

Tolerances. Both implementations accumulate in fp32 from the inputs as given (bf16 and
fp16 upcast exactly; the float64 side uses the same rounded logits). KL is computed as
E_p[z_p - z_q] - lse_p + lse_q by the kernel, which cancels to the KL's size: KL and JS to
rtol 1e-5 + atol 2e-5 * max(1, scale); the contrastive score (a probability) to
rtol 1e-4 + atol 1e-6.
"""
import math

import pytest
import torch

import exact
from exact import assert_matches
from workbench.kernels import IGNORE_INDEX, divergence, linear_divergence

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter evaluates both sides of tl.where
BACKENDS = ["torch", "triton"]


def tolerances(scale: float) -> dict:
    kl = (1e-5, 2e-5 * max(1.0, scale))
    return dict(kl_pq=kl, kl_qp=kl, js=kl, contrastive=(1e-4, 1e-6), overlap=(1e-5, 1e-6))


@pytest.mark.parametrize("backend", BACKENDS)
def test_design_vectors(backend):
    # DESIGN.md: p = softmax(2, 1, 0, -1), q = softmax(0, 2, 0, -1): KL(p||q) = .888734, JS = .181427
    d = divergence(torch.tensor([[2.0, 1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0, -1.0]]), backend=backend)
    assert d.kl_pq.item() == pytest.approx(0.888734, abs=1e-6)
    assert d.js.item() == pytest.approx(0.181427, abs=1e-6)
    assert d.contrastive is None
    # cDPO: p_pos = (.7, .2, .1), p_neg = (.2, .7, .1), beta = 1: s = (.9397, .0219, .0384)
    z_pos = torch.tensor([0.7, 0.2, 0.1]).log().expand(3, 3)  # row stride 0
    z_neg = torch.tensor([0.2, 0.7, 0.1]).log().expand(3, 3)
    s = divergence(z_pos, z_neg, torch.tensor([0, 1, 2]), js=False, backend=backend)
    assert s.contrastive.tolist() == pytest.approx([0.9397, 0.0219, 0.0384], abs=5e-5)
    assert s.js is None and s.overlap is None
    # speculative acceptance: p = (.5, .3, .2), q = (.2, .3, .5): sum min(p, q) = .7 = 1 - TV(p, q)
    a = divergence(torch.tensor([[0.5, 0.3, 0.2]]).log(), torch.tensor([[0.2, 0.3, 0.5]]).log(), js=False,
                   overlap=True, backend=backend)
    assert a.overlap.item() == pytest.approx(0.7, abs=1e-6) and a.js is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
@pytest.mark.parametrize("vocab", [1000, 2049])
def test_random_rows(vocab, scale, dtype, backend):
    gen = torch.Generator().manual_seed(vocab + int(10 * scale))
    z_p = torch.randn(9, vocab, generator=gen) * scale
    z_q = z_p + torch.randn(9, vocab, generator=gen) * scale * torch.linspace(0, 1, 9)[:, None]  # q = p in row 0
    z_p, z_q = z_p.to(dtype), z_q.to(dtype)
    targets = torch.randint(0, vocab, (9,), generator=gen)
    targets[4] = IGNORE_INDEX
    got = divergence(z_p, z_q, targets, beta=0.5, overlap=True, backend=backend)
    assert_matches(got, exact.divergence(z_p, z_q, targets, beta=0.5, overlap=True), tolerances(scale))


@pytest.mark.parametrize("backend", BACKENDS)
def test_special_rows(backend):
    inf = math.inf
    gen = torch.Generator().manual_seed(7)
    z_p, z_q = torch.randn(7, 1300, generator=gen) * 2, torch.randn(7, 1300, generator=gen) * 2
    z_q[0, 5] = -inf  # q has a zero where p has mass: KL(p||q) = inf, KL(q||p) finite, JS finite
    z_p[1, 1100:] = -inf  # p has zeros: KL(q||p) = inf
    z_p[2], z_q[2] = -inf, -inf  # both one-hot on the same token: all zero, score 1
    z_p[2, 1200] = z_q[2, 1200] = 4.0
    z_p[3] = -inf  # masked: NaN
    z_p[4], z_q[4] = 1.0, 1.0  # all equal: zero divergences
    z_q[5] = z_p[5] + 100.0  # shifted logits: the same distribution
    targets = torch.tensor([0, 1, 1200, 0, 3, 9, IGNORE_INDEX])
    got = divergence(z_p, z_q, targets, overlap=True, backend=backend)
    assert_matches(got, exact.divergence(z_p, z_q, targets, overlap=True), dict(tolerances(4.0), kl_pq=(1e-5, 1e-4), kl_qp=(1e-5, 1e-4)))
    assert torch.isinf(got.kl_pq[0]) and torch.isfinite(got.kl_qp[0]) and got.js[0] <= math.log(2)
    assert torch.isinf(got.kl_qp[1]) and got.contrastive[2].item() == pytest.approx(1.0)
    assert got.overlap[2].item() == pytest.approx(1.0) and got.overlap[5].item() == pytest.approx(1.0, abs=1e-5)
    assert torch.isnan(got.kl_pq[3]) and torch.isnan(got.contrastive[6])


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_hidden_variant(backend):
    gen = torch.Generator().manual_seed(8)
    h_p, h_q = torch.randn(6, 32, generator=gen), torch.randn(6, 48, generator=gen)  # two widths, one vocabulary
    w_p, w_q = torch.randn(900, 32, generator=gen) / 4, torch.randn(900, 48, generator=gen) / 5
    b_q = torch.randn(900, generator=gen)
    targets = torch.randint(0, 900, (6,), generator=gen)
    got = linear_divergence(h_p, w_p, h_q, w_q, targets, bias_q=b_q, softcap_p=10.0, beta=1.0, overlap=True,
                            backend=backend)
    want = exact.divergence(exact.head_logits(h_p, w_p, None, 10.0), exact.head_logits(h_q, w_q, b_q), targets,
                            overlap=True)
    assert_matches(got, want, tolerances(5.0))
    # fp16 inputs: the kernel keeps logits in fp32; the reference computes them in fp16, as the model's head would
    dtype = torch.float16 if backend == "triton" else torch.float32
    h_p, h_q = torch.randn(18, 32, generator=gen).to(dtype), torch.randn(18, 48, generator=gen).to(dtype)  # two row blocks
    w_p, w_q = w_p.to(dtype), w_q.to(dtype)
    targets = torch.randint(0, 900, (18,), generator=gen)
    targets[2] = IGNORE_INDEX
    got = linear_divergence(h_p, w_p, h_q, w_q, targets, js=False, beta=0.5, overlap=True, backend=backend)
    want = exact.divergence(exact.head_logits(h_p, w_p), exact.head_logits(h_q, w_q), targets, beta=0.5,
                            overlap=True)
    want.pop("js")
    assert got.js is None and torch.isnan(got.contrastive[2])
    assert_matches(got, want, tolerances(5.0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="share the vocabulary"):
        divergence(torch.zeros(2, 5), torch.zeros(2, 6))
    with pytest.raises(ValueError, match="beta"):
        divergence(torch.zeros(2, 5), torch.zeros(2, 5), beta=-1.0)
    with pytest.raises(ValueError, match="token ids"):
        divergence(torch.zeros(2, 5), torch.zeros(2, 5), torch.tensor([0, 5]), backend="triton")


def test_load_schedule_without_prefetch(monkeypatch):
    # GPUs may tune to either load schedule; the interpreter's own config prefetches
    import triton

    from workbench.kernels import triton_divergence

    plain = triton.Config({"BLOCK": 512, "PREFETCH": False}, num_warps=1)
    monkeypatch.setattr(triton_divergence._divergence_kernel, "configs", [plain])
    gen = torch.Generator().manual_seed(9)
    z_p, z_q = torch.randn(5, 1300, generator=gen) * 3, torch.randn(5, 1300, generator=gen) * 3
    targets = torch.randint(0, 1300, (5,), generator=gen)
    got = divergence(z_p, z_q, targets, overlap=True, backend="triton")
    assert_matches(got, exact.divergence(z_p, z_q, targets, overlap=True), tolerances(3.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_inputs_give_empty_results_on_both_backends(backend):
    """No rows (an empty response, a one-token text): every field is empty with the shape a
    non-empty call would have, not an error (the references once raised IndexError)."""
    from workbench.kernels import linear_vocab_stats, vocab_stats

    none = torch.zeros(0, dtype=torch.long)
    stats = vocab_stats(torch.zeros(0, 11), none, top_k=3, backend=backend)
    fused = linear_vocab_stats(torch.zeros(0, 4), torch.randn(11, 4), none, top_k=3, backend=backend)
    for result in (stats, fused):
        assert result.entropy.shape == (0,) and result.topk_ids.shape == (0, 3)
        assert result.target_rank.shape == (0,) and result.target_logprob.dtype == torch.float32
    pair = divergence(torch.zeros(0, 11), torch.zeros(0, 11), none, backend=backend)
    fused_pair = linear_divergence(torch.zeros(0, 4), torch.randn(11, 4), torch.zeros(0, 6), torch.randn(11, 6), none,
                                   backend=backend)
    for result in (pair, fused_pair):
        assert result.kl_pq.shape == result.js.shape == result.contrastive.shape == (0,)
