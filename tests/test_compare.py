"""model.compare against a full-softmax float64 reference: each side's logits from the Hugging
Face model's own forward (lm_head included) over an input built here by hand, every pair signal
recomputed from them by its definition; the commitment layer against a plain loop over the
logit lens of `analyze`; the branches against transformers' own greedy `generate`."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench.compare import commitment_layers, expected_accepted_tokens
from workbench.model.vocabulary import check_same_vocabulary
from workbench.errors import MemoryEstimateExceeded, WorkbenchError
from workbench.model.handle import Model
from workbench.model.tiny import tiny_model

TEXT = "The capital of France is Paris. The quick brown fox jumps."


def sharpened(family: str, seed: int, scale: float) -> Model:
    """A tiny random model whose output layer is scaled up, so that its distributions are peaked
    (random heads give nearly uniform ones, where every divergence is ~0)."""
    model = tiny_model(family, seed=seed)
    with torch.no_grad():
        model.adapter.lm_head(model.hf).weight.mul_(scale)
    return model


@pytest.fixture(scope="module")
def pair():
    return sharpened("llama", 0, 30.0), sharpened("qwen2", 1, 30.0)


def full_logits(model: Model, ids: list[int]) -> torch.Tensor:
    """[len(ids), V] float64 logits from the HF model's own forward."""
    with torch.no_grad():
        return model.hf(input_ids=torch.tensor([ids])).logits[0].double()


def expected_columns(z_p: torch.Tensor, z_q: torch.Tensor, targets: torch.Tensor, beta: float, cdpo_beta: float) -> dict:
    """Every pair signal from [N, V] float64 logits, one definition each."""
    log_p, log_q = torch.log_softmax(z_p, -1), torch.log_softmax(z_q, -1)
    p, q = log_p.exp(), log_q.exp()
    m = (p + q) / 2
    kl = lambda a, b: (a * (a.log() - b.log())).sum(-1)  # noqa: E731
    index = targets[:, None]
    lp, lq = log_p.gather(-1, index)[:, 0], log_q.gather(-1, index)[:, 0]
    contrast = torch.softmax((1 + cdpo_beta) * z_p - cdpo_beta * z_q, -1).gather(-1, index)[:, 0]
    return {
        "kl_pq": kl(p, q), "kl_qp": kl(q, p), "js": (kl(p, m) + kl(q, m)) / 2,
        "acceptance": 1 - 0.5 * (p - q).abs().sum(-1),  # 1 - TV, written the other way
        "log_ratio": lp - lq, "implicit_reward": beta * (lp - lq), "excess_loss": (-lp) - (-lq),
        "cdpo_weight": 1 - contrast,
        "surprisal": -lp, "ref_surprisal": -lq, "entropy": -(p * log_p).sum(-1), "ref_entropy": -(q * log_q).sum(-1),
        "rank": (z_p > z_p.gather(-1, index)).sum(-1), "ref_rank": (z_q > z_q.gather(-1, index)).sum(-1),
        "top1_agree": z_p.argmax(-1) == z_q.argmax(-1),
    }


def assert_columns(run, rows, want: dict) -> None:
    for name, values in want.items():
        got = run.table[name].iloc[rows].to_numpy(dtype=np.float64 if values.is_floating_point() else np.int64)
        if values.is_floating_point():
            np.testing.assert_allclose(got, values.numpy(), rtol=2e-4, atol=2e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got, values.long().numpy(), err_msg=name)


def test_two_models_match_the_float64_definitions(pair):
    model, reference = pair
    run = model.compare(TEXT, reference=reference, beta=0.2, cdpo_beta=0.5, top_k=3, branches=0, progress=False)
    ids = model.tokenizer(TEXT)["input_ids"]
    assert run.table["token_id"].tolist() == ids
    z_p, z_q = full_logits(model, ids)[:-1], full_logits(reference, ids)[:-1]  # position t - 1 predicts token t
    targets = torch.tensor(ids[1:])
    want = expected_columns(z_p, z_q, targets, 0.2, 0.5)
    assert want["kl_pq"].max() > 0.1 and not want["top1_agree"].all()  # the check is not vacuous
    assert_columns(run, slice(1, None), want)
    assert run.table.loc[0, ["kl_pq", "acceptance", "surprisal"]].isna().all()
    top_q = torch.softmax(z_q, -1).topk(3)
    assert run.table["ref_topk_ids"].iloc[1:].tolist() == top_q.indices.tolist()
    np.testing.assert_allclose(np.array(run.table["ref_topk_probs"].iloc[1:].tolist()), top_q.values.numpy(), rtol=1e-4)
    assert run.table["top1_token"].iloc[1:].tolist() == [model.tokenizer.decode([int(i)]) for i in z_p.argmax(-1)]
    assert run.meta["compare"]["reference"] == reference.name and run.meta["compare"]["form"] == "models"
    assert run.meta["reference_sequence"]["total_logprob"] == pytest.approx(-want["ref_surprisal"].sum().item(), rel=1e-5)


def test_two_contexts_of_one_model(pair):
    model, _ = pair
    context, reference_context = "Paris is in France. ", "The fox is quick. "
    run = model.compare(TEXT, context=context, reference_context=reference_context, branches=0, progress=False)
    ids = model.tokenizer(TEXT)["input_ids"]
    side_p = model.tokenizer(context, add_special_tokens=False)["input_ids"]
    side_q = model.tokenizer(reference_context, add_special_tokens=False)["input_ids"]
    # both sides have a context: every token, the first included, is predicted
    z_p = full_logits(model, side_p + ids)[len(side_p) - 1:-1]
    z_q = full_logits(model, side_q + ids)[len(side_q) - 1:-1]
    want = expected_columns(z_p, z_q, torch.tensor(ids), 0.1, 1.0)
    assert_columns(run, slice(0, None), want)
    assert run.meta["compare"]["form"] == "contexts" and run.text == TEXT
    # no reference context: the first token has no prediction on that side
    alone = model.compare(TEXT, context=context, branches=0, progress=False)
    assert pd.isna(alone.table.loc[0, "js"])
    z_q = full_logits(model, ids)[:-1]
    assert_columns(alone, slice(1, None), expected_columns(z_p[1:], z_q, torch.tensor(ids[1:]), 0.1, 1.0))


def test_system_prompts_score_the_common_conversation(pair):
    model, _ = pair
    messages = [{"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "The capital of France is Paris."}]
    run = model.compare(messages=messages, context="Answer briefly.", reference_context="You are a pirate.",
                        branches=0, progress=False)
    render = lambda system: model.tokenizer.apply_chat_template(  # noqa: E731
        [{"role": "system", "content": system}] + messages, tokenize=False)
    ids_p = model.tokenizer(render("Answer briefly."), add_special_tokens=False)["input_ids"]
    ids_q = model.tokenizer(render("You are a pirate."), add_special_tokens=False)["input_ids"]
    n = len(run.table)
    assert ids_p[-n:] == ids_q[-n:] == run.table["token_id"].tolist()
    assert "What is the capital" in run.text and "pirate" not in run.text and "briefly" not in run.text
    z_p = full_logits(model, ids_p)[len(ids_p) - n - 1:-1]
    z_q = full_logits(model, ids_q)[len(ids_q) - n - 1:-1]
    assert_columns(run, slice(0, None), expected_columns(z_p, z_q, torch.tensor(ids_p[-n:]), 0.1, 1.0))
    assert set(run.table["role"]) >= {"prompt", "response"}


def test_commitment_layers_follow_the_logit_lens(pair):
    model, reference = pair
    run = model.compare(TEXT, reference=reference, commitment=True, branches=0, progress=False)
    for prefix, side in (("", model), ("ref_", reference)):
        top1 = side.analyze(TEXT, signals=["logit_lens"], progress=False).arrays["lens_top1_id"]  # [L+1, T]
        for t in range(1, top1.shape[1]):
            final, layer = top1[-1, t], top1.shape[0] - 1
            while layer > 0 and top1[layer - 1, t] == final:
                layer -= 1
            assert run.table[f"{prefix}commit_layer"].iloc[t] == layer
        np.testing.assert_array_equal(run.arrays[f"{prefix}lens_top1_id"], top1)
    assert pd.isna(run.table["commit_layer"].iloc[0])


def test_branches_are_both_greedy_continuations(pair):
    model, reference = pair
    run = model.compare(TEXT, reference=reference, branches=2, branch_tokens=3, progress=False)
    ids = model.tokenizer(TEXT)["input_ids"]
    branched = run.table.index[run.table["branch"].notna()].tolist()
    divergent = run.table.index[run.table["top1_agree"].eq(False).fillna(False)].tolist()
    assert len(branched) == 2 and set(branched) <= set(divergent)
    js = run.table.loc[divergent, "js"].astype(float)
    assert set(branched) == set(js.nlargest(2).index)  # the two of largest JS
    for t in branched:
        for prefix, side in (("", model), ("ref_", reference)):
            with torch.no_grad():
                out = side.hf.generate(torch.tensor([ids[:t]]), do_sample=False, max_new_tokens=4,
                                       pad_token_id=side.tokenizer.pad_token_id or 0)
            assert out[0, t].item() == run.table.loc[t, f"{prefix}topk_ids"][0]
            assert run.table.loc[t, f"{prefix}branch"] == side.tokenizer.decode(out[0, t:].tolist(),
                                                                               clean_up_tokenization_spaces=False)
    assert run.table.loc[[r for r in run.table.index if r not in branched], "branch"].isna().all()


def test_save_load_and_views(pair, tmp_path):
    model, reference = pair
    run = model.compare(TEXT, reference=reference, branches=1, branch_tokens=2, progress=False)
    again = wb.Run.load(run.save(tmp_path / "pair"))
    assert again.equals(run)
    assert "kl_pq" in run.strip("kl_pq").html


def test_a_vocabulary_found_equal_is_checked_again_once_it_changes(pair):
    """The check remembers a pair found equal; a token added afterwards makes them differ."""
    model, reference = pair
    tokenizer = copy.deepcopy(model.tokenizer)
    twin = Model(reference.hf, tokenizer, name="twin")
    assert check_same_vocabulary(model, twin, "compare") == min(model.vocab_size, twin.vocab_size)
    tokenizer.add_tokens(["<|added-later|>"])
    with pytest.raises(WorkbenchError, match="same tokenizer vocabulary"):
        check_same_vocabulary(model, twin, "compare")


def test_bad_input_is_one_clear_line(pair, monkeypatch):
    model, reference = pair
    other_tokenizer = copy.deepcopy(model.tokenizer)
    other_tokenizer.add_tokens(["<|another-token|>"])
    stranger = Model(reference.hf, other_tokenizer, name="stranger")
    with pytest.raises(WorkbenchError, match="same tokenizer vocabulary"):
        model.compare(TEXT, reference=stranger)
    with pytest.raises(WorkbenchError, match="nothing to compare"):
        model.compare(TEXT)
    with pytest.raises(WorkbenchError, match="either text or messages"):
        model.compare(reference=reference)
    with pytest.raises(WorkbenchError, match="context is empty"):
        model.compare(TEXT, context=" ")
    with pytest.raises(WorkbenchError, match="leave the system message out"):
        model.compare(messages=[{"role": "system", "content": "a"}, {"role": "user", "content": "b"}], context="c")
    with pytest.raises(WorkbenchError, match="at most"):
        model.compare(TEXT * 200, reference=reference)
    from workbench.forward import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**20)  # 1 MiB free: refused before the forwards
    with pytest.raises(MemoryEstimateExceeded, match="comparing .* tokens needs about"):
        model.compare(TEXT, reference=reference)


def test_branches_estimate_their_cache_and_report_non_finite_logits(pair, monkeypatch):
    from workbench.compare.branches import greedy_branches
    from workbench.compare.sides import Side
    from workbench.forward import memory

    model, _ = pair
    ids = model.tokenizer(TEXT)["input_ids"]
    side = Side(ids, np.arange(len(ids)))
    texts, finite = greedy_branches(model, side, [3], [ids[3]], tokens=2, progress=False)
    assert finite and texts[0].startswith(model.tokenizer.decode([ids[3]]))
    with monkeypatch.context() as patched:
        patched.setattr(memory, "available_bytes", lambda device: 2**10)
        with pytest.raises(MemoryEstimateExceeded, match="continuing 1 branches of up to 6 tokens"):
            greedy_branches(model, side, [3], [ids[3]], tokens=2, progress=False)
    broken = copy.deepcopy(model.hf)
    with torch.no_grad():
        broken.get_output_embeddings().weight[0, 0] = float("nan")
    _, finite = greedy_branches(Model(broken, model.tokenizer, name="broken"), side, [3], [ids[3]], tokens=2,
                                progress=False)
    assert not finite


def test_design_vectors():
    # DESIGN.md: p = (.5, .3, .2), q = (.2, .3, .5): alpha = .7; gamma = 4 -> 2.7731
    assert expected_accepted_tokens(0.7, 4) == pytest.approx(2.7731, abs=1e-4)
    assert expected_accepted_tokens([1.0, 0.0], 4).tolist() == [5.0, 1.0]
    # commitment: top-1 per layer (7, 3, 5, 3, 3) -> final 3, committed from layer 3; no prediction -> -1
    assert commitment_layers(np.array([[7, -1], [3, -1], [5, -1], [3, -1], [3, -1]])).tolist() == [3, -1]
    assert commitment_layers(np.array([[3], [3]])).tolist() == [0]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter evaluates both sides of tl.where
def test_fused_triton_route_matches_the_blocks_of_rows(pair):
    """The route CUDA takes (Triton `linear_vocab_stats` per side, `linear_divergence` for the pair),
    run under TRITON_INTERPRET=1 on the tiny pair's hidden states, against the CPU route."""
    from workbench.compare import pair_stats
    from workbench.forward.capture import run_forward

    model, reference = pair
    ids = model.tokenizer(TEXT)["input_ids"]
    hidden_p = run_forward(model, ids, {"final_hidden"}).final_hidden[:-1]
    hidden_q = run_forward(reference, ids, {"final_hidden"}).final_hidden[:-1]
    targets = torch.tensor(ids[1:])
    fused, blocks = (pair_stats(model, hidden_p, reference, hidden_q, targets, vocab_size=model.vocab_size, top_k=2,
                                beta=1.0, backend=backend) for backend in ("triton", "torch"))
    for name in ("kl_pq", "kl_qp", "js", "overlap", "contrastive"):
        torch.testing.assert_close(getattr(fused.divergence, name), getattr(blocks.divergence, name), rtol=1e-4,
                                   atol=1e-5, msg=name)
    for side in ("model", "reference"):
        got, want = getattr(fused, side), getattr(blocks, side)
        torch.testing.assert_close(got.target_logprob, want.target_logprob, rtol=1e-4, atol=1e-5)
        assert torch.equal(got.topk_ids, want.topk_ids) and torch.equal(got.target_rank, want.target_rank)


def test_pair_blocks_match_float64_and_the_references(monkeypatch):
    """The CPU path's one set of passes (`kernels.pair_blocks`) over slices of a few rows, with the
    grouped top-k (V a multiple of the group): finite rows against float64 definitions; rows with
    -inf logits, an all -inf row and an ignored target against the references' conventions."""
    from workbench.kernels import IGNORE_INDEX, divergence_reference, vocab_stats_reference
    from workbench.kernels import pair_blocks

    monkeypatch.setattr(pair_blocks, "SLICE_BYTES", 3 * 4 * 4096)  # three rows per slice
    generator = torch.Generator().manual_seed(0)
    z_p = torch.randn(11, 4096, generator=generator) * 4
    z_q = z_p + torch.randn(11, 4096, generator=generator) * 2
    z_p[:, :3] += 15  # peaked rows: small and large divergences both
    targets = torch.randint(0, 4096, (11,), generator=generator)
    z_p[8, 100:200] = float("-inf")
    z_q[9, 7] = float("-inf")
    z_q[10] = float("-inf")
    targets[7] = IGNORE_INDEX
    got_p, got_q, got = pair_blocks.pair_block_stats(z_p, z_q, targets, top_k=4, beta=0.5)

    finite = slice(0, 7)
    want = expected_columns(z_p[finite].double(), z_q[finite].double(), targets[finite], 0.1, 0.5)
    for name, values in (("kl_pq", got.kl_pq), ("kl_qp", got.kl_qp), ("js", got.js), ("acceptance", got.overlap),
                         ("cdpo_weight", 1 - got.contrastive), ("surprisal", -got_p.target_logprob),
                         ("ref_surprisal", -got_q.target_logprob), ("entropy", got_p.entropy),
                         ("ref_entropy", got_q.entropy)):
        np.testing.assert_allclose(values[finite].double().numpy(), want[name].numpy(), rtol=2e-5, atol=2e-6,
                                   err_msg=name)
    assert torch.equal(got_p.target_rank[finite], want["rank"]) and torch.equal(got_q.target_rank[finite],
                                                                                want["ref_rank"])
    for got_side, z in ((got_p, z_p), (got_q, z_q)):
        assert torch.equal(got_side.topk_ids[:10], z[:10].topk(4).indices)
    references = (vocab_stats_reference(z_p, targets, top_k=4), vocab_stats_reference(z_q, targets, top_k=4),
                  divergence_reference(z_p, z_q, targets, beta=0.5, overlap=True))
    for result, reference in zip((got_p, got_q, got), references):
        for name, values in vars(reference).items():
            torch.testing.assert_close(getattr(result, name), values, rtol=1e-4, atol=1e-5, equal_nan=True, msg=name)
    assert got.contrastive[7].isnan() and got_p.target_rank[7] == -1 and got.kl_pq[10].isnan()
