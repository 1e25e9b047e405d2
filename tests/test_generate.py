"""generate() against independent computations: HF's own greedy decoding, a full forward
without a cache for every step's statistics, and the sampler's kept set recomputed from
those logits."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import workbench.samplers as S
from workbench.errors import WorkbenchError
from workbench.model.tiny import tiny_model

FAMILIES = ["llama", "gpt2", "qwen2", "mixtral"]


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_matches_hf_generate(family):
    model = tiny_model(family)
    run = model.generate("The capital of", sampler=S.Greedy(), max_new_tokens=12, progress=False)
    prompt_ids = run.table.token_id[~run.table.generated].tolist()
    with torch.no_grad():
        expected = model.hf.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=12,
                                     eos_token_id=None, pad_token_id=0)[0, len(prompt_ids):].tolist()
    assert run.table.token_id[run.table.generated].tolist() == expected[: run.meta["n_generated"]]


@pytest.mark.parametrize("family", FAMILIES)
def test_steps_match_a_full_forward_without_cache(family):
    model = tiny_model(family)
    sampler = S.TopP(0.8, temperature=0.9)
    run = model.generate("Once upon a time", sampler=sampler, max_new_tokens=10, seed=1, progress=False)
    ids = run.table.token_id.tolist()
    with torch.no_grad():
        logits = model.hf(torch.tensor([ids])).logits[0].double()  # [T, V], no cache
    logp = torch.log_softmax(logits, -1)
    gen = run.table[run.table.generated]
    for row in gen.itertuples():
        previous = logp[row.position - 1]
        assert row.entropy == pytest.approx(-(previous.exp() * previous).sum().item(), rel=1e-4, abs=1e-4)
        assert row.surprisal == pytest.approx(-previous[row.token_id].item(), rel=1e-4, abs=1e-4)
        kept, q = sampler.filter(logits[row.position - 1].float())
        assert row.kept == int(kept.sum()) and kept[row.token_id]
        assert row.sample_prob == pytest.approx(q[row.token_id].item(), rel=1e-4)
        assert row.temperature == pytest.approx(0.9)
    assert "".join(run.text[s:e] for s, e in zip(run.table.start, run.table.end)) == run.text


def test_seed_reproducible_and_varies():
    model = tiny_model("llama")
    a = model.generate("Hello", sampler=S.Temperature(1.0), max_new_tokens=20, seed=4, progress=False)
    b = model.generate("Hello", sampler=S.Temperature(1.0), max_new_tokens=20, seed=4, progress=False)
    c = model.generate("Hello", sampler=S.Temperature(1.0), max_new_tokens=20, seed=5, progress=False)
    assert a.equals(b)
    assert a.table.token_id.tolist() != c.table.token_id.tolist()


def test_sampler_spec_strings():
    model = tiny_model("llama")
    by_spec = model.generate("Hi", sampler="top-p:0.9", max_new_tokens=8, seed=1, progress=False)
    by_object = model.generate("Hi", sampler=S.TopP(0.9), max_new_tokens=8, seed=1, progress=False)
    assert by_spec.equals(by_object) and by_spec.meta["sampler"] == "top-p 0.9, temperature 1"
    with pytest.raises(WorkbenchError, match="unknown sampler 'nucleus'; choose from greedy"):
        model.generate("Hi", sampler="nucleus:0.9", max_new_tokens=2)
    with pytest.raises(WorkbenchError, match="sampler must be a workbench.samplers sampler .* or a spec string"):
        model.generate("Hi", sampler=0.9, max_new_tokens=2)
    # a value at which the rule is off would sample without it, silently: refused, as the CLI's flags are
    with pytest.raises(WorkbenchError, match=r"sampler top-k's k must be at least 1, a whole number, got 0"):
        model.generate("Hi", sampler="top-k:0", max_new_tokens=2)
    with pytest.raises(WorkbenchError, match=r"sampler min-p's m must be greater than 0 and at most 1, got 0$"):
        model.generate("Hi", sampler="min-p:0", max_new_tokens=2)
    with pytest.raises(WorkbenchError, match=r"greater than 0, got 0 \(for the most likely token, use 'greedy'\)"):
        model.generate("Hi", sampler="temperature:0", max_new_tokens=2)


def test_sampler_labels_read_as_the_dashboard_names_them():
    """The label in meta["sampler"] (the sampling chart's title, the dashboard's status):
    the rules in force, by the names the CLI and dashboard give the samplers, then the
    temperature."""
    labels = {S.Greedy(): "greedy", S.Sampler(): "temperature 1", S.Gumbel(0.5): "temperature 0.5",
              S.TopP(0.9, temperature=0.7): "top-p 0.9, temperature 0.7", S.TopK(20, 1.5): "top-k 20, temperature 1.5",
              S.MinP(0.1) + S.TopH(0.4): "min-p 0.1, top-h 0.4, temperature 1",
              S.TopK(50) + S.TopP(0.95) + S.Temperature(0.8): "top-k 50, top-p 0.95, temperature 0.8",
              S.Adaptive([0.5, 1.0, 2.0], tau=0.3, temperature=0.9): "adaptive temperature 0.9 (HAPO, tau 0.3)"}
    for sampler, label in labels.items():
        assert sampler.describe() == label


SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # its chat template's default


@pytest.mark.slow
def test_the_default_system_prompt_of_the_chat_template_is_recorded(smol):
    """SmolLM2's chat template writes its own system prompt before messages without one; the
    run's meta names it (and it is in the text the model saw). A system message replaces it."""
    asked = [{"role": "user", "content": "Say hi"}]
    run = smol.generate(messages=asked, max_new_tokens=2, seed=0, progress=False)
    assert run.meta["template_system_prompt"] == SMOL_SYSTEM and SMOL_SYSTEM in run.text
    own = smol.generate(messages=[{"role": "system", "content": "Be brief."}, *asked], max_new_tokens=2, seed=0,
                        progress=False)
    assert own.meta["template_system_prompt"] is None and SMOL_SYSTEM not in own.text
    plain = tiny_model("qwen2").generate(messages=asked, max_new_tokens=2, seed=0, progress=False)
    assert plain.meta["template_system_prompt"] is None and "system" not in plain.text  # ChatML adds none
    assert "template_system_prompt" not in smol.generate("Say hi", max_new_tokens=2, progress=False).meta
    analyzed = smol.analyze(messages=[*asked, {"role": "assistant", "content": "Hi!"}])  # analyze records it too
    assert analyzed.meta["template_system_prompt"] == SMOL_SYSTEM and SMOL_SYSTEM in analyzed.text
    assert "template_system_prompt" not in smol.analyze("Say hi").meta


def test_stop_strings_eos_and_chat_roles():
    model = tiny_model("qwen2")
    run = model.generate(messages=[{"role": "user", "content": "Say hi"}], sampler=S.Temperature(1.0),
                         max_new_tokens=40, seed=0, progress=False)
    assert run.text.endswith(run.text[run.table.start[run.table.generated].iloc[0]:])
    assert set(run.table.role[run.table.generated]) == {"response"}
    assert "<|im_start|>assistant\n" in run.text
    first = run.table.token[run.table.generated].iloc[0]
    stopped = model.generate(messages=[{"role": "user", "content": "Say hi"}], sampler=S.Temperature(1.0),
                             max_new_tokens=40, seed=0, stop=first, progress=False)
    assert stopped.meta["stop_reason"] == "stop" and stopped.meta["n_generated"] == 1


def test_errors():
    model = tiny_model("llama")  # context 512
    with pytest.raises(WorkbenchError, match="exceed tiny:llama's context of 512"):
        model.generate("hi", max_new_tokens=600)
    with pytest.raises(WorkbenchError, match="max_new_tokens"):
        model.generate("hi", max_new_tokens=0)
    with pytest.raises(WorkbenchError, match="empty"):
        model.generate("", max_new_tokens=3)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench", "generate", *args], capture_output=True, text=True, timeout=300)


def test_cli_json_is_reproducible_and_compares():
    args = ["Once upon a time", "--model", "tiny:gpt2", "--sampler", "top-h", "--alpha", "0.4",
            "--max-new-tokens", "8", "--seed", "7", "--format", "json"]
    first, second = cli(*args), cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    rows = [t for t in json.loads(first.stdout)["tokens"] if t["generated"]]
    assert len(rows) == 8 and all({"entropy", "kept", "rank"} <= r.keys() for r in rows)
    compare = cli("Once", "--model", "tiny:gpt2", "--compare", "top-p:0.9,min-p:0.1,top-h:0.4",
                  "--max-new-tokens", "4", "--seed", "1", "--format", "json")
    assert [r["sampler"] for r in json.loads(compare.stdout)["runs"]] == ["top-p:0.9", "min-p:0.1", "top-h:0.4"]
    bad = cli("x", "--model", "tiny:gpt2", "--compare", "nucleus:0.9")
    assert bad.returncode == 2 and "unknown sampler 'nucleus'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_embedded_acceptance(smol):
    run = smol.generate("Once upon a time", sampler=S.TopH(0.4), max_new_tokens=16, seed=7, progress=False)
    gen = run.table[run.table.generated]
    assert len(gen) == 16 and (gen.kept >= 1).all() and np.isfinite(gen.entropy.to_numpy(float)).all()
    assert (gen.kept_entropy <= gen.entropy + 1e-6).all()  # truncation never adds entropy here
