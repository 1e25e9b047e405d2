"""analyze() on tiny models of every family, checked against the model's own full logits
(an ordinary HF forward, softmax in float64) and its own hidden states."""
import logging

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from workbench.forward import memory
from workbench.errors import MemoryEstimateExceeded, SignalUnavailable, WorkbenchError
from workbench.signals import SIGNALS
from workbench.signals.registry import register
from workbench.model.tiny import FAMILIES, tiny_model

TEXT = "The quick brown fox jumps over the lazy dog. 🙂 Ünïcode!"


def full_softmax_stats(model, ids):
    """Entropy, surprisal and rank of each next token from the model's full logits [T, V]."""
    with torch.no_grad():
        logits = model.hf(torch.tensor([ids])).logits[0].double()  # [T, V]
    logp = torch.log_softmax(logits, -1)
    entropy = -(logp.exp() * logp).sum(-1)
    targets = torch.tensor(ids[1:])
    surprisal = -logp[:-1].gather(-1, targets[:, None])[:, 0]
    rank = (logits[:-1] > logits[:-1].gather(-1, targets[:, None])).sum(-1)
    return entropy.numpy(), surprisal.numpy(), rank.numpy(), logits


@pytest.mark.parametrize("family", FAMILIES)
def test_uncertainty_matches_full_forward(family):
    model = tiny_model(family)
    run = model.analyze(TEXT, top_k=3)
    table = run.table
    entropy, surprisal, rank, logits = full_softmax_stats(model, table["token_id"].tolist())
    assert table.loc[0, ["entropy", "surprisal", "rank", "margin"]].isna().all()  # null, not zero
    assert table.loc[0, "topk_ids"] is None
    np.testing.assert_allclose(table["entropy"][1:].to_numpy(float), entropy[:-1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(table["surprisal"][1:].to_numpy(float), surprisal, rtol=1e-4, atol=1e-4)
    # a rank may differ only where two logits tie to within fp32 noise
    assert (np.abs(table["rank"][1:].to_numpy(int) - rank) <= 1).all()
    top = logits[:-1].topk(3).indices.tolist()
    assert table["topk_ids"][1:].tolist() == top
    assert run.meta["next_token"]["topk_ids"][0] == int(logits[-1].argmax())
    assert "".join(run.text[s:e] for s, e in zip(table.start, table.end)) == TEXT


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "mixtral"])
def test_logit_lens_matches_hidden_states(family):
    model = tiny_model(family)
    run = model.analyze(TEXT, signals=["uncertainty", "logit_lens"])
    ids = torch.tensor([run.table["token_id"].tolist()])
    with torch.no_grad():
        hidden = model.hf(ids, output_hidden_states=True).hidden_states  # L+1; the last one is normed
    L = model.n_layers
    assert run.arrays["lens_entropy"].shape == (L + 1, len(run))
    for layer in range(L):  # layer 0 = embeddings
        with torch.no_grad():
            normed = model.adapter.final_norm(model.hf)(hidden[layer][0])
            logp = torch.log_softmax(model.adapter.logits(model.hf, normed).double(), -1)
        entropy = -(logp.exp() * logp).sum(-1).numpy()
        np.testing.assert_allclose(run.arrays["lens_entropy"][layer, 1:], entropy[:-1], rtol=1e-4, atol=1e-4)
    # the last layer's lens is the model's own prediction
    np.testing.assert_allclose(run.arrays["lens_entropy"][L, 1:], run.table["entropy"][1:].to_numpy(float), rtol=1e-5)
    assert np.isnan(run.arrays["lens_entropy"][:, 0]).all()


def test_messages_mark_roles():
    run = tiny_model("qwen2").analyze(messages=[{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}])
    roles = run.table.groupby("role")["token"].apply("".join)
    assert roles["prompt"] == "Hi there" and roles["response"] == "Hello!"
    assert set(run.table.role) == {"template", "prompt", "response"}


def test_input_errors():
    model = tiny_model("llama")
    for bad in ("", "   \n"):
        with pytest.raises(WorkbenchError, match="empty"):
            model.analyze(bad)
    with pytest.raises(WorkbenchError, match="exactly one"):
        model.analyze("text", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(WorkbenchError, match="unknown signal 'nope'.*uncertainty"):
        model.analyze("text", signals=["nope"])
    with pytest.raises(WorkbenchError, match="role"):
        model.analyze(messages=[{"content": "x"}])
    with pytest.raises(WorkbenchError, match="top_k"):
        model.analyze("text", top_k=-1)


def test_too_long_text_says_lengths_and_truncates_on_request():
    model = tiny_model("llama")  # context 512 positions
    text = "word " * 600
    with pytest.raises(WorkbenchError, match=r"the text is \d+ tokens but tiny:llama takes at most 512.*truncate"):
        model.analyze(text)
    run = model.analyze(text, truncate=True)
    assert len(run) == 512 and run.meta["truncated_from"] > 512
    assert text.startswith(run.text) and run.table.end.iloc[-1] == len(run.text)


def test_the_tokenizers_length_warning_never_precedes_our_own(caplog, monkeypatch):
    """transformers warns (once per tokenizer) when a text has more tokens than the tokenizer's
    model_max_length; analyze checks the length against the model's context itself (and cuts
    it with truncate=True), so it asks the tokenizer not to, and its own error stands alone."""
    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)  # to caplog's handler
    model = tiny_model("llama")
    model.tokenizer.model_max_length = 512
    text = "word " * 600
    assert len(model.analyze(text, truncate=True)) == 512
    with pytest.raises(WorkbenchError, match="truncate"):
        model.analyze(text)
    assert "Token indices sequence length" not in caplog.text


def test_memory_estimate_refuses_before_allocating(monkeypatch):
    model = tiny_model("llama")
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10_000)
    with pytest.raises(MemoryEstimateExceeded, match=r"analyzing \d+ tokens with uncertainty needs about .* GiB"):
        model.analyze("a short text")


def test_unavailable_signal_says_why():
    register("needs_moe", description="test only", needs=("final_hidden",),
             unavailable=lambda m: "this model has no MoE layers")(lambda capture, params: None)
    try:
        with pytest.raises(SignalUnavailable, match="needs_moe: this model has no MoE layers"):
            tiny_model("llama").analyze("text", signals=["needs_moe"])
    finally:
        del SIGNALS["needs_moe"]


def test_load_errors_name_the_options(tmp_path):
    with pytest.raises(WorkbenchError, match="unknown embedded model.*workbench:smollm2-135m"):
        wb.load("workbench:nope")
    with pytest.raises(WorkbenchError, match="GGUF file not found"):
        wb.load(str(tmp_path / "missing.gguf"))
    with pytest.raises(WorkbenchError, match="no .safetensors"):
        wb.load(str(tmp_path))
    with pytest.raises(WorkbenchError, match="no CUDA"):
        if not torch.cuda.is_available():
            wb.load("tiny:llama", device="cuda")
        else:
            raise WorkbenchError("no CUDA (skipped on GPU machines)")


def test_local_folder_round_trip(tmp_path):
    model = tiny_model("gpt2")
    model.hf.save_pretrained(tmp_path)
    model.tokenizer.save_pretrained(tmp_path)
    again = wb.load(str(tmp_path))
    a, b = model.analyze(TEXT).table, again.analyze(TEXT).table
    pd.testing.assert_series_equal(a["entropy"], b["entropy"])


def test_vocabulary_statistics_fuse_the_lm_head(monkeypatch):
    """uncertainty and the logit lens hand the lm_head's weight to kernels.linear_vocab_stats
    (Triton on CUDA tensors) rather than computing [T, V] logits; the head they read
    reproduces the family's own logits."""
    import workbench.forward.vocab_stats as vocab

    model = tiny_model("llama")
    weight, bias, softcap = model.adapter.head(model.hf)
    assert softcap is None  # Llama has no final-logit soft-cap
    hidden = torch.randn(3, weight.shape[1])
    torch.testing.assert_close(torch.nn.functional.linear(hidden, weight, bias), model.adapter.logits(model.hf, hidden))
    calls, fused = [], vocab.linear_vocab_stats
    monkeypatch.setattr(vocab, "linear_vocab_stats", lambda *args, **kwargs: calls.append(args) or fused(*args, **kwargs))
    model.analyze(TEXT, signals=["uncertainty", "logit_lens"])
    assert len(calls) == 1 + model.n_layers + 1  # the final hidden states, then the embeddings and every layer
