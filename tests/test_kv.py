"""KV-importance scores against independent computations: Keyformer against H2O (g = 0,
tau = 1) and against full eager softmax with per-query temperatures, its noise against the
Gumbel law (two tied keys: the softmax of two Gumbels is uniform); Zero-TPrune's weighted
PageRank against DESIGN.md's vector and the stationary distribution of A^T; H2O's online
eviction against a step-by-step worked example, a full budget and a sliding window; the
evicted forward against the model's own (nothing evicted) and against the window's text
run alone (RoPE is relative: a layer that sees only the window computes what the window alone gives)."""
import math

import numpy as np
import pytest
import torch

from attention_reference import eager_scores
from workbench.errors import WorkbenchError
from workbench.kernels import attention_stats
from workbench.forward.eviction import evicting_keys, h2o_policy, keyformer_policy, recent_policy
from workbench.kv import PAGERANK_MAX_T, heavy_hitters, keyformer_scores, kv_cache_bytes, online_keep, weighted_pagerank
from workbench.model.tiny import tiny_model


def random_qk(t=40, heads=4, kv_heads=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2, heads, t, 16, generator=gen) * 2, torch.randn(2, kv_heads, t, 16, generator=gen) * 2


def test_keyformer_without_noise_at_tau_one_is_h2o():
    q, k = random_qk()
    scores = keyformer_scores(q, k, tau=(1, 1), seed=None, block=16)
    torch.testing.assert_close(scores, attention_stats(q, k).received, rtol=0, atol=1e-5)
    torch.testing.assert_close(scores.double(), eager_scores(q, k).softmax(-1).sum(2), rtol=0, atol=1e-5)
    sinks = torch.tensor([0.5, -1.0, 2.0, 0.0])  # learned sinks: still H2O's column sums
    torch.testing.assert_close(keyformer_scores(q, k, tau=(1, 1), seed=None, sink_logits=sinks),
                               attention_stats(q, k, sink_logits=sinks).received, rtol=0, atol=1e-5)


def test_keyformer_temperature_schedule_matches_eager():
    q, k = random_qk(t=33)
    taus = torch.linspace(1, 2, 33, dtype=torch.float64)  # query i: tau_i, from 1 to 2
    expected = (eager_scores(q, k) / taus[:, None]).softmax(-1).sum(2)
    torch.testing.assert_close(keyformer_scores(q, k, seed=None, block=8).double(), expected, rtol=0, atol=1e-5)


def test_keyformer_noise_is_seeded_and_keeps_each_query_mass_one():
    q, k = random_qk()
    first, again, other = (keyformer_scores(q, k, seed=s) for s in (7, 7, 8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    torch.testing.assert_close(first.sum(-1), torch.full((2, 4), 40.0), rtol=0, atol=1e-3)  # every query adds 1
    assert not torch.allclose(first, keyformer_scores(q, k, seed=None))


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_keyformer_noise_is_gumbel(tau):
    """Query 1 sees keys 0 and 1 with equal scores (q = 0): its mass on key 1 is
    sigmoid((g1 - g0) / tau) with g1 - g0 logistic, so P(mass <= x) = sigmoid(tau * logit(x))
    (uniform at tau = 1). Kolmogorov-Smirnov distance over 4000 heads, 99.9% bound."""
    heads = 4000
    q, k = torch.zeros(1, heads, 2, 8), torch.randn(1, 1, 2, 8, generator=torch.Generator().manual_seed(0))
    mass = np.sort(keyformer_scores(q, k, tau=(tau, tau), seed=3)[0, :, 1].double().numpy())  # [heads]
    cdf = 1 / (1 + np.exp(-tau * np.log(mass / (1 - mass))))
    empirical = np.arange(1, heads + 1) / heads
    distance = max(np.abs(empirical - cdf).max(), np.abs(empirical - 1 / heads - cdf).max())
    assert distance < 1.95 / math.sqrt(heads)


def test_keyformer_rejects_bad_temperature():
    q, k = random_qk(t=4)
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        keyformer_scores(q, k, tau=(1, 0))


def test_pagerank_design_vector_and_causal_collapse():
    A = np.array([[1, 0, 0], [.5, .5, 0], [.2, .3, .5]])
    np.testing.assert_allclose(weighted_pagerank(A, steps=1), [.56667, .26667, .16667], atol=5e-5)
    # causal attention: every row leaks mass to earlier keys, token 0 keeps its own -> all mass on token 0
    causal = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(0)).tril()
    causal = (causal / causal.sum(-1, keepdim=True)).numpy()
    scores = weighted_pagerank(causal)  # [3, 20]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)


def test_pagerank_converges_to_the_stationary_distribution():
    """Bidirectional attention (every key visible): the fixed point of s <- A^T s is the
    eigenvector of A^T for eigenvalue 1, normalized to sum 1."""
    A = np.random.default_rng(0).random((12, 12)) + 0.1
    A /= A.sum(-1, keepdims=True)
    values, vectors = np.linalg.eig(A.T)
    stationary = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    np.testing.assert_allclose(weighted_pagerank(A, tol=1e-12), stationary / stationary.sum(), atol=1e-9)


def test_pagerank_refuses_long_inputs_and_non_square_input():
    with pytest.raises(WorkbenchError, match=f"at most {PAGERANK_MAX_T} tokens"):
        weighted_pagerank(np.zeros((PAGERANK_MAX_T + 1, PAGERANK_MAX_T + 1), dtype=np.float32))
    with pytest.raises(WorkbenchError, match="square"):
        weighted_pagerank(np.zeros((3, 4)))


def test_heavy_hitters_keyformer_budget():
    """The same selection rule for both scores: recent window plus the best-scored keys."""
    keep = heavy_hitters(np.array([5.0, 0.1, 3.0, 0.2, 0.3, 0.4]), heavy=2, recent=2)
    assert np.flatnonzero(keep).tolist() == [0, 2, 4, 5]
    with pytest.raises(ValueError, match=">= 0"):
        heavy_hitters(np.ones(3), heavy=-1, recent=0)
    assert np.flatnonzero(heavy_hitters(np.array([1.0, 2.0, 2.0, 2.0, 0.0]), heavy=2, recent=1)).tolist() == [1, 2, 4]


@pytest.mark.parametrize("heavy, recent", [(3, 2), (0, 4), (5, 0), (20, 3), (2, 20), (0, 0)])
def test_heavy_hitters_of_every_layer_and_head(heavy, recent):
    """Scores [L, H, T] -> a mask [L, H, T] equal to the [T] rule applied row by row; scores
    drawn from a few values, so that ties are common (they go to the earlier key)."""
    received = np.random.default_rng(0).integers(0, 4, size=(3, 5, 11)).astype(np.float32)
    keep = heavy_hitters(received, heavy, recent)
    assert keep.shape == received.shape and keep.dtype == bool
    for l, h in np.ndindex(received.shape[:2]):
        np.testing.assert_array_equal(keep[l, h], heavy_hitters(received[l, h], heavy, recent), err_msg=f"layer {l} head {h}")


# ----- online eviction --------------------------------------------------------------------------
WORKED = torch.tensor([[1, 0, 0, 0], [.5, .5, 0, 0], [.6, .2, .2, 0], [.4, .1, .1, .4]], dtype=torch.float64)


def test_online_h2o_worked_example_differs_from_hindsight():
    """heavy 1 + recent 1: after query 2 (scores 2.1, .7, .2) key 1 goes; query 3 renormalizes
    (.4, .1, .4) / .9 over keys {0, 2, 3} and sees key 2, which hindsight (keys {0, 3}) drops."""
    visible = online_keep(WORKED[None], heavy=1, recent=1)
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(visible, expected)
    assert np.flatnonzero(heavy_hitters(WORKED.sum(0).numpy(), heavy=1, recent=1)).tolist() == [0, 3]


def test_online_keep_with_room_for_everything_is_causal_and_heavy_zero_is_a_window():
    weights = torch.softmax(torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0)), -1).tril()
    assert torch.equal(online_keep(weights, heavy=6, recent=6), torch.ones(2, 12, 12, dtype=torch.bool).tril())
    steps = torch.arange(12)
    window = (steps[None, :] <= steps[:, None]) & (steps[:, None] - steps[None, :] <= 4)
    assert torch.equal(online_keep(weights, heavy=0, recent=4), window.expand(2, 12, 12))


def test_online_keep_builds_its_masks_on_the_weights_device():
    """The meta device stands in for CUDA here: a mask made on the CPU meets meta weights and fails
    as it would meet CUDA weights."""
    visible = online_keep(WORKED[None].to("meta"), heavy=1, recent=1)
    assert visible.device.type == "meta" and visible.shape == (4, 4)


def test_kv_cache_bytes_design_vector():
    assert kv_cache_bytes(30, 3, 64, 4096, 2) == 94_371_840
    assert kv_cache_bytes(30, 9, 64, 4096, 2) == 3 * 94_371_840


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama")


def test_evicting_nothing_leaves_the_outputs_unchanged(llama):
    ids = torch.randint(0, llama.vocab_size, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        plain = llama.hf(ids).logits
        with evicting_keys(llama.hf, h2o_policy(heavy=12, recent=12)):
            roomy = llama.hf(ids).logits
        with evicting_keys(llama.hf, h2o_policy(heavy=4, recent=4)):
            evicted = llama.hf(ids).logits
    torch.testing.assert_close(roomy, plain, rtol=1e-5, atol=1e-5)
    assert (evicted[0, 9:] - plain[0, 9:]).abs().max() > 1e-3  # past the budget the outputs move
    torch.testing.assert_close(evicted[0, :9], plain[0, :9], rtol=1e-5, atol=1e-5)  # within it they do not
    assert llama.hf.config._attn_implementation == "sdpa"


def test_a_window_layer_computes_what_the_window_alone_gives(llama):
    ids = torch.randint(0, llama.vocab_size, (1, 20), generator=torch.Generator().manual_seed(1))
    size = 5
    with torch.inference_mode():
        with evicting_keys(llama.hf, recent_policy(size)):
            first_layer = llama.hf(ids, output_hidden_states=True).hidden_states[1][0]  # [T, d] after layer 0
        for t in (size, 12, 19):
            alone = llama.hf(ids[:, t - size:t + 1], output_hidden_states=True).hidden_states[1][0, -1]
            torch.testing.assert_close(first_layer[t], alone, rtol=1e-4, atol=1e-5)


def test_keyformer_policy_is_seeded(llama):
    ids = torch.randint(0, llama.vocab_size, (1, 16), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        runs = []
        for _ in range(2):
            with evicting_keys(llama.hf, keyformer_policy(heavy=3, recent=3, seed=0)):
                runs.append(llama.hf(ids).logits)
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_eviction_replay_refuses_long_inputs(llama):
    from workbench.forward.eviction import MAX_TOKENS

    ids = torch.zeros(1, MAX_TOKENS + 1, dtype=torch.long)
    with pytest.raises(WorkbenchError, match=f"give at most {MAX_TOKENS} tokens"):
        with torch.inference_mode(), evicting_keys(llama.hf, h2o_policy(8, 8)):
            llama.hf(ids)
    assert llama.hf.config._attn_implementation == "sdpa"  # restored after the error
