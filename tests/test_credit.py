"""RL token credit against independent computations: finite differences of an actual SGD
step (THR), per-token reverse-mode gradients, HF forwards and HF greedy decoding, pure-Python
references (prefix tree), and the DESIGN.md test vectors (cDPO, implicit reward)."""
import copy
import re

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
import workbench.samplers as S
from workbench import credit
from workbench.credit import thr as thr_module
from workbench.credit.critical import rounds_plan
from workbench.errors import MemoryEstimateExceeded, WorkbenchError
from workbench.tokens import generated_spans
from workbench.results.group import Group
from workbench.model.tiny import tiny_model
from workbench.widgets import credit as views
from workbench.widgets.panels import panels_for

PROMPT = "What is seven times eight?"


def has_e(text: str) -> float:
    return float("e" in text)


def mixed_group(model, n=4, max_new_tokens=8, seed=0, **kwargs):
    group = model.rollouts(PROMPT, n=n, reward=has_e, max_new_tokens=max_new_tokens, seed=seed, thr=None,
                           progress=False, **kwargs)
    assert 0 < group.rewards.sum() < n, "the test needs correct and incorrect responses"
    return group


def sequence_logprobs(hf, prompt_ids, response_ids):
    """log pi(y_k | x, y_<k) [T] from an ordinary HF forward (no cache, no batching)."""
    logits = hf(torch.tensor([prompt_ids + response_ids])).logits[0]
    logp = torch.log_softmax(logits[len(prompt_ids) - 1:len(prompt_ids) - 1 + len(response_ids)], -1)
    return logp.gather(-1, torch.tensor(response_ids)[:, None])[:, 0]


def correct_set_objective(hf, group):
    """F = sum_{i in C} log pi(y_i | x) / |y_i|."""
    responses = group.response_ids()
    return sum(sequence_logprobs(hf, group.prompt_ids, responses[i]).sum() / len(responses[i])
               for i in np.flatnonzero(group.correct()))


# ----- Token Hidden Reward ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2_group():
    model = wb.load("tiny:gpt2", dtype=torch.float64)  # float64 throughout (no fp32 norms or softmax)
    return model, mixed_group(model)


def test_thr_is_the_first_order_effect_of_an_sgd_step(gpt2_group):
    """An SGD step with learning rate eta on token (j,k)'s GRPO loss -(A_j/|y_j|) log pi(y_jk)
    changes F by eta * THR(j,k) + O(eta^2): the error shrinks in proportion to eta."""
    model, group = gpt2_group
    thr = credit.token_hidden_reward(model, group, mode="exact")
    assert thr.attrs["method"] == "jvp"
    responses, table = group.response_ids(), group.table
    with torch.no_grad():
        f0 = float(correct_set_objective(model.hf, group))
    strongest = int(np.argmax(np.abs(thr.to_numpy())))
    incorrect = int(table.index[table.response == int(np.flatnonzero(~group.correct())[0])][3])
    for row in (strongest, incorrect):
        j, k = int(table.response[row]), int(table.position[row])
        loss = -(group.advantages[j] / len(responses[j])) * sequence_logprobs(model.hf, group.prompt_ids, responses[j])[k]
        gradients = torch.autograd.grad(loss, list(model.hf.parameters()))
        errors = []
        for eta in (1e-5, 1e-6):
            stepped = copy.deepcopy(model.hf)
            with torch.no_grad():
                for parameter, gradient in zip(stepped.parameters(), gradients):
                    parameter -= eta * gradient
                change = float(correct_set_objective(stepped, group)) - f0
            errors.append(abs(change / eta - thr[row]) / abs(thr[row]))
        assert errors[1] < 1e-4, errors
        assert errors[0] / errors[1] > 5, errors  # first order: the remainder is O(eta)


@pytest.mark.parametrize("family, dtype, tolerance", [("llama", torch.float64, 1e-6),
                                                     ("mixtral", torch.float32, 1e-4)])  # grouped-mm: no float64
def test_exact_thr_equals_per_token_gradient_inner_products(family, dtype, tolerance):
    model = wb.load(f"tiny:{family}", dtype=dtype)
    implementations = (model.hf.config._attn_implementation, getattr(model.hf.config, "_experts_implementation", None))
    group = mixed_group(model, n=4, max_new_tokens=6, seed=1)
    thr = credit.token_hidden_reward(model, group, mode="exact")
    assert (model.hf.config._attn_implementation, getattr(model.hf.config, "_experts_implementation", None)) == implementations
    parameters = list(model.hf.parameters())
    g_correct = torch.autograd.grad(correct_set_objective(model.hf, group), parameters)
    responses = group.response_ids()
    for j in range(len(group)):
        logp = sequence_logprobs(model.hf, group.prompt_ids, responses[j])
        for k in range(len(responses[j])):
            gradient = torch.autograd.grad(logp[k], parameters, retain_graph=True)
            expected = group.advantages[j] / len(responses[j]) * sum(float((a * b).sum()) for a, b in zip(gradient, g_correct))
            row = group.rows(j).index[k]
            assert thr[row] == pytest.approx(expected, rel=10 * tolerance, abs=tolerance * np.abs(thr).max())


def test_difference_method_and_batching_agree_with_jvp(gpt2_group):
    model, group = gpt2_group
    jvp = credit.token_hidden_reward(model, group, mode="exact")
    difference = credit.token_hidden_reward(model, group, mode="exact", method="difference", batch_size=3)
    assert difference.attrs["method"] == "difference"
    np.testing.assert_allclose(difference, jvp, atol=1e-5 * np.abs(jvp).max())


def test_cheap_thr_is_the_exact_thr_of_the_last_layer():
    """With the whole vocabulary, the hidden-state approximation is exactly the THR taken over
    the lm_head weight alone (untied in tiny Llama)."""
    model = wb.load("tiny:llama", dtype=torch.float64)
    group = mixed_group(model, seed=2)
    cheap = credit.token_hidden_reward(model, group, mode="cheap", vocabulary="all")
    last_layer = credit.token_hidden_reward(model, group, mode="exact", params=["lm_head.weight"])
    assert last_layer.attrs["params"] == model.hf.lm_head.weight.numel()
    np.testing.assert_allclose(cheap, last_layer, atol=1e-6 * np.abs(last_layer).max())


def test_cheap_thr_restricted_vocabulary_matches_the_pairwise_formula():
    model = wb.load("tiny:qwen2", dtype=torch.float64)
    group = mixed_group(model, n=3, max_new_tokens=6, seed=0)
    cheap = credit.token_hidden_reward(model, group, mode="cheap")
    vocabulary = sorted(set(group.table.token_id))
    tokens = []  # (response, y, p restricted to the group's vocabulary, h)
    for j, ids in enumerate(group.response_ids()):
        with torch.no_grad():
            out = model.hf(torch.tensor([group.prompt_ids + ids]), output_hidden_states=True)
        start = len(group.prompt_ids) - 1
        p = torch.softmax(out.logits[0, start:start + len(ids)], -1)[:, vocabulary]
        h = out.hidden_states[-1][0, start:start + len(ids)]
        tokens += [(j, vocabulary.index(y), p[k], h[k]) for k, y in enumerate(ids)]
    lengths, correct = group.lengths(), group.correct()
    for n, (j, y, p, h) in enumerate(tokens):
        total = 0.0
        for i, y2, p2, h2 in tokens:
            if correct[i]:
                kernel = float(y == y2) - float(p2[y]) - float(p[y2]) + float(p @ p2)
                total += kernel * float(h @ h2) / lengths[i]
        assert cheap.iloc[n] == pytest.approx(group.advantages[j] / lengths[j] * total, rel=1e-9, abs=1e-12)


def test_thr_parameter_subsets_memory_and_degenerate_groups(gpt2_group, monkeypatch):
    model, group = gpt2_group
    tied = credit.select_parameters(model, ["lm_head.weight"])  # GPT-2 ties lm_head to the embeddings
    assert list(tied) == ["transformer.wte.weight"]
    assert set(credit.select_parameters(model, r"h\.1\.")) == {n for n, _ in model.hf.named_parameters() if ".h.1." in n}
    with pytest.raises(WorkbenchError, match="selects no parameter"):
        credit.select_parameters(model, "nothing-like-this")
    with pytest.raises(WorkbenchError, match="no parameter named 'wte'"):
        credit.select_parameters(model, ["wte"])
    monkeypatch.setattr(thr_module, "exact_bytes", lambda *args: 10**18)
    with pytest.raises(MemoryEstimateExceeded, match=r"exact THR .* params=.*mode='cheap'"):
        credit.token_hidden_reward(model, group, mode="exact")
    assert credit.token_hidden_reward(model, group, mode="auto").attrs["mode"] == "cheap"
    monkeypatch.undo()
    same = Group(group.prompt, group.responses, np.zeros(len(group)), group.table.copy(), group.arrays, group.meta)
    for mode in ("exact", "cheap"):
        assert (credit.token_hidden_reward(model, same, mode=mode) == 0).all()


def test_reweighting_preview_and_sign_agreement(gpt2_group):
    _, group = gpt2_group
    table = group.table.assign(thr=np.linspace(-1, 1, len(group.table)))
    preview = credit.reweighted_advantages(Group(group.prompt, group.responses, group.rewards, table), 0.5)
    np.testing.assert_allclose(preview, table.advantage * (1 + 0.5 * np.sign(table.thr)))
    assert credit.sign_agreement([3, -2, 1, 0.1], [1, -1, -1, -1], top=3) == pytest.approx(2 / 3)
    assert credit.sign_agreement([3, -2, 1, 0.1], [1, -1, -1, -1], top=4) == pytest.approx(2 / 4)


# ----- critical tokens -------------------------------------------------------------------------------
def test_cdpo_design_vector():
    z_pos, z_neg = torch.tensor([.7, .2, .1]).log().expand(3, 3), torch.tensor([.2, .7, .1]).log().expand(3, 3)
    s = credit.cdpo_scores(z_pos, z_neg, torch.tensor([0, 1, 2]), beta=1.0)
    np.testing.assert_allclose(s, [.9397, .0219, .0384], atol=5e-5)
    np.testing.assert_allclose(1 - s, [.060, .978, .962], atol=5e-4)


def independent_cdpo(positive_hf, negative_hf, positive_prompt, negative_prompt, ids, beta=1.0):
    with torch.no_grad():
        z_pos = positive_hf(torch.tensor([positive_prompt + ids])).logits[0, len(positive_prompt) - 1:-1].double()
        z_neg = negative_hf(torch.tensor([negative_prompt + ids])).logits[0, len(negative_prompt) - 1:-1].double()
    p = torch.softmax((1 + beta) * z_pos - beta * z_neg, -1)
    return p[torch.arange(len(ids)), ids].numpy()


def test_contrastive_two_models_and_two_prompts():
    positive, negative = tiny_model("llama", seed=0), tiny_model("llama", seed=1)
    group = mixed_group(positive)
    frame = credit.contrastive_critical_tokens(group, positive, negative)
    for j, ids in enumerate(group.response_ids()):
        rows = group.rows(j).index
        if group.correct()[j]:
            assert frame.loc[rows, "cdpo_score"].isna().all()
        else:
            expected = independent_cdpo(positive.hf, negative.hf, group.prompt_ids, group.prompt_ids, ids)
            np.testing.assert_allclose(frame.loc[rows, "cdpo_score"], expected, rtol=1e-4)
            np.testing.assert_allclose(frame.loc[rows, "cdpo_weight"], 1 - expected, rtol=1e-4, atol=1e-6)
    careful, careless = "Answer carefully. " + PROMPT, "Answer carelessly. " + PROMPT
    prompted = credit.contrastive_critical_tokens(group, (positive, careful), (positive, careless), beta=0.5,
                                                  responses=[0])
    prompt_ids = [positive.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                         tokenize=True, return_dict=True)["input_ids"] for text in (careful, careless)]
    expected = independent_cdpo(positive.hf, positive.hf, *prompt_ids, group.response_ids(0), beta=0.5)
    np.testing.assert_allclose(prompted.loc[group.rows(0).index, "cdpo_score"], expected, rtol=1e-4)
    with pytest.raises(WorkbenchError, match="same model under the same prompt"):
        credit.contrastive_critical_tokens(group, positive, positive)


def test_find_critical_scan_and_bisection():
    def counter(curve):
        calls = []

        def evaluate(positions):
            calls.extend(positions)
            return [curve[p] for p in positions]
        return evaluate, calls

    bumpy = [4, 3, 0, 2, 0, 0]  # non-monotone: the definition takes the first zero
    evaluate, calls = counter(bumpy)
    counts, critical, exact = credit.find_critical(evaluate, len(bumpy))
    assert (critical, exact, sorted(calls)) == (2, True, list(range(6)))
    monotone = [8, 8, 7, 5, 5, 3, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    evaluate, calls = counter(monotone)
    counts, critical, exact = credit.find_critical(evaluate, len(monotone), budget=6)
    assert (critical, exact) == (8, False) and len(calls) <= 6
    assert all(counts[p] == monotone[p] for p in counts)
    evaluate, calls = counter(monotone)
    assert credit.find_critical(evaluate, len(monotone), budget=2)[1] is None and len(calls) == 2  # budget ran out
    assert credit.find_critical(lambda ps: [1 for _ in ps], 5, budget=3)[1] is None  # never drops to zero
    batches = []
    wide = lambda ps: batches.append(len(ps)) or [monotone[p] for p in ps]  # noqa: E731
    counts, critical, exact = credit.find_critical(wide, len(monotone), budget=10, per_round=3)
    assert critical == 8 and sum(batches) <= 10 and len(batches) <= 3  # the end, then at most 2 rounds of 3
    assert rounds_plan(32, 6, 16) == 1 and rounds_plan(32, 12, 16) == 5 and rounds_plan(32, 12, 2) == 2


def test_rollout_critical_tokens_match_unbatched_greedy_completions():
    model = wb.load("tiny:llama", dtype=torch.float64)
    no_e = lambda text: float("e" not in text)  # noqa: E731: once an "e" is in the prefix, nothing can succeed
    group = model.rollouts(PROMPT, n=4, reward=no_e, max_new_tokens=10, seed=4, thr=None, progress=False)
    response = int(np.flatnonzero(~group.correct())[0])
    result = credit.rollout_critical_tokens(model, group, response, n=2, sampler=S.Greedy(), max_new_tokens=5,
                                            progress=False)
    ids = group.response_ids(response)
    expected = []
    for t in range(len(ids)):
        prefix = group.prompt_ids + ids[:t + 1]
        with torch.no_grad():
            completion = model.hf.generate(torch.tensor([prefix]), do_sample=False, max_new_tokens=5,
                                           eos_token_id=None, pad_token_id=0)[0, len(prefix):].tolist()
        expected.append(2 * no_e(model.tokenizer.decode(ids[:t + 1] + completion)))
    assert result.exact and result.positions.tolist() == list(range(len(ids)))
    assert result.correct.tolist() == expected
    assert result.critical == (expected.index(0) if 0 in expected else None)
    group.add(result.columns())
    rows = group.rows(response)
    np.testing.assert_allclose(rows.success_rate, np.array(expected) / 2)
    assert rows.critical.fillna(False).sum() == (result.critical is not None)
    assert group.table.success_rate[group.table.response != response].isna().all()
    with pytest.raises(WorkbenchError, match="pass reward="):
        credit.rollout_critical_tokens(model, Group(group.prompt, group.responses, group.rewards, group.table,
                                                    group.arrays, group.meta), response)


# ----- implicit reward, D3S ----------------------------------------------------------------------------
def test_implicit_reward_design_vector_and_models():
    np.testing.assert_allclose(credit.implicit_token_reward(np.log([.5, .9, .2]), np.log([.25, .9, .4]), beta=.1),
                               [.0693, 0, -.0693], atol=5e-5)
    policy, reference = tiny_model("qwen2", seed=0), tiny_model("qwen2", seed=3)
    group = mixed_group(policy)
    reward = credit.implicit_reward(policy, reference, group, beta=0.2)
    for j, ids in enumerate(group.response_ids()):
        with torch.no_grad():
            expected = 0.2 * (sequence_logprobs(policy.hf, group.prompt_ids, ids)
                              - sequence_logprobs(reference.hf, group.prompt_ids, ids)).double().numpy()
        np.testing.assert_allclose(reward[group.rows(j).index], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(credit.token_logprobs(policy, group), group.table.logprob, rtol=1e-4, atol=1e-5)
    d3s = credit.d3s_priority(group)
    np.testing.assert_allclose(d3s, np.abs(group.advantages[group.table.response]) * group.table.entropy)


# ----- prefix tree ----------------------------------------------------------------------------------------
def synthetic_group(responses, rewards):
    """A Group of given token-id responses over the tiny tokenizer (no model)."""
    tokenizer = tiny_model("llama").tokenizer
    texts, parts = [], []
    for g, ids in enumerate(responses):
        text, starts, ends = generated_spans(tokenizer, ids, 0)
        texts.append(text)
        parts.append(pd.DataFrame({"response": g, "position": range(len(ids)), "token_id": ids,
                                   "token": [tokenizer.decode([i]) for i in ids], "start": starts, "end": ends}))
    table = pd.concat(parts, ignore_index=True)
    group = Group("prompt", texts, rewards, table, {"prompt_ids": np.array([1, 2])}, {"model": "synthetic"})
    table["advantage"] = group.advantages[table.response]
    table["entropy"] = 1.0
    return group


def reference_prefix_columns(responses, correct):
    rows = []
    for ids in responses:
        for t in range(len(ids)):
            sharing = [h for h, other in enumerate(responses) if other[:t + 1] == ids[:t + 1]]
            before = [h for h, other in enumerate(responses) if other[:t] == ids[:t] and len(other) > t]
            rows.append((len(sharing), float(np.mean(correct[sharing])), len({responses[h][t] for h in before}) > 1))
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prefix_tree_matches_a_python_reference(seed):
    rng = np.random.default_rng(seed)
    stems = [[5, 6, 7], [5, 6, 9], [8]]
    responses = [stems[rng.integers(3)] + rng.integers(10, 14, size=rng.integers(0, 4)).tolist() for _ in range(9)]
    responses = [r for r in responses if r] or [[5]]
    correct = rng.random(len(responses)) < 0.5
    group = synthetic_group(responses, correct.astype(float))
    columns = credit.prefix_tree(group).columns()
    assert list(zip(columns.shared, columns.prefix_success, columns.branch)) == reference_prefix_columns(responses, correct)


def test_prefix_tree_radix_nodes():
    responses = [[1, 2, 3], [1, 2, 4, 5], [1, 2, 4, 6], [7], [1, 2]]
    group = synthetic_group(responses, [1, 0, 1, 0, 1])
    nodes = credit.prefix_tree(group).nodes.set_index("node")
    shape = {tuple(row.token_ids): (row.count, row.correct, tuple(nodes.token_ids[row.parent]) if row.parent >= 0 else None)
             for row in nodes.itertuples()}
    assert shape == {(1, 2): (4, 3, None), (3,): (1, 1, (1, 2)), (4,): (2, 1, (1, 2)), (5,): (1, 0, (4,)),
                     (6,): (1, 1, (4,)), (7,): (1, 0, None)}
    assert nodes.loc[nodes.token_ids.apply(tuple) == (1, 2), "responses"].iloc[0] == [0, 1, 2, 4]


# ----- R2R ------------------------------------------------------------------------------------------------
def test_r2r_divergence_matches_full_forwards_and_hf_greedy():
    small, large = wb.load("tiny:llama", dtype=torch.float64), tiny_model("llama", seed=1)
    large.hf.to(torch.float64)
    group = small.rollouts(PROMPT, n=2, reward=has_e, max_new_tokens=5, seed=0, thr=None, progress=False)
    labels = []
    frame = credit.r2r_divergence(small, large, group, continuation_tokens=4,
                                  judge=lambda context, a, b: labels.append(context) or len(a) - len(b), progress=False)
    expected_rows = []
    for j, ids in enumerate(group.response_ids()):
        sequence = torch.tensor([group.prompt_ids + ids])
        with torch.no_grad():
            a = small.hf(sequence).logits[0, len(group.prompt_ids) - 1:-1].argmax(-1)
            b = large.hf(sequence).logits[0, len(group.prompt_ids) - 1:-1].argmax(-1)
        for k in torch.nonzero(a != b)[:, 0].tolist():
            expected_rows.append(group.rows(j).index[k])
            row = frame.loc[group.rows(j).index[k]]
            assert (row.response, row.position) == (j, k)
            prefix = group.prompt_ids + ids[:k]
            for side, token in (("small", int(a[k])), ("large", int(b[k]))):
                with torch.no_grad():
                    continued = large.hf.generate(torch.tensor([prefix + [token]]), do_sample=False, max_new_tokens=4,
                                                  eos_token_id=None, pad_token_id=0)[0, len(prefix):].tolist()
                assert row[f"{side}_continuation"] == large.tokenizer.decode(continued)
            assert row.label == len(row.small_continuation) - len(row.large_continuation)
    assert frame.index.tolist() == expected_rows and len(labels) == len(expected_rows) > 0
    with pytest.raises(WorkbenchError, match="continue_with"):
        credit.r2r_divergence(small, large, group, continue_with="both")


# ----- views ----------------------------------------------------------------------------------------------
def test_views_show_the_group_data():
    responses = [[40, 41, 42], [40, 43], [44, 45, 46, 47]]
    group = synthetic_group(responses, [1, 0, 0])
    group.table["thr"] = np.linspace(-2, 3, len(group.table))
    critical = credit.CriticalTokens(1, 4, np.array([0, 1]), np.array([2, 0]), 1, True, 1 / 3, group.rows(1).index)
    group.add(critical.columns())
    heat = views.token_heatmap(group, selected=(2, 1))
    z = np.asarray(heat.data[0].customdata, dtype=object)[..., 2]  # the values (the colors: each row's scale)
    for row in group.table.itertuples():
        assert z[row.response][row.position] == row.thr
    assert np.isnan(z[1][3])  # response 1 has two tokens
    marks = heat.data[1]
    assert list(marks.x) == [1]
    (selection,) = heat.layout.shapes  # the selected token's cell, outlined
    assert selection.name == "selection"
    assert (selection.x0, selection.x1, selection.y0, selection.y1) == (0.5, 1.5, 1.5, 2.5)
    curve = views.success_curve(group)
    assert list(curve.data[0].x) == [0, 1] and list(curve.data[0].y) == [0.5, 0.0]
    assert not any(a.text.startswith("no critical token") for a in curve.layout.annotations)  # #1 is critical
    stopped = credit.CriticalTokens(2, 4, np.array([3]), np.array([2]), None, False, 1 / 3, group.rows(2).index)
    group.add(stopped.columns())
    (reason,) = [a.text for a in views.success_curve(group, response=2).layout.annotations
                 if a.text.startswith("no critical token")]
    assert "still correct 50% of the time" in reason  # 2 of 4 completions after the last token
    tree = views.prefix_tree_figure(group).data[0]
    values = dict(zip(tree.ids, tree.values))
    assert values["prompt"] == 3
    for node in set(tree.parents) - {""}:
        assert sum(v for i, p, v in zip(tree.ids, tree.parents, tree.values) if p == node) <= values[node]
    strips = group.show()
    assert strips.html.count('class="tw-strip"') == 3 and "critical token #1" in strips.html
    assert "http" not in strips.html
    assert [view.name for view in panels_for(group, of="group")] == ["credit.thr", "credit.success",
                                                                      "credit.prefix_tree"]
    with pytest.raises(WorkbenchError, match="no 'nope' column"):
        views.token_heatmap(group, signal="nope")


def strip_colors(strip_html: str) -> list[tuple[str, str]]:
    """(value shown on hover, background color) of each token span of a rendered strip."""
    backgrounds = dict(re.findall(r"\.(l\d+)\{background:(#[0-9a-f]{6})", strip_html))
    return [(value, backgrounds[level])
            for level, value in re.findall(r'<span class="t (l\d+)[^"]*"[^>]*data-v="([^"]*)"', strip_html)]


def test_thr_colors_are_clipped_at_the_95th_percentile_of_nonzero_magnitudes():
    """One huge |THR| does not wash out the others: a diverging range is +-L, L the 95th
    percentile of the non-zero |THR| (an observed value); zero stays the neutral midpoint,
    the outlier takes the end color and keeps its exact value in the hover."""
    group = synthetic_group([[40, 41, 42, 43, 44], [45, 46, 47, 48, 49]], [1, 0])
    group.table["thr"] = [0.0, -0.1, 0.2, -0.3, 0.4, -0.5, 0.6, -0.7, 0.8, -500.0]
    # By hand: the n = 9 non-zero magnitudes sorted are 0.1 ... 0.8, 500; rank floor(0.95 x 8) = 7 -> 0.8
    # (the largest |THR|, 500, made the old range).
    assert views.diverging_limit(group.table["thr"].to_numpy()) == 0.8
    scale = views.strip_scale(group, "thr")
    assert (scale["vmin"], scale["vmax"]) == (-0.8, 0.8)
    # Each response on its own scale: response 0's magnitudes 0.1 ... 0.4 (rank floor(0.95 x 3) = 2 -> 0.3),
    # response 1's 0.5 ... 0.8, 500 (rank floor(0.95 x 4) = 3 -> 0.8).
    np.testing.assert_array_equal(views.response_limits(group, "thr"), [0.3, 0.8])
    assert (views.strip_scale(group, "thr", 0)["vmin"], views.strip_scale(group, "thr", 0)["vmax"]) == (-0.3, 0.3)
    heat = views.token_heatmap(group).data[0]
    assert (heat.zmin, heat.zmax, heat.zmid) == (-1, 1, 0)
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float)[1], [-0.5 / 0.8, 0.75, -0.875, 1, -1])  # clipped
    assert heat.customdata[1][4][2] == -500.0 and "%{customdata[2]" in heat.hovertemplate  # the exact value

    neutral, bottom, top = views.DIVERGING[len(views.DIVERGING) // 2], views.DIVERGING[0], views.DIVERGING[-1]
    colors = strip_colors(views.group_strips(group).html)
    assert [value for value, _ in colors] == ["0", "-0.1", "0.2", "-0.3", "0.4", "-0.5", "0.6", "-0.7", "0.8", "-500"]
    assert colors[0][1] == neutral and colors[4][1] == top and colors[8][1] == top and colors[9][1] == bottom
    # An ordinary token is visibly colored: 0.4 of response 1 would be halfway to the top color; 0.6 is 3/4.
    assert colors[6][1] not in (neutral, top, views.DIVERGING[6])

    # Edge cases: every THR zero or missing -> +-1; a single value sets the range.
    assert views.diverging_limit(np.array([0.0, np.nan, -0.0])) == 1.0
    assert views.diverging_limit(np.array([0.0, -3.0])) == 3.0


def test_a_response_with_small_thr_is_not_left_white():
    """Issue 15, item 6: a correct response whose |THR| is a hundred times the wrong one's
    (232.7 against 3.4 on SmolLM2) leaves the wrong response's strip colored: its largest
    |THR| takes an end color, as in its heatmap row."""
    group = synthetic_group([[40, 41, 42], [43, 44, 45]], [1, 0])
    group.table["thr"] = [232.7, 150.0, 90.0, -3.4, 1.2, -2.0]
    colors = strip_colors(views.group_strips(group).html)
    assert colors[3][1] == views.DIVERGING[0] and colors[4][1] != views.DIVERGING[len(views.DIVERGING) // 2]
    heat = views.token_heatmap(group).data[0]
    assert np.asarray(heat.z, dtype=float)[1].min() == -1.0  # the row's own scale reaches its end


def test_the_strips_and_the_heatmap_put_a_token_at_the_same_place_on_the_scale():
    """A non-negative signal (D3S = |A| x H) is colored from zero to its largest value in
    the strips as in the heatmap: its smallest value (above zero) is not the floor color in
    one view and a brighter one in the other."""
    group = synthetic_group([[40, 41, 42], [43, 44]], [1, 0])
    group.table["d3s"] = [0.5, 1.0, 2.0, 3.0, 4.0]
    scale, heat = views.strip_scale(group, "d3s"), views.token_heatmap(group, signal="d3s").data[0]
    for value in group.table["d3s"]:  # the same fraction of the scale in both views
        assert ((value - scale["vmin"]) / (scale["vmax"] - scale["vmin"])
                == pytest.approx((value - heat.zmin) / (heat.zmax - heat.zmin)))
    colors = dict(strip_colors(views.group_strips(group, "d3s").html))
    bottom, top = "#440154", "#fde725"  # viridis at 0 and 1
    assert colors["4"] == top and colors["0.5"] != bottom  # 0.5 is an eighth of the way up from zero
    # A signed signal: ±L in both (the THR test above); nothing at all: 0 to 1 in both.
    group.table["d3s"] = np.nan
    scale, heat = views.strip_scale(group, "d3s"), views.token_heatmap(group, signal="d3s").data[0]
    assert (scale["vmin"], scale["vmax"]) == (heat.zmin, heat.zmax) == (0, 1)
