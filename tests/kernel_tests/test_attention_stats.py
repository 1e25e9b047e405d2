"""attention_stats against eager softmax attention (the full T x T matrix in float64,
tests/attention_reference.py), with GQA, additive and boolean masks, learned sinks and block
boundaries.
Tolerance 1e-5 absolute (fp32 blocks vs float64 eager)."""
import numpy as np
import pytest
import torch

from attention_reference import eager_probabilities, entropy_of
from workbench.kernels import attention_rows, attention_stats
from workbench.kernels.attention_stats import attention_stats_reference
from workbench.kv import heavy_hitters


@pytest.mark.parametrize("heads, kv_heads, t, block", [(4, 4, 17, 128), (4, 2, 37, 8), (6, 1, 50, 16), (8, 2, 129, 128)])
def test_matches_eager(heads, kv_heads, t, block):
    gen = torch.Generator().manual_seed(t)
    q, k = torch.randn(2, heads, t, 16, generator=gen) * 2, torch.randn(2, kv_heads, t, 16, generator=gen) * 2
    subset = torch.zeros(t, dtype=torch.bool)
    subset[[1, 3, t - 1]] = True
    stats = attention_stats_reference(q, k, sink=2, key_subset=subset, top_k=3, block=block)
    _, a, p_sink = eager_probabilities(q, k)
    close = dict(rtol=0, atol=1e-5)
    torch.testing.assert_close(stats.entropy.double(), entropy_of(a, p_sink), **close)
    torch.testing.assert_close(stats.received.double(), a.sum(2), **close)
    torch.testing.assert_close(stats.sink_mass.double(), a[..., :2].sum(-1), **close)
    torch.testing.assert_close(stats.subset_mass.double(), a[..., subset].sum(-1), **close)
    torch.testing.assert_close(stats.topk_probs.double(), a.topk(3, -1).values, **close)
    torch.testing.assert_close(attention_rows(q, k, [0, t // 2, t - 1]).double(), a[:, :, [0, t // 2, t - 1]], **close)


def test_padding_mask_and_learned_sinks():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 20, 8, generator=gen), torch.randn(1, 2, 20, 8, generator=gen)
    allowed = torch.ones(20, 20, dtype=torch.bool)
    allowed[:, :3] = False  # left padding: nobody attends to the first 3 positions
    allowed[torch.arange(20), torch.arange(20)] = True
    additive = torch.zeros(1, 1, 20, 20).masked_fill(~allowed, torch.finfo(torch.float32).min)
    sinks = torch.tensor([0.5, -1.0, 2.0, 0.0])
    _, a, p_sink = eager_probabilities(q, k, mask=allowed, sink_logits=sinks)
    for mask in (allowed[None, None], additive):  # boolean (True = attend) and additive float masks
        stats = attention_stats(q, k, mask=mask, sink_logits=sinks)
        torch.testing.assert_close(stats.entropy.double(), entropy_of(a, p_sink), rtol=0, atol=1e-5)
        torch.testing.assert_close(stats.received.double(), a.sum(2), rtol=0, atol=1e-5)
    # a padded key receives only its own query's attention
    torch.testing.assert_close(stats.received[..., 1].double(), a[..., 1, 1], rtol=0, atol=1e-6)


def test_design_heavy_hitter_vector():
    A = torch.tensor([[1, 0, 0, 0], [.5, .5, 0, 0], [.6, .2, .2, 0], [.4, .1, .1, .4]], dtype=torch.float64)
    received = A.sum(0).numpy()
    np.testing.assert_allclose(received, [2.5, 0.8, 0.3, 0.4])
    assert np.flatnonzero(heavy_hitters(received, heavy=1, recent=1)).tolist() == [0, 3]
    assert heavy_hitters(received, heavy=0, recent=0).sum() == 0
    assert heavy_hitters(received, heavy=10, recent=1).all()


@pytest.mark.parametrize("block", [4, 64])
def test_queries_that_see_nothing_add_nothing(block):
    """Left padding as Hugging Face masks it: the first 3 positions are keys nobody attends to,
    and their own queries see no key at all. Those queries get lse -inf and entropy nan, and
    add nothing to received attention (eager: column sums over the real queries only)."""
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 4, 20, 8, generator=gen), torch.randn(1, 2, 20, 8, generator=gen)
    allowed = torch.ones(20, 20, dtype=torch.bool)
    allowed[:, :3] = False
    additive = torch.zeros(1, 1, 20, 20).masked_fill(~allowed, torch.finfo(torch.float32).min)
    _, a, _ = eager_probabilities(q, k, mask=allowed)  # rows 0..2: zeros (nothing to attend to)
    real = a[:, :, 3:]
    stats = attention_stats_reference(q, k, mask=additive, top_k=2, block=block)
    assert torch.isneginf(stats.lse[..., :3]).all() and torch.isnan(stats.entropy[..., :3]).all()
    torch.testing.assert_close(stats.received.double(), real.sum(2), rtol=0, atol=1e-5)
    torch.testing.assert_close(stats.entropy[..., 3:].double(), entropy_of(real, torch.zeros(real.shape[:3])), rtol=0, atol=1e-5)
    assert (stats.sink_mass[..., :3] == 0).all() and (stats.topk_probs[..., :3, :] == 0).all()
    rows = attention_rows(q, k, [1, 10], mask=additive)
    assert (rows[:, :, 0] == 0).all()
    torch.testing.assert_close(rows[:, :, 1].double(), a[:, :, 10], rtol=0, atol=1e-6)
