"""Samplers: DESIGN.md's kept-set vectors, and chi-square tests that each sampler draws
from exactly its kept-set distribution q = p * kept / sum(p * kept), where p and the kept
sets are recomputed in NumPy from the definitions (tests/sampling_reference.py)."""
import numpy as np
import pytest
import torch

import workbench.samplers as S
from sampling_reference import chi_square_pvalue, numpy_kept
from workbench.errors import WorkbenchError
from workbench.kernels import kept_set_reference, sample

Z = torch.tensor([2.0, 1.0, 0.0, -1.0])


@pytest.mark.parametrize("sampler, kept", [
    (S.TopP(0.9), [0, 1, 2]), (S.MinP(0.2), [0, 1]), (S.TopK(2), [0, 1]), (S.Greedy(), [0]),
    (S.Temperature(0.5), [0, 1, 2, 3]),
])
def test_design_kept_sets(sampler, kept):
    mask, q = sampler.filter(Z)
    assert torch.nonzero(mask)[:, 0].tolist() == kept
    assert q.sum().item() == pytest.approx(1.0)


def test_design_temperature_probabilities():
    _, q = S.Temperature(0.5).filter(Z)
    assert q.tolist() == pytest.approx([0.864955, 0.117059, 0.015842, 0.002144], abs=1e-6)


@pytest.mark.parametrize("alpha, size", [(0.4, 1), (0.6, 2), (0.8, 3)])
def test_design_top_h(alpha, size):
    mask, _ = S.TopH(alpha).filter(torch.tensor([0.5, 0.25, 0.125, 0.125]).log())
    assert mask.sum().item() == size and mask[:size].all()


def test_design_top_h_uniform_keeps_two_not_four():
    mask, _ = S.TopH(0.45).filter(torch.zeros(10))
    assert mask.sum().item() == 2  # the paper's rule; the authors' code would keep 4


SAMPLERS = {
    "temperature": dict(temperature=0.8), "top-k": dict(top_k=4), "top-p": dict(top_p=0.7),
    "min-p": dict(min_p=0.15), "top-h": dict(top_h=0.6), "combined": dict(temperature=1.3, top_k=6, top_p=0.95),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_draws_follow_the_kept_set_distribution(name):
    params = SAMPLERS[name]
    z = torch.randn(12, generator=torch.Generator().manual_seed(3)) * 1.5
    keep, q = numpy_kept(z.double().numpy(), **params)
    n = 40_000
    result = sample(z.expand(n, -1), **params, generator=torch.Generator().manual_seed(11))
    ids = result.ids.numpy()
    assert keep[ids].all(), "drew a token outside the kept set"
    assert (result.kept.numpy() == keep.sum()).all()
    counts = np.bincount(ids, minlength=len(q))[keep]
    assert chi_square_pvalue(counts, n * q[keep]) > 1e-3
    np.testing.assert_allclose(result.prob.numpy(), q[ids], rtol=1e-5)
    np.testing.assert_allclose(result.kept_entropy[0].item(), -(q[keep] * np.log(q[keep])).sum(), rtol=1e-5)


def test_same_seed_same_draws_and_per_row_parameters():
    z = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    a = sample(z, top_p=0.9, generator=torch.Generator().manual_seed(5)).ids
    b = sample(z, top_p=0.9, generator=torch.Generator().manual_seed(5)).ids
    assert torch.equal(a, b)
    per_row = sample(z, top_k=torch.tensor([1, 2, 3, 4, 5, 6]), temperature=torch.tensor([0.5] * 6))
    assert per_row.kept.tolist() == [1, 2, 3, 4, 5, 6]
    for row in range(6):
        mask, _ = kept_set_reference(z[row:row + 1], top_k=row + 1, temperature=0.5)
        assert mask[0, per_row.ids[row]]


def test_an_all_greedy_step_equals_greedy_rows_of_a_mixed_step():
    """All rows greedy takes a shortcut (no sort, no noise); it must give what the general path
    gives a greedy row beside a sampled one: the first of tied maxima, a kept set of one, and the
    generator advanced alike (the next draws agree)."""
    z = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    z[1, [7, 30]] = z[1].max() + 1  # a tie: the first wins
    mixed_generator, greedy_generator = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    mixed = sample(torch.cat([z, z[:1]]), temperature=torch.tensor([0.0] * 4 + [1.0]), generator=mixed_generator)
    greedy = sample(z, temperature=0.0, generator=greedy_generator)
    assert greedy.ids.tolist() == mixed.ids[:4].tolist() == z.argmax(-1).tolist() and greedy.ids[1] == 7
    assert greedy.kept.tolist() == [1] * 4 and greedy.prob.tolist() == [1.0] * 4
    torch.testing.assert_close(greedy.entropy, mixed.entropy[:4])
    torch.testing.assert_close(greedy.kept_entropy, mixed.kept_entropy[:4])
    assert torch.equal(mixed_generator.get_state(), greedy_generator.get_state())


def test_adaptive_temperature_keeps_the_sign():
    rng = np.random.default_rng(0)
    reference = np.exp(rng.normal(0.0, 1.0, size=500))  # token entropies
    sampler = S.Adaptive(reference, tau=0.5, temperature=1.0)
    log_h = np.log(reference)
    m = np.quantile(log_h, 0.8)
    s = np.sqrt(np.mean((log_h - m) ** 2))
    h_ref = (log_h - m) / s
    peaked = torch.tensor([[8.0, 0.0, 0.0, 0.0]])  # low entropy -> cooled
    flat = torch.zeros(1, 1000)  # high entropy -> heated
    for logits, sign in ((peaked, -1), (flat, 1)):
        p = torch.softmax(logits.double(), -1).numpy()[0]
        h = (np.log(-(p * np.log(p)).sum()) - m) / s
        expected = 1 + 0.5 * np.clip(h / h_ref.max() if h > 0 else h / -h_ref.min(), -1, 1)
        got = sampler.temperatures(logits).item()
        assert got == pytest.approx(expected, rel=1e-5)
        assert np.sign(got - 1.0) == sign


def test_composition_and_errors():
    combined = S.Temperature(0.7) + S.TopP(0.9) + S.MinP(0.05)
    assert (combined.temperature, combined.top_p, combined.min_p) == (0.7, 0.9, 0.05)
    with pytest.raises(WorkbenchError, match="both samplers set top_p"):
        S.TopP(0.9) + S.TopP(0.8)
    with pytest.raises(WorkbenchError, match="top_p must be in"):
        S.TopP(1.5)
    with pytest.raises(WorkbenchError, match="unknown sampler 'nucleus'"):
        S.from_spec("nucleus:0.9")
    assert S.from_spec("top-h:0.4", temperature=0.8) == S.TopH(0.4) + S.Temperature(0.8)


def test_as_sampler_accepts_objects_specs_and_none():
    assert S.as_sampler(S.TopH(0.4), S.Greedy()) == S.TopH(0.4)
    assert S.as_sampler("top-p:0.9", S.Greedy()) == S.Sampler(top_p=0.9)
    assert S.as_sampler("greedy", S.TopP(0.9)) == S.Sampler(temperature=0.0)
    assert S.as_sampler(None, S.TopP(0.95)) == S.TopP(0.95)
    with pytest.raises(WorkbenchError, match="sampler 'top-p' needs a value, e.g. top-p:0.9"):
        S.as_sampler("top-p", S.Greedy())
    with pytest.raises(WorkbenchError, match=r"or a spec string such as 'top-p:0.9' or 'greedy' \(names: greedy, "
                                             r"temperature, gumbel, top-k, top-p, min-p, top-h\); got dict"):
        S.as_sampler({"top_p": 0.9}, S.Greedy())


@pytest.mark.parametrize("spec, named, rules", [
    ("greedy", S.Greedy, {"temperature": 0.0}), ("gumbel:0.5", S.Gumbel, {"temperature": 0.5}),
    ("top-k:5", S.TopK, {"top_k": 5}), ("top-p:0.9", S.TopP, {"top_p": 0.9}), ("min-p:0.1", S.MinP, {"min_p": 0.1}),
    ("top-h:0.4", S.TopH, {"top_h": 0.4}),
])
def test_named_samplers_are_classes_equal_to_their_rules(spec, named, rules):
    """Issue 17: `TopP(0.9)` and the others are classes (a spec string gives that class), and
    a sampler equals the plain `Sampler` with the same rules, whatever its class: the same
    draws from the same seed."""
    sampler, plain = S.from_spec(spec), S.Sampler(**rules)
    assert isinstance(sampler, named) and isinstance(sampler, S.Sampler) and not isinstance(plain, named)
    assert sampler == plain and hash(sampler) == hash(plain)
    assert sampler != S.Sampler(**{**rules, "min_p": 0.2 if "min_p" in rules else 0.05})  # another rule differs
    logits = torch.randn(4, 100, generator=torch.Generator().manual_seed(0))
    draws = [s.sample(logits, torch.Generator().manual_seed(7)).ids for s in (sampler, plain)]
    assert torch.equal(*draws)
