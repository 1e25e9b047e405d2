"""Group rollouts against independent computations: each batched greedy row equals the
unbatched `generate` (and HF's own greedy decoding for left-padded prefixes), every step's
recorded values equal a full forward without a cache, rewards and GRPO advantages equal
their formulas, and the CLI prints what the issue asks for."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
import workbench.samplers as S
from workbench import rewards
from workbench.forward import memory
from workbench.cli.main import main
from workbench.errors import MemoryEstimateExceeded, WorkbenchError
from workbench.results.group import Group, grpo_advantages
from workbench.decoding.engine import decode

PROMPT = "What is seven times eight?"


def has_e(text: str) -> float:
    return float("e" in text)


@pytest.fixture(scope="module")
def llama64():
    return wb.load("tiny:llama", dtype=torch.float64)


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "mixtral"])
def test_batched_greedy_rows_equal_unbatched_generate(family):
    model = wb.load(f"tiny:{family}", dtype=torch.float64)
    if family == "mixtral":
        model.hf.set_experts_implementation("eager")  # grouped-mm experts have no float64 kernel
    group = model.rollouts(PROMPT, n=3, reward=has_e, sampler=S.Greedy(), max_new_tokens=10, thr=None, progress=False)
    run = model.generate(messages=[{"role": "user", "content": PROMPT}], sampler=S.Greedy(), max_new_tokens=10,
                         progress=False)
    expected = run.table.token_id[run.table.generated].tolist()
    assert run.table.token_id[~run.table.generated].tolist() == group.prompt_ids
    assert group.response_ids() == [expected] * 3
    assert group.prompt == run.text[:len(group.prompt)]


@pytest.mark.parametrize("family", ["llama", "gpt2"])  # gpt2: absolute positions, so position ids matter
def test_left_padded_prefixes_equal_hf_greedy_one_by_one(family):
    model = wb.load(f"tiny:{family}", dtype=torch.float64)
    tokenizer = model.tokenizer
    prefixes = [tokenizer(text)["input_ids"] for text in ("The", "The quick brown fox", "Two plus two is four, and")]
    drawn = decode(model, prefixes, n=2, sampler=S.Greedy(), max_new_tokens=8,
                   generator=torch.Generator().manual_seed(0), progress=False)
    assert len(drawn.ids) == 6
    for u, prefix in enumerate(prefixes):
        with torch.no_grad():
            expected = model.hf.generate(torch.tensor([prefix]), do_sample=False, max_new_tokens=8,
                                         eos_token_id=None, pad_token_id=0)[0, len(prefix):].tolist()
        for row in (2 * u, 2 * u + 1):
            assert drawn.ids[row] == expected[:len(drawn.ids[row])]
            assert len(drawn.ids[row]) == 8 or drawn.stop[row] == "eos"


def full_forward_logits(model, group, response):
    ids = group.prompt_ids + group.response_ids(response)
    with torch.no_grad():
        logits = model.hf(torch.tensor([ids])).logits[0].double()  # [T, V], no cache, no batch
    return logits[len(group.prompt_ids) - 1:len(ids) - 1]  # the rows that predict the response


def test_sampled_steps_match_a_full_forward(llama64):
    sampler = S.TopP(0.8, temperature=0.9)
    group = llama64.rollouts(PROMPT, n=4, reward=has_e, sampler=sampler, max_new_tokens=12, seed=3, thr=None,
                             progress=False)
    for response in range(4):
        logits = full_forward_logits(llama64, group, response)
        rows = group.rows(response)
        logp = torch.log_softmax(logits, -1)
        targets = torch.tensor(rows.token_id.tolist())
        np.testing.assert_allclose(rows.logprob, logp.gather(-1, targets[:, None])[:, 0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rows.entropy, -(logp.exp() * logp).sum(-1), rtol=1e-5, atol=1e-6)
        assert rows["rank"].tolist() == (logits > logits.gather(-1, targets[:, None])).sum(-1).tolist()
        kept, q = sampler.filter(logits.float())
        assert rows.kept.tolist() == kept.sum(-1).tolist()
        np.testing.assert_allclose(rows.sample_prob, q.gather(-1, targets[:, None])[:, 0], rtol=1e-4)
        text = group.responses[response]
        assert "".join(text[s:e] for s, e in zip(rows.start, rows.end)) == text


def test_seed_reproducible_and_varies(llama64):
    args = dict(n=4, reward=has_e, sampler=S.Temperature(1.0), max_new_tokens=10, thr=None, progress=False)
    a, b = llama64.rollouts(PROMPT, seed=5, **args), llama64.rollouts(PROMPT, seed=5, **args)
    c = llama64.rollouts(PROMPT, seed=6, **args)
    assert a.equals(b)
    assert a.response_ids() != c.response_ids()
    assert len(set(map(tuple, a.response_ids()))) > 1  # the rows of one group differ from each other


def test_rows_stop_at_their_own_end_of_sequence(llama64, monkeypatch):
    free = llama64.rollouts(PROMPT, n=6, reward=has_e, sampler=S.Temperature(1.0), max_new_tokens=12, seed=1,
                            thr=None, progress=False)
    # make a token that some rows draw early, but not all, the end of sequence
    firsts = pd.Series([ids[2] for ids in free.response_ids()])
    stop = int(firsts.value_counts().index[0])
    monkeypatch.setattr(llama64.hf.generation_config, "eos_token_id", stop)
    group = llama64.rollouts(PROMPT, n=6, reward=has_e, sampler=S.Temperature(1.0), max_new_tokens=12, seed=1,
                             thr=None, progress=False)
    assert group.response_ids() != free.response_ids() or stop in free.response_ids()[0]
    stopped = 0
    for i, ids in enumerate(group.response_ids()):
        if stop in ids:
            stopped += 1
            assert ids.index(stop) == len(ids) - 1 and group.meta["stop_reasons"][i] == "eos"
            last = group.rows(i).iloc[-1]
            assert last.start == last.end == len(group.responses[i])  # the end token is zero-width
            assert llama64.tokenizer.decode(ids[:-1]) == group.responses[i]
        else:
            assert len(ids) == 12 and group.meta["stop_reasons"][i] == "length"
    assert stopped >= 1


def test_rewards_and_advantages(llama64):
    group = llama64.rollouts(PROMPT, n=6, reward=has_e, max_new_tokens=10, seed=0, thr=None, progress=False)
    r = np.array([has_e(t) for t in group.responses])
    np.testing.assert_array_equal(group.rewards, r)
    np.testing.assert_allclose(group.advantages, (r - r.mean()) / (r.std() + 1e-4))
    assert abs(group.advantages.sum()) < 1e-12
    table = group.table
    np.testing.assert_array_equal(table.advantage, group.advantages[table.response])
    np.testing.assert_allclose(table.d3s, np.abs(table.advantage) * table.entropy)
    assert list(table.columns[:8]) == ["response", "position", "token_id", "token", "start", "end", "reward", "advantage"]


def test_grpo_advantages_formula():
    np.testing.assert_allclose(grpo_advantages([1, 0, 0, 1]), [.9998, -.9998, -.9998, .9998], atol=1e-4)
    np.testing.assert_allclose(grpo_advantages([0, 0, 1]), [-.70696, -.70696, 1.41392], atol=1e-4)  # std = sqrt(2)/3
    assert (grpo_advantages([0.5, 0.5]) == 0).all()
    with pytest.raises(WorkbenchError, match="non-empty"):
        grpo_advantages([])


def test_rewards_module():
    assert rewards.final_answer("7 times 8 is 56.") == "56"
    assert rewards.final_answer("The answer is 1,024 apples") == "1,024"
    assert rewards.final_answer("so \\boxed{42} and 7") == "42"
    assert rewards.final_answer("work...\n#### 18") == "18"
    assert rewards.final_answer("no digits\nParis.") == "Paris."
    exact = rewards.exact_answer("56")
    assert [exact(t) for t in ("It is 56.", "56.0", "The answer is 56, not 57", "57", "fifty-six")] == [1, 1, 1, 0, 0]
    assert [rewards.exact_answer("Paris")(t) for t in ("The answer is paris.", "Paris", "I think it is Paris.")] == [1, 1, 0]
    assert rewards.exact_answer(1024)("Answer: 1,024") == 1.0
    near = rewards.numeric_answer(3.14, tol=0.01)
    assert [near(t) for t in ("about 3.141", "3.2", "pi")] == [1, 0, 0]
    assert rewards.numeric_answer(0.75)("3/4") == 1.0
    pattern = rewards.regex(r"\b56\b")
    assert [pattern(t) for t in ("x 56 y", "560")] == [1, 0]
    assert rewards.as_reward(lambda t: len(t) > 3)("abcd") == 1.0
    assert rewards.as_reward("8")("7+1 = 8") == 1.0
    with pytest.raises(WorkbenchError, match="invalid regex"):
        rewards.regex("(")
    with pytest.raises(WorkbenchError, match="must return a number"):
        rewards.as_reward(lambda t: "yes")("x")
    problems = rewards.arithmetic_problems()
    assert len(problems) >= 30 and len({p.question for p in problems}) == len(problems)
    assert all(rewards.parse_number(p.answer) is not None for p in problems)
    seven_eights = next(p for p in problems if p.question.startswith("What is 7 times 8"))
    assert seven_eights.answer == "56" and seven_eights.reward()("The answer is 56.") == 1.0


@pytest.mark.parametrize("text, answer", [
    ("The answer is 7 * 8 = 56.", "56"),
    ("answer = 2 + 3 = 5", "5"),
    ("Sure! I'll give you the answer: 7 × 8 = 56\n7 × 8 =", "56"),  # the embedded model's words; × is no number
    ("The answer is: fifty-six", "fifty-six"),
    ("The answer is 56, not 57", "56"),  # the first clause that holds a number
    ("The answer is 7 * 8, which is 56.", "56"),  # "7 * 8" states no result: its last number is an operand
    ("The answer is 7 times 8; that is 56", "56"),
    ("The answer is 7 x 8, so 56", "56"),
    ("The answer is, of course, 56.", "56"),
    ("The answer is Paris. It is big.", "Paris"),  # the segment ends with its sentence
    ("The answer is 3.5.", "3.5"),
    ("The answer is\n56", "56"),
    ("7 * 8 = 56, so the answer is", "56"),  # cut off at the marker: the last number
    ("The answer is 5. No wait, the answer is 6.", "6"),  # the last marker, on the same line
])
def test_final_answer_is_the_last_number_of_the_marked_segment(text, answer):
    assert rewards.final_answer(text) == answer


def test_exact_answer_reads_the_marked_segment():
    assert [rewards.exact_answer("56")(t) for t in ("The answer is 7 * 8 = 56.", "the answer: 7 × 8 = 56",
                                                    "The answer is 56 - 1 = 55")] == [1, 1, 0]
    assert rewards.exact_answer(5)("answer = 2 + 3 = 5") == 1.0
    assert rewards.exact_answer("fifty-six")("The answer is: Fifty-six.") == 1.0
    assert rewards.numeric_answer(56)("The answer is 7 * 8 = 56.") == 1.0


def test_group_save_load_round_trip(llama64, tmp_path):
    group = llama64.rollouts(PROMPT, n=3, reward=has_e, max_new_tokens=8, seed=2, progress=False)
    saved = group.save(tmp_path / "g")
    loaded = Group.load(saved)
    assert loaded.equals(group) and loaded.reward is None
    assert loaded.meta["columns"]["thr"]["mode"] == "exact"
    pd.testing.assert_frame_equal(loaded.table, group.table)
    run = llama64.analyze("a text")
    run.save(tmp_path / "run")
    with pytest.raises(WorkbenchError, match="saved run, not a group"):
        Group.load(tmp_path / "run")
    with pytest.raises(WorkbenchError, match="holds a saved run"):
        group.save(tmp_path / "run")


def test_sampler_spec_string(llama64):
    by_spec = llama64.rollouts(PROMPT, n=2, reward=has_e, sampler="top-k:5", max_new_tokens=4, seed=1, thr=None,
                               progress=False)
    by_object = llama64.rollouts(PROMPT, n=2, reward=has_e, sampler=S.TopK(5), max_new_tokens=4, seed=1, thr=None,
                                 progress=False)
    assert by_spec.equals(by_object) and by_spec.meta["sampler"] == "top-k 5, temperature 1"
    with pytest.raises(WorkbenchError, match="sampler must be a workbench.samplers sampler"):
        llama64.rollouts(PROMPT, n=2, reward=has_e, sampler=5)


def test_chat_and_raw_prompts(llama64):
    chat = llama64.rollouts(PROMPT, n=1, reward=has_e, max_new_tokens=2, seed=0, thr=None, progress=False)
    raw = llama64.rollouts(PROMPT, n=1, reward=has_e, max_new_tokens=2, seed=0, chat=False, thr=None, progress=False)
    assert chat.prompt.startswith("<|im_start|>user\n" + PROMPT) and chat.meta["chat"]
    assert chat.meta["template_system_prompt"] is None  # (ChatML adds no system prompt of its own)
    assert raw.prompt == PROMPT and not raw.meta["chat"] and "template_system_prompt" not in raw.meta
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]
    assert "Be brief." in llama64.rollouts(messages=messages, n=1, reward=has_e, max_new_tokens=2, seed=0, thr=None,
                                           progress=False).prompt


def test_errors(llama64, monkeypatch):
    with pytest.raises(WorkbenchError, match="give a reward"):
        llama64.rollouts(PROMPT, n=2)
    with pytest.raises(WorkbenchError, match="n must be a positive integer"):
        llama64.rollouts(PROMPT, n=0, reward=has_e)
    with pytest.raises(WorkbenchError, match="thr must be one of"):
        llama64.rollouts(PROMPT, n=2, reward=has_e, thr="fast")
    with pytest.raises(WorkbenchError, match="exceed tiny:llama's context of 512"):
        llama64.rollouts(PROMPT, n=2, reward=has_e, max_new_tokens=600)
    with pytest.raises(WorkbenchError, match="exactly one"):
        llama64.rollouts(reward=has_e)
    with pytest.raises(WorkbenchError, match="empty"):
        llama64.rollouts("  ", reward=has_e)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10_000)
    with pytest.raises(MemoryEstimateExceeded, match="sampling 8 responses .* fewer responses"):
        llama64.rollouts(PROMPT, n=8, reward=has_e)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "workbench", "rollouts", *args], capture_output=True, text=True,
                          timeout=300)


def run_main(capsys, *args):
    code = main(["rollouts", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_table_and_errors(tmp_path, capsys):
    args = [PROMPT, "--model", "tiny:llama", "--regex", "e", "--n", "4", "--max-new-tokens", "8", "--seed", "3"]
    (code, first, _), (_, second, _) = run_main(capsys, *args, "--format", "json"), run_main(capsys, *args, "--format", "json")
    assert code == 0 and first == second
    data = json.loads(first)
    assert len(data["rewards"]) == 4 and abs(sum(data["advantages"])) < 1e-9
    assert 0 < sum(data["rewards"]) < 4  # a mixed group: THR is not trivially zero
    assert all({"response", "advantage", "thr"} <= row.keys() and np.isfinite(row["thr"]) for row in data["tokens"])
    assert any(row["thr"] != 0 for row in data["tokens"])
    code, table, _ = run_main(capsys, *args)
    assert code == 0 and "[3] reward" in table and "largest |thr|" in table
    out = tmp_path / "g.parquet"
    assert run_main(capsys, *args, "--format", "parquet", "--out", str(out))[0] == 0
    assert len(pd.read_parquet(out)) == len(data["tokens"])
    code, _, err = run_main(capsys, *args, "--format", "parquet")
    assert code == 2 and "--out" in err
    bad = cli(PROMPT, "--model", "tiny:llama", "--answer", "56", "--n", "0")  # the real command line
    assert bad.returncode == 2 and "n must be a positive integer" in bad.stderr and "Traceback" not in bad.stderr
    with pytest.raises(SystemExit):
        main(["rollouts", PROMPT, "--model", "tiny:llama"])  # --answer or --regex is required
    assert "--answer" in capsys.readouterr().err


@pytest.mark.slow
def test_the_default_system_prompt_of_the_chat_template_is_recorded(smol):
    """A question sent through SmolLM2's chat template gets the template's own system prompt,
    and the group's meta names it."""
    group = smol.rollouts("What is 7 times 8?", n=1, reward="56", max_new_tokens=2, seed=0, thr=None, progress=False)
    system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert group.meta["template_system_prompt"] == system and system in group.prompt


@pytest.mark.slow
def test_cli_acceptance_on_the_embedded_model(smol):  # smol: the cache exists before the subprocess loads it
    result = cli("What is 7 times 8? Answer with a number.", "--answer", "56", "--n", "4", "--max-new-tokens", "24",
                 "--seed", "0", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["rewards"]) == 4 and set(data["rewards"]) <= {0.0, 1.0}
    assert abs(sum(data["advantages"])) < 1e-9
    assert data["tokens"] and all(np.isfinite(row["thr"]) for row in data["tokens"])
    assert {row["response"] for row in data["tokens"]} == {0, 1, 2, 3}
