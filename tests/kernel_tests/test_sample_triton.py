"""Triton `sample` against the PyTorch reference, DESIGN.md's vectors, and chi-square tests
of its draws. On CPU the kernel runs under TRITON_INTERPRET=1 (tests/conftest.py), on a GPU
natively (the same tests, on CUDA tensors).

- Kept sets: kernel and reference both keep a prefix of one total order (logit descending,
  lower id first among ties), so equal kept-set sizes mean equal kept sets; the kernel also
  reports the kept set's entropy and the drawn token's probability from the tokens it
  actually kept, which must match, and every drawn token must lie in the reference's set.
- Draws: the same generator state gives both the same Philox noise, hence the same token
  (exactly in the interpreter; on a GPU, exp and log round differently from PyTorch's and
  may flip a near-tie: 0.5% allowed).
- Chi-square: N draws of one row in one launch, counts against q = p * kept / sum(p * kept)
  recomputed in NumPy float64 from the definitions (tests/sampling_reference.py).
  Significance level 1e-3 per test; seeds are fixed, so each outcome is deterministic. Each
  test also shows its power by rejecting (p < 1e-6) a distribution two points of probability
  off.
"""
import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from sampling_reference import chi_square_pvalue, numpy_kept
from workbench.kernels import kept_set_reference, sample, sample_reference
from workbench.kernels.philox import gumbel_noise, philox4x32
from workbench.kernels.triton_sample import _gumbel, sample as triton_sample

# NaN and inf in masked lanes are by design (the interpreter's NumPy warns about them).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
Z = [2.0, 1.0, 0.0, -1.0]
# Random123's published known answers for Philox4x32-10: (counter, key, output).
RANDOM123 = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def generator(seed):
    return torch.Generator(device=DEVICE).manual_seed(seed)


def assert_same_draws(a, b):
    mismatches = int((a.ids != b.ids).sum())
    assert mismatches <= (0 if DEVICE == "cpu" else max(1, len(a.ids) // 200)), f"{mismatches} draws differ"


def assert_matches_reference(logits, params, seed=3, **launch):
    ours = triton_sample(logits, **params, generator=generator(seed), **launch)
    ref = sample_reference(logits, **params, generator=generator(seed))
    kept, _ = kept_set_reference(logits, **params)
    assert torch.equal(ours.kept, ref.kept)
    assert kept.gather(-1, ours.ids[:, None]).all(), "drew a token outside the reference's kept set"
    assert_same_draws(ours, ref)
    for name in ("entropy", "kept_entropy"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=1e-4, atol=1e-5)
    same = ours.ids == ref.ids
    torch.testing.assert_close(ours.prob[same], ref.prob[same], rtol=1e-4, atol=1e-6)


@triton.jit
def _philox_kernel(counter_ptr, seed_ptr, out_ptr):
    one = tl.arange(0, 1)
    c0, c1, c2, c3 = (tl.load(counter_ptr + one).to(tl.uint32), tl.load(counter_ptr + 1 + one).to(tl.uint32),
                      tl.load(counter_ptr + 2 + one).to(tl.uint32), tl.load(counter_ptr + 3 + one).to(tl.uint32))
    r0, r1, r2, r3 = tl.philox(tl.load(seed_ptr), c0, c1, c2, c3)
    tl.store(out_ptr + one, r0.to(tl.int64))
    tl.store(out_ptr + 1 + one, r1.to(tl.int64))
    tl.store(out_ptr + 2 + one, r2.to(tl.int64))
    tl.store(out_ptr + 3 + one, r3.to(tl.int64))


def test_philox_matches_random123():
    for counter, key, expected in RANDOM123:
        words = [torch.tensor(x, dtype=torch.int64) for x in (*counter, *key)]
        assert [int(x) for x in philox4x32(*words)] == list(expected)
        seed = torch.tensor([key[1] << 32 | key[0]], dtype=torch.uint64).view(torch.int64).to(DEVICE)
        out = torch.zeros(4, dtype=torch.int64, device=DEVICE)
        _philox_kernel[(1,)](torch.tensor(counter, dtype=torch.int64, device=DEVICE), seed, out)
        assert [x & 0xFFFFFFFF for x in out.tolist()] == list(expected)


@triton.jit
def _noise_kernel(seed_ptr, out_ptr, R: tl.constexpr, BLOCK: tl.constexpr, TILES: tl.constexpr):
    rows = tl.arange(0, R)
    for tile in tl.static_range(TILES):
        cols = tile * BLOCK + tl.arange(0, BLOCK)
        noise = _gumbel(tl.load(seed_ptr), rows, tile * BLOCK, R, BLOCK)
        tl.store(out_ptr + rows[:, None] * (TILES * BLOCK) + cols[None, :], noise)


def test_kernel_noise_is_the_reference_noise():
    seed = torch.tensor([0x0123456789ABCDE], dtype=torch.int64, device=DEVICE)
    out = torch.empty(4, 64, device=DEVICE)
    _noise_kernel[(1,)](seed, out, R=4, BLOCK=16, TILES=4)
    torch.testing.assert_close(out, gumbel_noise(seed, 4, 64), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("params, kept", [
    (dict(top_p=0.9), [0, 1, 2]), (dict(min_p=0.2), [0, 1]), (dict(top_k=2), [0, 1]),
    (dict(temperature=0.0), [0]), (dict(temperature=0.5), [0, 1, 2, 3]),
])
def test_design_kept_sets(params, kept):
    logits = torch.tensor([Z] * 64, device=DEVICE)
    result = sample(logits, **params, generator=generator(0), backend="triton")
    assert result.kept.tolist() == [len(kept)] * 64
    assert set(result.ids.tolist()) <= set(kept)


def test_design_temperature_probabilities():
    # DESIGN.md: T = .5 -> (.864955, .117059, .015842, .002144)
    result = sample(torch.tensor([Z] * 64, device=DEVICE), temperature=0.5, generator=generator(0), backend="triton")
    expected = torch.tensor([0.864955, 0.117059, 0.015842, 0.002144], device=DEVICE)
    torch.testing.assert_close(result.prob, expected[result.ids], rtol=0, atol=1e-6)


@pytest.mark.parametrize("probs, alpha, size", [
    ([0.5, 0.25, 0.125, 0.125], 0.4, 1), ([0.5, 0.25, 0.125, 0.125], 0.6, 2), ([0.5, 0.25, 0.125, 0.125], 0.8, 3),
    ([0.1] * 10, 0.45, 2),  # the paper's rule; the authors' code would keep 4
])
def test_design_top_h(probs, alpha, size):
    logits = torch.tensor([probs] * 64, device=DEVICE).log()
    result = sample(logits, top_h=alpha, generator=generator(0), backend="triton")
    assert result.kept.tolist() == [size] * 64
    assert set(result.ids.tolist()) <= set(range(size))  # ties: the lowest ids


def random_params(rows, gen):
    def pick(values, dtype):
        return torch.tensor(values, dtype=dtype)[torch.randint(len(values), (rows,), generator=gen)].to(DEVICE)
    return dict(temperature=pick([0.0, 0.3, 0.7, 1.0, 1.5], torch.float32), top_k=pick([0, 0, 1, 2, 5, 50], torch.int64),
                top_p=pick([1.0, 1.0, 0.5, 0.9, 0.99], torch.float32), min_p=pick([0.0, 0.0, 0.05, 0.2], torch.float32),
                top_h=pick([0.0, 0.0, 0.3, 0.6, 0.9], torch.float32))


def random_logits(kind, rows, vocab, gen):
    """gauss: distinct values; ties: integers in [-3, 3); neginf: 30% -inf, never a whole row."""
    if kind == "ties":
        return torch.randint(-3, 3, (rows, vocab), generator=gen).float().to(DEVICE)
    z = torch.randn(rows, vocab, generator=gen) * 3
    if kind == "neginf":
        z[torch.rand(rows, vocab, generator=gen) < 0.3] = float("-inf")
        z[:, torch.randint(vocab, (1,), generator=gen)] = 0.0
    return z.to(DEVICE)


@pytest.mark.parametrize("kind", ["gauss", "ties", "neginf"])
@pytest.mark.parametrize("vocab", [1, 2, 7, 33, 257, 1000, 3001])
def test_matches_reference_with_mixed_rows(vocab, kind):
    gen = torch.Generator().manual_seed(vocab)
    assert_matches_reference(random_logits(kind, 24, vocab, gen), random_params(24, gen))


@pytest.mark.parametrize("kind", ["gauss", "ties", "neginf"])
@pytest.mark.parametrize("vocab, batch, launch", [
    (257, 16, dict(block=32, rows=16, cap=16)),  # many tiles, full passes until the band fits in 16
    (257, 16, dict(block=32, rows=16, cap=32, thresholds=2)),
    (3001, 8, dict(block=256, rows=1, cap=1024)),  # the GPU layout: a row per program, the band over tiles
])
def test_matches_reference_across_tiles(vocab, batch, launch, kind):
    gen = torch.Generator().manual_seed(11)
    assert_matches_reference(random_logits(kind, batch, vocab, gen), random_params(batch, gen), **launch)


def test_scalar_parameters_bf16_and_strided_layouts():
    gen = torch.Generator().manual_seed(5)
    rows_apart = (torch.randn(16, 2, 300, generator=gen) * 2).to(DEVICE)[:, 1].to(torch.bfloat16)  # [16, 300]
    assert_matches_reference(rows_apart, dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.02, top_h=0.7))
    columns_apart = (torch.randn(300, 16, generator=gen) * 2).to(DEVICE).T  # [16, 300], column stride 16
    assert_matches_reference(columns_apart, dict(top_p=0.5))


def test_same_seed_same_draws():
    logits = random_logits("gauss", 64, 100, torch.Generator().manual_seed(2))
    a, b, c = (sample(logits, top_p=0.95, generator=generator(s), backend="triton").ids for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def tie_row(vocab=72, tied=40):
    """Five distinct leaders, then `tied` equal logits scattered over the vocabulary (so
    the group spans every tile), then lower distinct ones."""
    gen = torch.Generator().manual_seed(4)
    z = -2.0 - torch.rand(vocab, generator=gen)
    positions = torch.randperm(vocab, generator=gen)
    z[positions[:5]] = torch.tensor([3.0, 2.5, 2.0, 1.5, 1.0])
    z[positions[5:5 + tied]] = 0.0
    return z


CHI_SQUARE = {  # name: (row: 12 Gaussian logits if None, parameters, launch options)
    "temperature": (None, dict(temperature=0.8), {}),
    "top-k": (None, dict(top_k=4), {}),
    "top-p": (None, dict(top_p=0.7), {}),
    "min-p": (None, dict(min_p=0.15), {}),
    "top-h": (None, dict(top_h=0.6), {}),
    "combined": (None, dict(temperature=1.3, top_k=6, top_p=0.95), {}),
    "ties and -inf, top-p": ("ties", dict(top_p=0.8), {}),
    "tie group cut by top-k, small tiles": ("group", dict(top_k=22), dict(block=16)),
    "tie group cut by top-p, small tiles": ("group", dict(top_p=0.6), dict(block=16)),
}


@pytest.mark.parametrize("name", CHI_SQUARE)
def test_draws_follow_the_kept_set_distribution(name):
    kind, params, launch = CHI_SQUARE[name]
    gen = torch.Generator().manual_seed(3)
    if kind is None:
        z = torch.randn(12, generator=gen) * 1.5
    elif kind == "ties":
        z = torch.randint(-2, 3, (37,), generator=gen).float()
        z[torch.rand(37, generator=gen) < 0.2] = float("-inf")
    else:
        z = tie_row()
    keep, q = numpy_kept(z.double().numpy(), **params)
    n = 20_000
    result = triton_sample(z.to(DEVICE).expand(n, -1), **params, generator=generator(11), **launch)
    ids = result.ids.cpu().numpy()
    assert keep[ids].all(), "drew a token outside the kept set"
    assert (result.kept.cpu().numpy() == keep.sum()).all()
    counts = np.bincount(ids, minlength=len(q))[keep]
    assert chi_square_pvalue(counts, n * q[keep]) > 1e-3
    shifted = q[keep].copy()  # two points of probability moved from the likeliest to the least likely
    shifted[shifted.argmax()] -= 0.02
    shifted[shifted.argmin()] += 0.02
    assert chi_square_pvalue(counts, n * shifted) < 1e-6  # the test has power
    np.testing.assert_allclose(result.prob.cpu().numpy(), q[ids], rtol=1e-5)
    np.testing.assert_allclose(result.kept_entropy[0].item(), -(q[keep] * np.log(q[keep])).sum(), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_full_vocabulary_matches_reference():
    """V = 151936 (Qwen2.5), B = 128: LLM-like rows (a Gaussian body plus a few boosted
    tokens; a quarter of the rows rounded to 0.5 for ties), mixed per-row parameters. The
    reference sums 10^5 probabilities in another order, so a row whose boundary is decided
    within rounding may differ: at most 2 of 128."""
    gen = torch.Generator().manual_seed(0)
    rows, vocab = 128, 151936
    logits = torch.randn(rows, vocab, generator=gen) * 1.5
    boosted = torch.randint(vocab, (rows, 20), generator=gen)
    logits.scatter_add_(1, boosted, torch.rand(rows, 20, generator=gen) * 6 + 4)
    logits[: rows // 4] = (logits[: rows // 4] * 2).round() / 2
    logits = logits.cuda()
    params = random_params(rows, gen)
    ours = sample(logits, **params, generator=generator(1), backend="triton")
    ref = sample_reference(logits, **params, generator=generator(1))
    kept, _ = kept_set_reference(logits, **params)
    differ = ours.kept != ref.kept
    assert int(differ.sum()) <= 2, f"kept-set sizes differ in rows {differ.nonzero()[:, 0].tolist()}"
    assert kept.gather(-1, ours.ids[:, None])[~differ].all()
    assert_same_draws(ours, ref)
    torch.testing.assert_close(ours.entropy, ref.entropy, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.kept_entropy[~differ], ref.kept_entropy[~differ], rtol=1e-4, atol=1e-4)
