"""Attention capture and signals, checked against the eager attention probabilities the model
itself returns (`attn_implementation="eager"`, output_attentions=True), on tiny models of
every family, padded batches (GQA, sliding windows and learned sinks on GPT-OSS) and the
embedded SmolLM2; capture leaves the model's outputs unchanged.

Max abs differences seen (fp32 statistics vs the eager maps in float64): tiny models of every
family below 1e-6; the embedded SmolLM2 at 96 tokens: entropy 8e-6, sink mass 5e-6, received
attention 5e-5 (column sums of up to ~90: relative 1e-6)."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from attention_reference import entropy_of
import workbench as wb
import workbench.forward.attention_rows as attention_rows_module
import workbench.forward.capture as capture_module
from workbench.forward import memory
from workbench.forward.attention import capturing_attention
from workbench.errors import MemoryEstimateExceeded, WorkbenchError
from workbench.model.tiny import FAMILIES, tiny_model
from workbench.widgets import attention as views
from workbench.widgets.panels import load_builtin_panels, panels_for

TEXT = "Attention lets every token look back at the tokens that came before. The river runs through the valley."


def eager_attention(hf, ids, attention_mask=None) -> list[torch.Tensor]:
    """The model's own eager attention probabilities, one [B, H, T, T] float64 per layer."""
    implementation = hf.config._attn_implementation
    hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            attentions = hf(ids, attention_mask=attention_mask, output_attentions=True).attentions
    finally:
        hf.set_attn_implementation(implementation)
    return [a.double() for a in attentions]


def entropy_with_sink(a: torch.Tensor) -> torch.Tensor:
    """`entropy_of` each row [..., T] -> [...], the learned sink's remainder 1 - sum a included
    (GPT-OSS; elsewhere it is rounding, below 1e-6, and left out)."""
    p_sink = 1 - a.sum(-1)
    return entropy_of(a, torch.where(p_sink > 1e-6, p_sink, 0.0))


def capture(hf, ids, attention_mask=None):
    """(logits without capture, logits while capturing, layer -> AttentionStats)."""
    captured = {}
    with torch.no_grad():
        before = hf(ids, attention_mask=attention_mask).logits
        with capturing_attention(hf, captured.__setitem__):
            during = hf(ids, attention_mask=attention_mask).logits
    return before, during, captured


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_matches_eager_attention(family):
    model = tiny_model(family)
    ids = torch.randint(3, 300, (1, 33), generator=torch.Generator().manual_seed(1))
    implementation = model.hf.config._attn_implementation
    before, during, captured = capture(model.hf, ids)
    attentions = eager_attention(model.hf, ids)
    assert torch.equal(before, during), "capture changed the model's outputs"
    assert sorted(captured) == list(range(len(attentions)))
    for layer, a in enumerate(attentions):
        stats = captured[layer]
        torch.testing.assert_close(stats.entropy.double(), entropy_with_sink(a), rtol=0, atol=1e-5)
        torch.testing.assert_close(stats.received.double(), a.sum(2), rtol=0, atol=1e-5)
        torch.testing.assert_close(stats.sink_mass.double(), a[..., 0], rtol=0, atol=1e-5)
    assert model.hf.config._attn_implementation == implementation  # restored


@pytest.mark.parametrize("family", ["llama", "gpt_oss"])  # SDPA with GQA; eager with sliding windows (8) and sinks
def test_capture_of_a_padded_batch(family):
    """Two texts, the second left-padded by 7: statistics of every real query equal eager's;
    padded queries add nothing to received attention (eager's column sums over real queries)."""
    model = tiny_model(family)
    ids = torch.randint(3, 300, (2, 30), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, :7] = 0
    before, during, captured = capture(model.hf, ids, mask)
    assert torch.equal(before, during)
    real = mask.bool()[:, None, :]  # [B, 1, T] real query positions
    for layer, a in enumerate(eager_attention(model.hf, ids, mask)):
        a = torch.where(real[..., None], a, 0.0)  # eager's rows of padded queries are meaningless
        stats = captured[layer]
        torch.testing.assert_close(stats.received.double(), a.sum(2), rtol=0, atol=1e-5)
        entropy = torch.where(real, stats.entropy.double(), 0.0)
        torch.testing.assert_close(entropy, torch.where(real, entropy_with_sink(a), 0.0), rtol=0, atol=1e-5)
        padded = stats.entropy[1, :, :7]  # no key to attend to: all mass on GPT-OSS's sink, else undefined
        assert (padded == 0).all() if family == "gpt_oss" else torch.isnan(padded).all()
        assert stats.received[1, :, :7].abs().max() < 1e-6  # padded keys: nobody attends to them


@pytest.mark.parametrize("family", ["llama", "gpt_oss"])
def test_analyze_attention_signal_matches_eager(family):
    model = tiny_model(family)
    run = model.analyze(TEXT, signals=["attention"])
    ids = torch.tensor([run.table["token_id"].tolist()])
    a = torch.cat(eager_attention(model.hf, ids))  # [L, H, T, T]
    close = dict(rtol=0, atol=1e-5)
    np.testing.assert_allclose(run.arrays["attn_received"], a.sum(2).numpy(), **close)
    np.testing.assert_allclose(run.arrays["attn_entropy"], entropy_with_sink(a).numpy(), **close)
    np.testing.assert_allclose(run.arrays["attn_head_entropy"], entropy_with_sink(a)[..., 1:].mean(-1).numpy(), **close)
    np.testing.assert_allclose(run.arrays["attn_head_sink"], a[..., 1:, 0].mean(-1).numpy(), **close)  # query 0 sees only key 0
    np.testing.assert_allclose(run.arrays["attn_rows"], a.mean((0, 1)).numpy(), **close)
    np.testing.assert_allclose(run.table["attn_received"].to_numpy(float), a.sum(2).mean((0, 1)).numpy(), **close)
    np.testing.assert_allclose(run.table["attn_entropy"].to_numpy(float), entropy_with_sink(a).mean((0, 1)).numpy(), **close)
    assert run.meta["attention_layers"] == list(range(a.shape[0]))
    one = model.analyze("a", signals=["attention"])  # one token: the head summaries keep its only query
    np.testing.assert_array_equal(one.arrays["attn_head_sink"], one.arrays["attn_sink_mass"][..., 0])


def test_keyformer_signal_is_seeded_and_spreads_each_query_over_its_keys(tmp_path):
    model = tiny_model("llama")
    run = model.analyze(TEXT, signals=["attention", "keyformer"])
    scores = run.arrays["attn_keyformer"]  # [L, H, T]
    n = len(run)
    np.testing.assert_allclose(scores.sum(-1), n, rtol=1e-5)  # each query's Gumbel-softmax sums to one
    assert not np.allclose(scores, run.arrays["attn_received"], atol=1e-3)
    assert run.meta["keyformer"] == {"tau": [1.0, 2.0], "seed": 0}
    again = model.analyze(TEXT, signals=["keyformer"])
    np.testing.assert_array_equal(again.arrays["attn_keyformer"], scores)
    assert wb.Run.load(run.save(tmp_path / "run")).equals(run)


def test_long_inputs_keep_no_exact_rows(monkeypatch):
    monkeypatch.setattr(capture_module, "ATTENTION_ROWS_MAX_T", 8)
    run = tiny_model("qwen2").analyze(TEXT, signals=["attention"])
    assert "attn_rows" not in run.arrays and run.arrays["attn_received"].shape[-1] == len(run)
    assert "workbench.exact_attention(model, run, queries=[3])" in views.exact_row(run, 3).layout.annotations[0].text


def test_exact_attention_rows_match_eager(monkeypatch):
    model = tiny_model("gpt_oss")
    run = model.analyze(TEXT, signals=["attention"])
    a = torch.cat(eager_attention(model.hf, torch.tensor([run.table["token_id"].tolist()])))  # [L, H, T, T]
    rows = wb.exact_attention(model, run, queries=[0, 9, -1], layers=[1])  # [1, H, 3, T]
    np.testing.assert_allclose(rows[0], a[1][:, [0, 9, len(run) - 1]].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(wb.exact_attention(model, TEXT), a.numpy(), rtol=0, atol=1e-6)
    with pytest.raises(WorkbenchError, match="query 999 is out of range"):
        wb.exact_attention(model, run, queries=[999])
    with pytest.raises(WorkbenchError, match=r"a query must be an integer position, got 0\.5"):
        wb.exact_attention(model, run, queries=[0.5])
    with pytest.raises(WorkbenchError, match="a layer must be an integer position, got True"):
        wb.exact_attention(model, run, queries=[0], layers=[True])
    monkeypatch.setattr(attention_rows_module, "ALL_ROWS_MAX_T", 10)
    with pytest.raises(WorkbenchError, match="Pass queries="):
        wb.exact_attention(model, run)


def test_memory_estimate_refuses_before_allocating(monkeypatch):
    model = tiny_model("llama")
    monkeypatch.setattr(memory, "available_bytes", lambda device: 200_000)
    with pytest.raises(MemoryEstimateExceeded, match="with attention needs about"):
        model.analyze(TEXT, signals=["attention"])


def test_memory_estimate_charges_exact_rows_only_where_they_are_kept():
    """The estimate is the arrays the run keeps plus one layer's working slabs; the T x T exact
    rows (3 copies at most) count only up to ATTENTION_ROWS_MAX_T tokens, where they are kept.
    (Charging them per token at every length over-refused long inputs by ~1.8x.)"""
    from workbench.kernels.attention_stats import QUERY_BLOCK
    from workbench.signals import SIGNALS

    model = tiny_model("llama")
    run = model.analyze(TEXT, signals=["attention"])
    tokens, estimate = len(run), SIGNALS["attention"].memory_bytes
    per_token = sum(run.arrays[name].nbytes for name in ("attn_entropy", "attn_sink_mass", "attn_received")) / tokens
    slabs = 2 * model.hf.config.num_attention_heads * QUERY_BLOCK * 4  # scores, exponentials [H, block] per key
    assert estimate(model, tokens) == tokens * (per_token + slabs) + 3 * run.arrays["attn_rows"].nbytes
    long = capture_module.ATTENTION_ROWS_MAX_T + 1
    assert estimate(model, long) == long * (per_token + slabs)


def test_attention_panels_appear_for_an_attention_run():
    load_builtin_panels()
    run = tiny_model("llama").analyze(TEXT, signals=["uncertainty", "attention", "keyformer"])
    names = [panel.name for panel in panels_for(run)]
    assert {"attention.heads", "attention.received", "attention.row", "attention.h2o", "attention.keyformer"} <= set(names)
    assert not any(name.startswith("attention.") for name in
                   (panel.name for panel in panels_for(tiny_model("llama").analyze(TEXT))))


def test_dashboard_offers_attention_and_shows_its_panels():
    import threading

    from workbench.widgets.dashboard import Dashboard

    model = tiny_model("llama")
    dashboard = Dashboard(model, threading.Lock())
    assert {"attention", "keyformer"} <= set(dashboard.controls["analyze"].signals.options)
    dashboard.show_run(model.analyze(TEXT, signals=["uncertainty", "attention", "keyformer"]))
    shown = {panel.name: pane.object for panel, pane in dashboard.views}
    expected = {"attention.heads", "attention.received", "attention.row", "attention.h2o", "attention.keyformer"}
    assert expected <= set(shown) and all(shown[name] is not None for name in expected)


# ----- the embedded model ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_embedded_model_capture_matches_eager(smol):
    ids = torch.tensor([smol.tokenizer(TEXT * 4)["input_ids"][:96]])
    before, during, captured = capture(smol.hf, ids)
    assert torch.equal(before, during)
    worst = {"entropy": 0.0, "received": 0.0, "sink": 0.0}
    for layer, a in enumerate(eager_attention(smol.hf, ids)):
        stats = captured[layer]
        worst["entropy"] = max(worst["entropy"], (stats.entropy.double() - entropy_with_sink(a)).abs().max().item())
        worst["received"] = max(worst["received"], (stats.received.double() - a.sum(2)).abs().max().item())
        worst["sink"] = max(worst["sink"], (stats.sink_mass.double() - a[..., 0]).abs().max().item())
    assert worst["entropy"] < 1e-4 and worst["sink"] < 1e-4 and worst["received"] < 5e-4, worst


@pytest.mark.slow
def test_embedded_memory_estimate_at_4096_tokens(smol):
    """What analyze reserves for attention at 4096 tokens stays far below the 4 GB target
    (eager attention maps of every layer would be L x H x T x T floats: 18 GB)."""
    from workbench.signals import SIGNALS

    needed = memory.forward_bytes(smol, 4096) + SIGNALS["attention"].memory_bytes(smol, 4096)
    assert needed < 1 * memory.GIB
    config = smol.hf.config
    assert config.num_hidden_layers * config.num_attention_heads * 4096**2 * 4 > 18e9


@pytest.mark.slow
def test_cli_writes_attention_columns_to_parquet(tmp_path):
    (tmp_path / "in.txt").write_text(TEXT, encoding="utf-8")
    out = tmp_path / "a.parquet"
    result = subprocess.run([sys.executable, "-m", "workbench", "analyze", "--file", str(tmp_path / "in.txt"),
                             "--signals", "attention", "--format", "parquet", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    assert {"attn_entropy", "attn_sink_mass", "attn_received"} <= set(table.columns)
    # every query's row sums to one in every head, so the mean received attention sums to T
    assert table["attn_received"].sum() == pytest.approx(len(table), rel=1e-4)
    assert table["attn_entropy"].iloc[0] == pytest.approx(0, abs=1e-6)  # the first token sees only itself
    assert table["attn_sink_mass"].iloc[0] == pytest.approx(1, abs=1e-6)
    shown = subprocess.run([sys.executable, "-m", "workbench", "analyze", "Hello there.", "--signals", "attention"],
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "attn H" in shown.stdout and "received" in shown.stdout
