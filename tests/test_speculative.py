"""Speculative sampling against independent computations: the target's own distribution of the
first tokens enumerated with full forwards (chi-square), plain greedy decoding, and every traced
probability recomputed from full forwards of both models without a cache."""
import copy
import json

import numpy as np
import pytest
import torch

import workbench.samplers as S
from sampling_reference import chi_square_pvalue
from workbench.decoding import speculative
from workbench.decoding.engine import decode, seeded_generator
from workbench.errors import WorkbenchError
from workbench.model.handle import Model
from workbench.model.layer_skip import keep_first_layers
from workbench.model.tiny import tiny_model
from workbench.results.run import Run

PROMPT = "The capital of"


def first_layer_draft(model: Model) -> Model:
    """The target's first decoder layer with its final norm and head: a draft that shares its
    vocabulary, close to it but not equal."""
    return Model(keep_first_layers(copy.deepcopy(model.hf), 1), model.tokenizer, name=f"{model.name} first layer")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pair():
    target = tiny_model("llama")
    with torch.no_grad():  # sharpen the random model's near-uniform predictions, so p and q differ visibly
        target.hf.lm_head.weight.mul_(12.0)
    return target, first_layer_draft(target)


def full_distribution(model: Model, ids, sampler) -> torch.Tensor:
    """The sampler's distribution [V] after `ids`, from a full forward without a cache."""
    with torch.no_grad():
        logits = model.hf(torch.tensor([list(ids)])).logits[0, -1].float()
    return sampler.filter(logits)[1].double()


def sequence_probabilities(model: Model, prompt_ids, sampler, length: int) -> dict[tuple, float]:
    """P(first `length` tokens) under plain sampling from the target, by enumeration."""
    out = {(): 1.0}
    for _ in range(length):
        grown = {}
        for prefix, mass in out.items():
            p = full_distribution(model, list(prompt_ids) + list(prefix), sampler)
            for token in p.nonzero()[:, 0].tolist():
                grown[prefix + (token,)] = mass * p[token].item()
        out = grown
    return out


def speculative_counts(target, draft, prompt_ids, sampler, *, draws: int, gamma: int, length: int) -> dict:
    generator = seeded_generator("cpu", 7)
    counts: dict[tuple, int] = {}
    for _ in range(draws):
        decoded, _ = speculative.speculative_decode(target, draft, prompt_ids, sampler=sampler, gamma=gamma,
                                                    max_new_tokens=length, generator=generator, progress=False)
        key = tuple(decoded.ids[0])
        counts[key] = counts.get(key, 0) + 1
    return counts


def pvalue(counts: dict, expected: dict, draws: int) -> float:
    assert set(counts) <= set(expected), "a sequence the target's sampler can never produce"
    cells = sorted(expected)
    return chi_square_pvalue(np.array([counts.get(c, 0) for c in cells], float),
                             np.array([expected[c] * draws for c in cells]))


DRAWS = 600
SAMPLER = S.TopK(3, temperature=1.0)
LENGTH = 2  # two tokens: 9 sequences under top-3


def test_output_distribution_equals_plain_sampling(pair):
    """The first two tokens drawn by speculative sampling (the first step drafts one token:
    accepted it is followed by the bonus token; rejected, by the residual draw and a second
    step) against the target's own probability of each sequence, enumerated with full
    forwards. The draft's own distribution is far from it (total variation > 0.25), so the
    draft's tokens passing through unverified would fail (next test)."""
    target, draft = pair
    prompt_ids = target.tokenizer(PROMPT)["input_ids"]
    expected = sequence_probabilities(target, prompt_ids, SAMPLER, LENGTH)
    draft_expected = sequence_probabilities(draft, prompt_ids, SAMPLER, LENGTH)
    assert sum(abs(expected.get(k, 0) - draft_expected.get(k, 0)) for k in expected | draft_expected) / 2 > 0.25
    counts = speculative_counts(target, draft, prompt_ids, SAMPLER, draws=DRAWS, gamma=2, length=LENGTH)
    assert pvalue(counts, expected, DRAWS) > 1e-3


def test_accepting_every_draft_fails_the_test(pair, monkeypatch):
    """The same test catches a broken accept rule: accepting every draft yields the draft's
    distribution (with the target's bonus token), not the target's."""
    target, draft = pair
    monkeypatch.setattr(speculative, "acceptance_probability", lambda p, q: torch.ones_like(p))
    prompt_ids = target.tokenizer(PROMPT)["input_ids"]
    expected = sequence_probabilities(target, prompt_ids, SAMPLER, LENGTH)
    counts = speculative_counts(target, draft, prompt_ids, SAMPLER, draws=DRAWS // 2, gamma=2, length=LENGTH)
    assert set(counts) > set() and (not set(counts) <= set(expected) or pvalue(counts, expected, DRAWS // 2) < 1e-6)


def test_greedy_equals_plain_greedy(pair):
    """Under the greedy sampler p and q are one-hot: speculative decoding must give exactly the
    target's greedy continuation."""
    target, draft = pair
    prompt_ids = target.tokenizer(PROMPT)["input_ids"]
    plain = decode(target, [prompt_ids], sampler=S.Greedy(), max_new_tokens=15, generator=seeded_generator("cpu", 0),
                   progress=False)
    fast, trace = speculative.speculative_decode(target, draft, prompt_ids, sampler=S.Greedy(), gamma=4,
                                                 max_new_tokens=15, generator=seeded_generator("cpu", 0), progress=False)
    assert fast.ids[0] == plain.ids[0][:len(fast.ids[0])] and fast.stop[0] in ("length", "eos")
    assert all(a in (0.0, 1.0) for step in trace for a in step.accept_prob)


def test_a_stop_string_inside_a_step_ends_it_there(pair):
    """A stop string that appears before the last token of a step (the draft is the target, so
    every draft is accepted and a step makes gamma + 1 tokens) ends the text there, as plain
    greedy decoding with the same stop does; the final hidden state is the one after that token
    (it crashed: the caches kept tokens that were never emitted)."""
    target, _ = pair
    prompt_ids = target.tokenizer(PROMPT)["input_ids"]
    free = decode(target, [prompt_ids], sampler=S.Greedy(), max_new_tokens=10, generator=seeded_generator("cpu", 0),
                  progress=False)
    stop = target.tokenizer.decode(free.ids[0][:2])[-2:]  # ends inside the first step's 5 tokens
    plain = decode(target, [prompt_ids], sampler=S.Greedy(), max_new_tokens=10, stops=[stop], final_hidden=True,
                   generator=seeded_generator("cpu", 0), progress=False)
    fast, _ = speculative.speculative_decode(target, target, prompt_ids, sampler=S.Greedy(), gamma=4, max_new_tokens=10,
                                             stops=[stop], final_hidden=True, generator=seeded_generator("cpu", 0),
                                             progress=False)
    assert fast.stop[0] == plain.stop[0] == "stop" and fast.ids[0] == plain.ids[0] and len(fast.ids[0]) < 5
    torch.testing.assert_close(fast.final_hidden[0], plain.final_hidden[0], rtol=1e-4, atol=1e-4)


def test_trace_matches_full_forwards(pair):
    """Every drafted token's q and p, acceptance probability and alpha recomputed from full
    forwards of both models (no cache); accepted drafts are the emitted tokens; a residual
    token has p > q; the per-token table matches the target's full-forward log-softmax."""
    target, draft = pair
    sampler = S.TopP(0.9, temperature=0.8)
    run = target.generate(PROMPT, sampler=sampler, max_new_tokens=14, seed=3, draft=draft, gamma=3, progress=False)
    ids = run.table.token_id.tolist()
    n_prompt = int((~run.table.generated).sum())
    done = n_prompt
    arrays = run.arrays
    assert run.table.spec_step.iloc[n_prompt:].tolist() == sorted(run.table.spec_step.iloc[n_prompt:].tolist())
    for s, accepted in enumerate(arrays["spec_accepted"].tolist()):
        drafted = [t for t in arrays["spec_drafted"][s].tolist() if t >= 0]
        for i, token in enumerate(drafted):
            context = ids[:done] + drafted[:i]
            p, q = full_distribution(target, context, sampler), full_distribution(draft, context, sampler)
            assert arrays["spec_draft_prob"][s, i] == pytest.approx(q[token].item(), rel=1e-4, abs=1e-6)
            assert arrays["spec_target_prob"][s, i] == pytest.approx(p[token].item(), rel=1e-4, abs=1e-6)
            assert arrays["spec_accept_prob"][s, i] == pytest.approx(min(1.0, p[token].item() / q[token].item()),
                                                                     rel=1e-4, abs=1e-6)
            assert arrays["spec_alpha"][s, i] == pytest.approx(torch.minimum(p, q).sum().item(), rel=1e-4)
        made = drafted[:accepted] + [int(arrays["spec_token"][s])]
        assert ids[done:done + len(made)] == made[:len(ids) - done]
        assert bool(arrays["spec_residual"][s]) == (accepted < len(drafted))
        if arrays["spec_residual"][s]:
            context = ids[:done] + drafted[:accepted]
            p, q = full_distribution(target, context, sampler), full_distribution(draft, context, sampler)
            assert p[made[-1]] > q[made[-1]]
        done += len(made)
    assert done >= len(ids)
    with torch.no_grad():
        logp = torch.log_softmax(target.hf(torch.tensor([ids])).logits[0].double(), -1)
    for row in run.table[run.table.generated].itertuples():
        assert row.surprisal == pytest.approx(-logp[row.position - 1, row.token_id].item(), rel=1e-4, abs=1e-4)
        kept, q = sampler.filter(logp[row.position - 1].float())
        assert row.kept == int(kept.sum()) and row.sample_prob == pytest.approx(q[row.token_id].item(), rel=1e-4)
    info = run.meta["speculative"]
    assert info["steps"] == len(arrays["spec_accepted"]) and info["gamma"] == 3
    assert info["tokens_per_step"] == pytest.approx(np.mean(arrays["spec_accepted"] + 1))


def test_summary_and_expected_length():
    """DESIGN.md's vector: p = (.5, .3, .2), q = (.2, .3, .5): alpha = .7; gamma 4 -> 2.7731; and
    the exact expectation given the drafts, by hand."""
    p = torch.tensor([[.5, .3, .2], [.5, .3, .2]], dtype=torch.float64)
    q = torch.tensor([[.2, .3, .5]], dtype=torch.float64)
    step = speculative._verify([2], p, q, seeded_generator("cpu", 0))
    assert step.alpha == pytest.approx([0.7]) and step.accept_prob == pytest.approx([0.4])
    assert speculative.expected_tokens_per_step(0.7, 4) == pytest.approx(2.7731, abs=1e-4)
    assert speculative.expected_tokens_per_step(1.0, 4) == 5.0
    steps = [speculative.DraftStep([1, 2], [.5, .5], [.5, .25], [1.0, .5], [.8, .6], 2, 0, False),
             speculative.DraftStep([1, 2], [.5, .5], [.25, .5], [.5, 1.0], [.6, .8], 0, 0, True)]
    info = speculative.summary(steps, 2)
    assert info["tokens_per_step"] == 2.0 and info["acceptance_rate"] == pytest.approx(2 / 3)
    assert info["expected_tokens_given_drafts"] == pytest.approx(((1 + 1 + .5) + (1 + .5 + .5)) / 2)
    assert info["mean_alpha"] == pytest.approx(0.7)
    assert info["expected_tokens_analytic"] == pytest.approx(1 + .7 + .49)


def test_residual_draw_is_the_normalized_difference():
    """With one draft position rejected for sure (p(d) = 0), the step's token follows
    norm(max(0, p - q)) (chi-square over many draws)."""
    p = torch.tensor([[.5, .3, .2, 0.0], [.25, .25, .25, .25]], dtype=torch.float64)
    q = torch.tensor([[.1, .2, .3, .4]], dtype=torch.float64)
    generator = seeded_generator("cpu", 1)
    tokens = [speculative._verify([3], p, q, generator).token for _ in range(3000)]
    residual = (p[0] - q[0]).clamp_min(0) / (p[0] - q[0]).clamp_min(0).sum()
    counts = np.bincount(tokens, minlength=4).astype(float)
    assert counts[2] == counts[3] == 0
    assert chi_square_pvalue(counts[:2], residual[:2].numpy() * 3000) > 1e-3


def test_identical_draft_is_always_accepted(capsys):
    """A draft equal to the target has p = q: every draft is accepted (alpha 1), gamma + 1 tokens a
    full step, through the command line (in this process: the flags, not the start-up, are tested)."""
    from workbench.cli.main import main

    code = main(["generate", "Hello there", "--model", "tiny:llama", "--draft", "tiny:llama", "--gamma", "3",
                 "--max-new-tokens", "9", "--seed", "2", "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    run = json.loads(captured.out)
    info = run["meta"]["speculative"]
    assert info["acceptance_rate"] == 1.0 and info["mean_alpha"] == pytest.approx(1.0)
    assert info["steps"] <= 3 and info["drafted"] == info["accepted"]
    assert main(["generate", "Hello", "--model", "tiny:llama", "--draft", "tiny:llama", "--gamma", "0"]) == 2
    assert "--gamma must be a positive integer" in capsys.readouterr().err


def test_rejects_a_draft_with_another_vocabulary(pair):
    target, _ = pair
    other = copy.deepcopy(target.hf)
    other.resize_token_embeddings(target.vocab_size + 8)
    with pytest.raises(WorkbenchError, match="does not share"):
        target.generate(PROMPT, draft=Model(other, target.tokenizer, name="other"), progress=False)
    with pytest.raises(WorkbenchError, match="gamma"):
        target.generate(PROMPT, draft=target, gamma=0, progress=False)


def test_a_damaged_draft_is_one_clear_line_naming_its_weight(pair):
    """NaN in the draft's head (the target is whole): its proposals cannot be sampled; the error
    names the draft and its damaged weight instead of torch.multinomial's message. Greedy too,
    where argmax would have picked the NaN silently."""
    target, draft = pair
    damaged = copy.deepcopy(draft.hf)
    with torch.no_grad():
        damaged.get_output_embeddings().weight.fill_(float("nan"))
    broken = Model(damaged, draft.tokenizer, name="damaged")
    for sampler in (None, "greedy"):
        with pytest.raises(WorkbenchError, match="the draft damaged gave NaN or infinite values.*weights are damaged"):
            target.generate(PROMPT, draft=broken, sampler=sampler, max_new_tokens=3, progress=False)


def test_trace_survives_save_and_load(pair, tmp_path):
    target, draft = pair
    run = target.generate(PROMPT, max_new_tokens=8, seed=0, draft=draft, gamma=2, progress=False)
    run.save(tmp_path / "run")
    back = Run.load(tmp_path / "run")
    assert back.equals(run) and back.meta["speculative"] == run.meta["speculative"]
    for name in ("spec_drafted", "spec_accept_prob", "spec_residual"):
        np.testing.assert_array_equal(back.arrays[name], run.arrays[name])


def test_first_layers_draft_is_the_logit_lens(pair):
    """keep_first_layers(k): the draft's logits equal the full model's hidden state after layer k
    put through its final norm and head."""
    target, draft = pair
    ids = torch.tensor([target.tokenizer(PROMPT)["input_ids"]])
    with torch.no_grad():
        hidden = target.hf(ids, output_hidden_states=True).hidden_states[1]
        lens = target.hf.lm_head(target.hf.model.norm(hidden))
        torch.testing.assert_close(draft.hf(ids).logits, lens)
    assert draft.n_layers == 1 and target.n_layers == 2
    with pytest.raises(WorkbenchError, match="1 to 2 layers"):
        keep_first_layers(copy.deepcopy(target.hf), 3)




def test_trace_view_marks_each_outcome(pair):
    """The trace view draws every drafted token once, at the position it was drafted for:
    accepted drafts at the positions of the tokens they became, one rejected draft per residual
    step, and each step's own draw at the position of its token."""
    from workbench.widgets.panels import load_builtin_panels, panels_for

    target, draft = pair
    run = target.generate(PROMPT, sampler=S.Temperature(1.0), max_new_tokens=12, seed=5, draft=draft, gamma=3,
                          progress=False)
    load_builtin_panels()
    panel = next(p for p in panels_for(run) if p.name == "sampling.speculative")
    fig = panel.render(run, selected=int(run.table.position.iloc[-1]))
    traces = {trace.name: trace for trace in fig.data}
    arrays = run.arrays
    accepted = traces.get("accepted draft")
    generated = run.table[run.table.generated]
    assert len(accepted.x if accepted else ()) == int(arrays["spec_accepted"].sum())
    drafted_at = dict(zip(generated.position, generated.drafted))
    assert all(drafted_at[x] for x in (accepted.x if accepted else ()))
    residual = traces.get("drawn from the residual")
    assert len(residual.x if residual else ()) == int(arrays["spec_residual"].sum())
    assert len(traces.get("rejected draft").x if "rejected draft" in traces else ()) == int(arrays["spec_residual"].sum())
    token_at = dict(zip(generated.position, generated.token_id))
    own = [x for name in ("drawn from the residual", "bonus token from the target") if name in traces
           for x in traces[name].x]
    assert sorted(token_at[x] for x in own) == sorted(arrays["spec_token"].tolist())
    assert fig.layout.meta["workbench"]["position_axis"] == "x" and fig.layout.shapes[0].name == "selection"
    assert f"{run.meta['speculative']['tokens_per_step']:.2f} tokens per step" in fig.layout.title.text


def test_embedded_draft_is_smollm2_first_layers(smol):
    """workbench:smollm2-first-k: the embedded model's first DRAFT_LAYERS layers with its norm and
    head, i.e. its logit lens at that layer; and it drafts for it."""
    import workbench as wb
    from workbench.model.embedded import DRAFT_LAYERS, DRAFT_MODEL

    draft = wb.load(DRAFT_MODEL)
    assert draft.n_layers == DRAFT_LAYERS < smol.n_layers
    ids = torch.tensor([smol.tokenizer("The capital of France is")["input_ids"]])
    with torch.no_grad():
        hidden = smol.hf(ids, output_hidden_states=True).hidden_states[DRAFT_LAYERS]
        torch.testing.assert_close(draft.hf(ids).logits, smol.hf.lm_head(smol.hf.model.norm(hidden)))
    run = smol.generate("The capital of France is", max_new_tokens=6, seed=0, draft=draft, progress=False)
    assert run.meta["speculative"]["draft"] == DRAFT_MODEL and run.meta["n_generated"] >= 1
