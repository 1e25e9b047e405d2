"""Attribution (workbench.attribution, model.attribute): every method against an independent
computation on a float64 tiny model: gradients against central finite differences of the input
embeddings, integrated-gradient completeness, leave-one-out against a direct re-run without the
span, ReAGent against a plain one-target-at-a-time loop, contrastive targets against the
difference of two single-target attributions."""
import math
import warnings

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.attribution import gradient
from workbench.attribution.occlusion import occlusion
from workbench.attribution.reagent import prediction_replacer, reagent, target_generator, uniform_replacer
from workbench.attribution.spans import groups
from workbench.attribution.target import Targets
from workbench.errors import IncompleteAttributionWarning, MemoryEstimateExceeded, WorkbenchError
from workbench.model.tiny import tiny_model

PROMPT, CONTINUATION = "The capital of France is", " Paris. It is big."


@pytest.fixture(scope="module")
def model():
    """Tiny GPT-2 in float64 throughout (Llama's RMSNorm computes in float32 whatever the
    weights' dtype, which would drown finite differences in rounding)."""
    model = tiny_model("gpt2")
    model.hf.double()
    return model


@pytest.fixture(scope="module")
def ids(model):
    return torch.tensor(model.tokenizer(PROMPT + CONTINUATION)["input_ids"])


def direct_score(model, *, embeds=None, ids=None, position, target, foil=None) -> float:
    """f_t from the HF model's own forward (its logits, not the workbench's path)."""
    return float(direct_scores(model, embeds=embeds, ids=ids, positions=[position], targets=[target],
                               foils=None if foil is None else [foil])[0])


def direct_scores(model, *, embeds=None, ids=None, positions, targets, foils=None) -> np.ndarray:
    """f_t of several targets from one forward of the HF model."""
    with torch.no_grad():
        logprobs = model.hf(inputs_embeds=embeds, input_ids=ids).logits[0].double().log_softmax(-1)
    rows = torch.tensor(positions) - 1
    values = logprobs[rows, torch.as_tensor(targets)]
    if foils is not None:
        values = values - logprobs[rows, torch.as_tensor(foils)]
    return values.numpy()


def directional_derivative(model, ids, positions, source, direction, foils=None, h=1e-5) -> np.ndarray:
    """d f_t / d e_s . direction for every target t, by a central difference along `direction`
    [d] at source s (two forwards)."""
    embeds = model.hf.get_input_embeddings()(ids[None]).detach()
    up, down = embeds.clone(), embeds.clone()
    up[0, source] += h * direction
    down[0, source] -= h * direction
    targets = ids[positions]
    return (direct_scores(model, embeds=up, positions=positions, targets=targets, foils=foils)
            - direct_scores(model, embeds=down, positions=positions, targets=targets, foils=foils)) / (2 * h)


@pytest.mark.parametrize("foil", [None, 7])
def test_gradient_methods_match_finite_differences(model, ids, foil):
    """Input x gradient is the derivative along the source's own embedding; saliency, the
    gradient's norm, is the derivative along the gradient's unit vector (from a plain backward
    of the HF model: a wrong direction gives a smaller derivative)."""
    positions = [9, 14, len(ids) - 1]
    foils = None if foil is None else torch.full((3,), foil)
    targets = Targets(torch.tensor(positions), ids[positions], foils)
    saliency = gradient.gradient_attribution(model, ids, targets, "saliency", target_batch=2, progress=False)
    product = gradient.gradient_attribution(model, ids, targets, "input_x_gradient", progress=False)
    embeds = model.hf.get_input_embeddings()(ids).detach()
    for source in (0, 8):
        along_embedding = directional_derivative(model, ids, positions, source, embeds[source], foils)
        np.testing.assert_allclose(product.values[:, source], along_embedding, rtol=1e-6, atol=1e-9)
        for k, position in enumerate(positions):
            grad = _autograd_gradient(model, ids, position, source, foil)
            unit = torch.from_numpy(grad / np.linalg.norm(grad))
            along_unit = directional_derivative(model, ids, [position], source, unit, None if foil is None else [foil])
            assert saliency.values[k, source] == pytest.approx(along_unit[0], rel=1e-6)
    assert np.isnan(saliency.values[0, positions[0]:]).all()  # a token is explained by earlier ones only
    assert all(p.requires_grad for p in model.hf.parameters())  # restored after the input-only pass
    assert all(p.grad is None for p in model.hf.parameters())  # no weight gradient was computed


def _autograd_gradient(model, ids, position, source, foil) -> np.ndarray:
    """d f_t / d e_s [d] by one plain backward of the HF model's own forward."""
    embeds = model.hf.get_input_embeddings()(ids[None]).detach().requires_grad_(True)
    logprobs = model.hf(inputs_embeds=embeds).logits[0, position - 1].double().log_softmax(-1)
    value = logprobs[ids[position]] - (logprobs[foil] if foil is not None else 0)
    (grad,) = torch.autograd.grad(value, embeds)
    return grad[0, source].numpy()


def test_integrated_gradients_completeness_gap_shrinks_with_steps(model, ids):
    positions = [6, 15, len(ids) - 1]
    targets = Targets(torch.tensor(positions), ids[positions])
    gaps = {}
    embeds = model.hf.get_input_embeddings()(ids[None]).detach()
    targets_ids = ids[positions]
    # f(e) - f(b) from the model's own forward at e and at the baseline b = 0
    delta = (direct_scores(model, embeds=embeds, positions=positions, targets=targets_ids)
             - direct_scores(model, embeds=torch.zeros_like(embeds), positions=positions, targets=targets_ids))
    for steps in (8, 32):
        result = gradient.gradient_attribution(model, ids, targets, "integrated_gradients", steps=steps,
                                               point_batch=20, target_batch=2, progress=False)
        np.testing.assert_allclose(np.nansum(result.values, 1) - delta, result.per_target["ig_gap"], atol=1e-9)
        gaps[steps] = np.abs(result.per_target["ig_gap"]).max()
    assert gaps[32] < gaps[8] / 2  # a right Riemann sum: the gap falls about like 1 / steps
    assert gaps[32] < 0.05 * max(1.0, np.abs(delta).max())


@pytest.mark.parametrize("rule", gradient.RULES)
def test_path_rules_integrate_polynomials_on_the_unit_interval(rule):
    # the integral of a^j over [0, 1] is 1 / (j + 1); each rule is exact up to its degree
    exact_degree = {"right": 0, "midpoint": 1, "trapezoid": 1, "gauss_legendre": 2 * 8 - 1}[rule]
    alphas, weights = gradient.path_points(8, rule)
    assert all(0 <= a <= 1 for a in alphas)
    for degree in range(exact_degree + 1):
        assert math.isclose(sum(w * a ** degree for a, w in zip(alphas, weights)), 1 / (degree + 1), rel_tol=1e-12)
    # one degree more: not exact, the error of the rule's order (right: 1/(2m) for a^1)
    error = abs(sum(w * a ** (exact_degree + 1) for a, w in zip(alphas, weights)) - 1 / (exact_degree + 2))
    assert 0 < error < 0.07


@pytest.mark.parametrize("rule", ["midpoint", "trapezoid", "gauss_legendre"])
def test_higher_order_rules_close_the_completeness_gap_faster(model, ids, rule):
    positions = [6, len(ids) - 1]
    targets = Targets(torch.tensor(positions), ids[positions])

    def gap(steps, rule):
        result = gradient.gradient_attribution(model, ids, targets, "integrated_gradients", steps=steps, rule=rule,
                                               progress=False)
        # the gap against f(e) - f(b) from the model's own forward
        embeds = model.hf.get_input_embeddings()(ids[None]).detach()
        delta = (direct_scores(model, embeds=embeds, positions=positions, targets=ids[positions])
                 - direct_scores(model, embeds=torch.zeros_like(embeds), positions=positions, targets=ids[positions]))
        return np.abs(np.nansum(result.values, 1) - delta).max()

    right, better, finer = gap(8, "right"), gap(8, rule), gap(16, rule)
    assert better < right / 3
    assert finer < better / 3  # second order or higher: the gap falls like 1 / steps^2 or faster


def test_a_non_finite_gap_is_unresolved_and_said_so():
    """A NaN gradient on the path (trapezoid from the zero embedding on SmolLM2) gives a NaN gap:
    unresolved, named 'not finite', never printed as nan."""
    from workbench.attribution.gradient import completeness_note, incomplete

    gap, delta = np.array([np.nan, 0.001, 5.0, 0.05]), np.array([1.0, 1.0, 1.0, np.inf])
    assert incomplete(gap, delta).tolist() == [True, False, True, True]
    note = completeness_note(np.array([4, 5, 6, 7]), gap, delta)
    assert "3 of 4 targets" in note and "position 4, gap not finite of +1" in note and "nan" not in note


def test_an_unresolved_path_integral_warns_and_says_so_in_the_run():
    model = wb.load("tiny:gpt2")
    with pytest.warns(IncompleteAttributionWarning, match="miss f\\(x\\) - f\\(baseline\\)") as caught:
        run = model.attribute(PROMPT, continuation=CONTINUATION, method="integrated_gradients", steps=1,
                              progress=False)
    targets = run.arrays["attr_targets"]
    gap = np.nansum(run.arrays["attr_integrated_gradients"], 1) - run.table["ig_delta"].to_numpy(float)[targets]
    missed = np.abs(gap) > np.maximum(0.1 * np.abs(run.table["ig_delta"].to_numpy(float)[targets]), 0.01)
    assert f"{missed.sum()} of {len(targets)} targets" in str(caught[0].message)
    assert run.meta["attribution"]["incomplete"] == str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteAttributionWarning)  # a resolved one is silent
        resolved = model.attribute(PROMPT, continuation=CONTINUATION, method="integrated_gradients", steps=64,
                                   rule="gauss_legendre", progress=False)
    assert "incomplete" not in resolved.meta["attribution"]
    # the source strip's title gives the shown target's gap, flagged only where it is unresolved
    from workbench.widgets.attribution import sources_figure

    last = int(targets[-1])
    title = sources_figure(run, last).layout.title.text
    assert f"completeness gap {run.table['ig_gap'][last]:+.3g} of f(x) - f(b) = {run.table['ig_delta'][last]:+.3g}" \
        in title and ("unresolved" in title) == bool(missed[-1])
    assert "unresolved" not in sources_figure(resolved, last).layout.title.text


@pytest.mark.parametrize("level", ["token", "word", "sentence"])
def test_occlusion_matches_a_rerun_without_the_span(model, ids, level):
    text = model.tokenizer.decode(ids)
    encoding = model.tokenizer(text, return_offsets_mapping=True)
    starts = [s for s, _ in encoding["offset_mapping"]]
    ends = [e for _, e in encoding["offset_mapping"]]
    group_of = groups(text, starts, ends, level)
    positions = [5, len(ids) - 1]
    targets = Targets(torch.tensor(positions), ids[positions])
    result = occlusion(model, ids, targets, group_of, level=level, batch=3, progress=False)
    with torch.no_grad():
        for k, position in enumerate(positions):
            full = direct_score(model, ids=ids[None], position=position, target=ids[position])
            assert result.scores[k] == pytest.approx(full, abs=1e-10)
            for group in np.unique(group_of[:position]):
                span = np.flatnonzero(group_of == group)
                before = span[span < position]
                kept = np.setdiff1d(np.arange(position + 1), before)  # the context left, then the target
                value = np.nansum(result.values[k, before])
                if len(kept) == 1:  # nothing left to predict from
                    assert np.isnan(result.values[k, before]).all()
                    continue
                rerun = direct_score(model, ids=ids[kept][None], position=len(kept) - 1, target=ids[position])
                assert value == pytest.approx(full - rerun, abs=1e-9)
                assert np.allclose(result.values[k, before], value / len(before))  # shared equally


def reference_reagent(model, ids, position, replace, *, ratio, keep, top_k, chains, max_steps, seed, foil=None):
    """ReAGent for one target, one chain and one unbatched forward at a time."""
    generator = target_generator(model, seed, position)
    context = ids[:position]
    scores = torch.rand((chains, position), generator=generator, dtype=torch.float64)

    def measure(sequence):
        with torch.no_grad():
            logits = model.hf(input_ids=sequence[None]).logits[0, -1].double()
        probs = logits.softmax(-1)
        if foil is None:
            return float(probs[ids[position]]), int((logits > logits[ids[position]]).sum()) < top_k
        return float(probs[ids[position]] - probs[foil]) / 2, bool(probs[ids[position]] > probs[foil])

    original, _ = measure(context)
    stopped = [False] * chains
    steps = 0
    for _ in range(max_steps):
        if all(stopped):
            break
        tiled = context.expand(chains, -1)
        mask = torch.rand(tiled.shape, generator=generator) < ratio
        replaced = replace(tiled, mask, generator)
        for chain in range(chains):
            if stopped[chain]:
                continue
            delta = original - measure(replaced[chain])[0]
            for s in range(position):
                d = delta if mask[chain, s] else -delta
                p = min(max(0.5 + 0.5 * d, 1e-6), 1 - 1e-6)
                scores[chain, s] += math.log(p / (1 - p))
        steps += 1
        checked = torch.ones(tiled.shape, dtype=torch.bool)
        for chain in range(chains):
            checked[chain, scores[chain].topk(min(keep, position)).indices] = False
        kept_only = replace(tiled, checked, generator)
        for chain in range(chains):
            stopped[chain] = stopped[chain] or measure(kept_only[chain])[1]
    weights = scores.softmax(1)
    chosen = [c for c in range(chains) if stopped[c]] or list(range(chains))
    return weights[chosen].mean(0).numpy(), steps


@pytest.mark.parametrize("replacement", ["uniform", "predictions", "masked_lm", "contrastive"])
def test_reagent_matches_a_plain_loop(model, ids, replacement):
    settings = dict(ratio=0.3, keep=3, top_k=20, chains=2, max_steps=5, seed=11)
    positions = [4, len(ids) - 1]
    foil = 40 if replacement == "contrastive" else None

    def masked_lm(batch, mask, generator):  # a stand-in for a user's masked LM: any (ids, mask, generator) -> ids
        return torch.where(mask, (batch + 1 + torch.randint(5, batch.shape, generator=generator)) % 300, batch)

    make = {"uniform": lambda: uniform_replacer(model), "predictions": lambda: prediction_replacer(model, ids),
            "masked_lm": lambda: masked_lm, "contrastive": lambda: uniform_replacer(model)}[replacement]
    targets = Targets(torch.tensor(positions), ids[positions], None if foil is None else torch.full((2,), foil))
    given = replacement if replacement in ("uniform", "predictions") else masked_lm if replacement == "masked_lm" else "uniform"
    result = reagent(model, ids, targets, replacement=given, batch=4, progress=False, **settings)
    for k, position in enumerate(positions):
        expected, steps = reference_reagent(model, ids, position, make(), foil=foil, **settings)
        np.testing.assert_allclose(result.values[k, :position], expected, rtol=1e-7, atol=1e-10)
        assert result.values[k, :position].sum() == pytest.approx(1.0)
        assert result.per_target["reagent_steps"][k] == steps
        assert np.isnan(result.values[k, position:]).all()


@pytest.mark.parametrize("method", ["input_x_gradient", "integrated_gradients", "occlusion"])
def test_contrastive_is_the_difference_of_two_single_target_attributions(model, ids, method):
    """For methods linear in f, attributing log p(y) - log p(foil) equals attributing log p(y)
    minus attributing log p(foil) (the foil taken as a target at the same position)."""
    positions = torch.tensor([7, 13, len(ids) - 1])
    foils = torch.tensor([40, 41, 42])

    def run(targets):
        if method == "occlusion":
            return occlusion(model, ids, targets, np.arange(len(ids)), progress=False).values
        return gradient.gradient_attribution(model, ids, targets, method, steps=8, progress=False).values

    contrastive = run(Targets(positions, ids[positions], foils))
    difference = run(Targets(positions, ids[positions])) - run(Targets(positions, foils))
    np.testing.assert_allclose(contrastive, difference, rtol=1e-8, atol=1e-10)


def test_model_attribute_run(model, tmp_path):
    run = model.attribute(PROMPT, continuation=CONTINUATION, method="input_x_gradient", foil=" b", progress=False)
    n_prompt = len(model.tokenizer(PROMPT)["input_ids"])
    values, targets = run.arrays["attr_input_x_gradient"], run.arrays["attr_targets"]
    assert targets.tolist() == list(range(n_prompt, len(run.table)))
    assert run.text == PROMPT + CONTINUATION
    assert run.table["target"].tolist() == [False] * n_prompt + [True] * (len(run.table) - n_prompt)
    lower = np.arange(len(run.table))[None, :] < targets[:, None]
    assert np.isfinite(values[lower]).all() and np.isnan(values[~lower]).all()
    totals = run.table["attr_input_x_gradient_total"].astype("float64").to_numpy()
    np.testing.assert_allclose(totals[:-1], values[:, :-1].sum(0, where=lower[:, :-1]))
    assert run.table["foil"][targets[0]] == " b" and run.meta["attribution"]["contrastive"]
    words = wb.attribution.aggregate(run, "word")
    assert words.shape[0] == len(targets)
    np.testing.assert_allclose(words.sum(axis=1, skipna=True).to_numpy(), np.nansum(values, 1))
    assert wb.Run.load(run.save(tmp_path / "attr")).equals(run)


def test_model_attribute_generates_and_refuses_bad_input(model, monkeypatch):
    run = model.attribute(PROMPT, max_new_tokens=4, method="saliency", progress=False)
    generated = model.generate(PROMPT, sampler=wb.samplers.Greedy(), max_new_tokens=4, progress=False)
    assert run.table["token_id"].tolist() == generated.table["token_id"].tolist()
    assert run.table["role"].tolist()[-4:] == ["generated"] * 4
    bad = {"method": dict(method="shap"), "both": dict(continuation="x", max_new_tokens=2),
           "foil": dict(continuation=" Paris", foil=" Paris is"), "target": dict(continuation=" Paris", targets=[0]),
           "level": dict(continuation=" Paris", method="occlusion", level="page")}
    for name, options in bad.items():
        with pytest.raises(WorkbenchError) as error:
            model.attribute(PROMPT, progress=False, **options)
        assert "\n" not in str(error.value), name
    from workbench.forward import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    with pytest.raises(MemoryEstimateExceeded, match="saliency of"):
        model.attribute(PROMPT, continuation=CONTINUATION, progress=False)


def test_occlusion_of_a_span_holding_every_token_has_no_value(model):
    """One sentence is the whole text: leaving it out leaves nothing to predict from (NaN), and
    the run still comes back."""
    run = model.attribute(PROMPT, continuation=" Paris", method="occlusion", level="sentence", progress=False)
    assert np.isnan(run.arrays["attr_occlusion"]).all()
    assert run.table["target_score"].notna()[run.table["target"]].all()
