"""The Triton attention_stats (interpreted on CPU by TRITON_INTERPRET=1, see conftest.py) against
eager softmax attention in float64 (the full T x T matrix, tests/attention_reference.py),
against the blocked PyTorch reference, and on the DESIGN.md vectors.

Tolerances: 1e-5 absolute on probabilities, masses, entropies and received attention (fp32
kernel vs float64 eager); lse 1e-5 absolute + 1e-6 relative. Against the reference, which also
works in fp32: the same. The GPU test (T = 4096; bf16 tensor-core dots, or fp32 as 3-pass tf32)
allows 1e-4 absolute and relative: fp32 sums over 4096 keys in another order.
"""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from attention_reference import eager_probabilities, entropy_of

pytest.importorskip("triton")

from workbench.kernels import attention_stats  # noqa: E402 - after the skip
from workbench.kernels.attention_stats import attention_stats_reference  # noqa: E402
from workbench.kernels.triton_attention_stats import TOPK_MAX  # noqa: E402
from workbench.kernels.triton_attention_stats import attention_stats as triton_attention_stats  # noqa: E402

CLOSE = dict(rtol=0, atol=1e-5)
LSE_CLOSE = dict(rtol=1e-6, atol=1e-5)


def check_against_eager(stats, q, k, *, sink, key_subset=None, top_k=0, **options):
    lse, a, p_sink = eager_probabilities(q, k, **options)
    live = torch.isfinite(lse)
    torch.testing.assert_close(stats.lse.double(), lse, **LSE_CLOSE)
    entropy = torch.where(live, entropy_of(a, p_sink), float("nan"))
    torch.testing.assert_close(stats.entropy.double(), entropy, equal_nan=True, **CLOSE)
    torch.testing.assert_close(stats.sink_mass.double(), a[..., :sink].sum(-1), **CLOSE)
    torch.testing.assert_close(stats.received.double(), a.sum(2), **CLOSE)
    if key_subset is not None:
        torch.testing.assert_close(stats.subset_mass.double(), a[..., key_subset].sum(-1), **CLOSE)
    if top_k:
        values, ids = a.topk(min(top_k, a.shape[-1]), -1)
        torch.testing.assert_close(stats.topk_probs[..., :values.shape[-1]].double(), values, **CLOSE)
        attended = values > 0
        assert torch.equal(stats.topk_ids[..., :values.shape[-1]][attended], ids[attended])
        assert (stats.topk_ids[..., :values.shape[-1]][~attended] == -1).all()  # no key: -1, probability 0


def check_against_reference(stats, expected):
    for name in ("lse", "entropy", "sink_mass", "received", "subset_mass", "topk_probs"):
        if getattr(expected, name) is not None:
            torch.testing.assert_close(getattr(stats, name), getattr(expected, name), equal_nan=True,
                                       **(LSE_CLOSE if name == "lse" else CLOSE))
    if expected.topk_ids is not None:
        attended = expected.topk_probs > 0  # past the attended keys the reference's ids are arbitrary
        assert torch.equal(stats.topk_ids[attended], expected.topk_ids[attended])


def random_qk(batch, heads, kv_heads, t_q, t_k, dim, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, t_q, dim, generator=gen) * 1.5  # sharp enough for distinct top-k
    k = torch.randn(batch, kv_heads, t_k, dim, generator=gen) * 1.5
    return q.to(dtype), k.to(dtype)


@pytest.mark.parametrize("batch, t, dim, causal, sink, top_k", [
    (2, 37, 16, True, 2, 3),
    (1, 37, 32, False, 1, 5),
    (1, 70, 16, True, 4, 0),
    (1, 70, 32, False, 0, 0),
])
def test_matches_eager_and_reference(batch, t, dim, causal, sink, top_k):
    q, k = random_qk(batch, 4, 2, t, t, dim, seed=t + dim)  # GQA: 4 query heads on 2 key heads
    subset = torch.zeros(t, dtype=torch.bool)
    subset[[1, 3, t // 2, t - 1]] = True
    options = dict(causal=causal, sink=sink, key_subset=subset, top_k=top_k)
    stats = attention_stats(q, k, backend="triton", **options)  # through the dispatch
    check_against_eager(stats, q, k, **options)
    check_against_reference(stats, attention_stats_reference(q, k, **options))


def window_and_padding(t, window, padding):
    """Sliding window of `window` keys (causal) with `padding` left-padded positions that nobody
    attends to and that attend to nothing: [1, 1, T, T] bool."""
    allowed = torch.ones(t, t, dtype=torch.bool).tril().triu(-(window - 1))
    allowed[:, :padding] = False
    allowed[:padding, :] = False
    return allowed[None, None]


@pytest.mark.parametrize("learned_sinks", [False, True])
def test_sliding_window_padding_masks_and_learned_sinks(learned_sinks):
    t = 37
    q, k = random_qk(1, 4, 2, t, t, 16, seed=7)
    allowed = window_and_padding(t, window=10, padding=3)
    additive = torch.zeros(1, 1, t, t).masked_fill(~allowed, torch.finfo(torch.float32).min)
    sinks = torch.tensor([0.5, -1.0, 2.0, 0.0]) if learned_sinks else None
    for mask in (allowed, additive):  # boolean (True = attend) and additive float masks
        options = dict(mask=mask, sink=2, sink_logits=sinks, top_k=2)
        stats = triton_attention_stats(q, k, **options)
        check_against_eager(stats, q, k, **options)
        check_against_reference(stats, attention_stats_reference(q, k, **options))
    if learned_sinks:  # a padded query's only outcome is the sink
        assert torch.equal(stats.entropy[..., :3], torch.zeros(1, 4, 3))
        torch.testing.assert_close(stats.lse[..., 0], sinks[None])
    else:  # a padded query has no lse or entropy and gives nothing to any key
        assert stats.lse[..., :3].isneginf().all() and stats.entropy[..., :3].isnan().all()
    assert (stats.received[..., :3] == 0).all()


def test_per_head_mask_mqa_and_queries_after_a_prefix():
    """Tq < Tk (the last Tq positions, as when decoding after a cached prefix), one key head
    for 4 query heads, a [B, Hq, Tq, Tk] mask that differs per head and batch row."""
    q, k = random_qk(2, 4, 1, 21, 53, 24, seed=3)  # d = 24: a padded head dimension
    gen = torch.Generator().manual_seed(4)
    mask = torch.rand(2, 4, 21, 53, generator=gen) > 0.3
    options = dict(mask=mask, sink=3, top_k=4)
    stats = triton_attention_stats(q, k, **options)
    check_against_eager(stats, q, k, **options)
    check_against_reference(stats, attention_stats_reference(q, k, **options))


def test_bf16_strided_inputs_and_scale():
    """bf16 q, k in the [B, T, H, d] layout models produce, viewed as [B, H, T, d]."""
    q, k = random_qk(1, 4, 2, 37, 37, 32, seed=11, dtype=torch.bfloat16)
    q_strided = q.transpose(1, 2).contiguous().transpose(1, 2)
    k_strided = k.transpose(1, 2).contiguous().transpose(1, 2)
    options = dict(scale=0.3, sink=1, top_k=2)
    stats = triton_attention_stats(q_strided, k_strided, **options)
    check_against_eager(stats, q.float(), k.float(), **options)  # the bf16 values, exactly, in fp64
    check_against_reference(stats, attention_stats_reference(q, k, **options))


def test_large_top_k_falls_back_to_the_reference():
    q, k = random_qk(1, 2, 2, 20, 20, 16, seed=5)
    stats = triton_attention_stats(q, k, top_k=TOPK_MAX + 1)
    expected = attention_stats_reference(q, k, top_k=TOPK_MAX + 1)
    assert torch.equal(stats.topk_ids, expected.topk_ids) and torch.equal(stats.received, expected.received)


def test_design_heavy_hitter_vector():
    """DESIGN.md: attention rows (1), (.5 .5), (.6 .2 .2), (.4 .1 .1 .4) -> received (2.5, .8, .3, .4).
    One-hot keys and q_i = log A_i make softmax_j(<q_i, k_j>) = A_ij exactly."""
    rows = torch.tensor([[1, 0, 0, 0], [.5, .5, 0, 0], [.6, .2, .2, 0], [.4, .1, .1, .4]], dtype=torch.float64)
    q = torch.zeros(1, 1, 4, 16)
    q[0, 0, :, :4] = rows.clamp_min(1e-30).log().float()  # the causal mask hides the zeros
    k = torch.eye(16)[:4].view(1, 1, 4, 16)
    stats = triton_attention_stats(q, k, scale=1.0, top_k=1)
    received = torch.tensor([2.5, .8, .3, .4], dtype=torch.float64)
    torch.testing.assert_close(stats.received[0, 0].double(), received, **CLOSE)
    torch.testing.assert_close(stats.sink_mass[0, 0].double(), rows[:, 0], **CLOSE)
    entropy = torch.tensor([-sum(p * math.log(p) for p in row if p > 0) for row in rows.tolist()], dtype=torch.float64)
    torch.testing.assert_close(stats.entropy[0, 0].double(), entropy, **CLOSE)
    assert stats.topk_ids[0, 0, :, 0].tolist() == [0, 0, 0, 0]  # ties go to the earlier key


def test_top_k_ties_across_key_blocks_go_to_the_earlier_key():
    q, k = random_qk(1, 1, 1, 1, 40, 16, seed=2)
    k[0, 0, 33] = k[0, 0, 5]  # key 33 (a later block) ties with key 5
    q[0, 0, 0] = k[0, 0, 5] * 4  # and both stand out
    stats = triton_attention_stats(q, k, causal=False, top_k=3)
    assert stats.topk_ids[0, 0, 0, :2].tolist() == [5, 33]


def test_design_entropy_vector():
    """DESIGN.md: scores z = (2, 1, 0, -1) give p = (.643914, .236883, .087144, .032059),
    H = .947537 and log-sum-exp 2.44019 (= surprisal of y = 1, 1.44019, + z_1)."""
    q = torch.zeros(1, 1, 1, 16)
    q[0, 0, 0, :4] = torch.tensor([2.0, 1.0, 0.0, -1.0])
    k = torch.eye(16)[:4].view(1, 1, 4, 16)
    stats = triton_attention_stats(q, k, causal=False, scale=1.0, top_k=4)
    assert abs(stats.entropy.item() - .947537) < 1e-5 and abs(stats.lse.item() - 2.44019) < 1e-5
    p = torch.tensor([.643914, .236883, .087144, .032059])
    torch.testing.assert_close(stats.topk_probs[0, 0, 0], p, rtol=0, atol=1e-6)
    torch.testing.assert_close(stats.received[0, 0], stats.topk_probs[0, 0, 0], rtol=0, atol=1e-6)


def test_bad_shapes_are_refused():
    q, k = random_qk(1, 3, 2, 8, 8, 16, seed=1)
    with pytest.raises(ValueError, match="multiple of key heads"):
        triton_attention_stats(q, k)
    q, k = random_qk(1, 2, 2, 8, 8, 16, seed=1)
    with pytest.raises(ValueError, match="key_subset"):
        triton_attention_stats(q, k, key_subset=torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask covers"):
        triton_attention_stats(q, k, mask=torch.ones(8, 5, dtype=torch.bool))


def test_benchmark_quick_mode(tmp_path):
    """benchmarks/attention_bench.py --quick: tiny shapes on the CPU, the reference only."""
    path = Path(__file__).parents[2] / "benchmarks" / "attention_bench.py"
    spec = importlib.util.spec_from_file_location("attention_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.run([64], quick=True)
    (row,) = report["results"]
    assert report["quick"] and report["device_info"]["slug"] == "cpu" and row["runs"] >= 20
    assert row["ms"]["reference"] > 0 and row["ms"]["eager"] > 0 and not row["eager_oom"]
    assert row["ratio_to_flash"]["reference"] == pytest.approx(row["ms"]["reference"] / row["flash_ms"])
    assert bench.write(report, tmp_path / "a.json").exists()
    with pytest.raises(ValueError, match="runs"):
        bench.run([64], quick=True, runs=5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype, masked", [(torch.bfloat16, False), (torch.float32, True)])
def test_gpu_realistic_shape(dtype, masked):
    """Hq = 32, Hkv = 8, d = 128, T = 4096 on the GPU through the automatic dispatch: bf16 causal
    (tensor-core dots), and fp32 (3-pass tf32 dots) with an additive sliding-window mask over 3
    left-padded positions and learned sinks."""
    t = 4096
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 32, t, 128, device="cuda", generator=gen).to(dtype)
    k = torch.randn(1, 8, t, 128, device="cuda", generator=gen).to(dtype)
    subset = torch.zeros(t, dtype=torch.bool, device="cuda")
    subset[::97] = True
    options = dict(sink=4, key_subset=subset, top_k=8)
    if masked:
        allowed = window_and_padding(t, window=1000, padding=3).cuda()
        additive = torch.zeros(1, 1, t, t, device="cuda").masked_fill(~allowed, torch.finfo(torch.float32).min)
        options.update(mask=additive, sink_logits=torch.linspace(-2, 2, 32, device="cuda"))
    stats = attention_stats(q, k, **options)
    expected = attention_stats_reference(q, k, **options)
    close = dict(rtol=1e-4, atol=1e-4, equal_nan=True)
    for name in ("lse", "entropy", "sink_mass", "received", "subset_mass", "topk_probs"):
        torch.testing.assert_close(getattr(stats, name), getattr(expected, name), **close)
    attended = expected.topk_probs > 1e-6
    agree = (stats.topk_ids == expected.topk_ids)[attended].float().mean().item()
    assert agree > 0.999, f"top-k ids agree on {agree:.4%} (near-ties may swap)"
