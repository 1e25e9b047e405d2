"""MoE routing: capture on tiny models of every MoE family, checked against the router
recomputed here from the MoE block's input hidden states (each family's documented
scoring and top-k, written out independently of the adapters); the DESIGN.md vectors;
statistics against plain-Python counts; the embedded workbench:tiny-moe end to end."""
import json
import math
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

import workbench as wb
import workbench.routing_stats as rs
from workbench.errors import SignalUnavailable, WorkbenchError
from workbench.model.handle import Model
from workbench.results.run import Run
from workbench.model.tiny import tiny_model, tiny_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog. Two plus two is 4, and 3 * 7 = 21!"
TINY_MOE = "workbench:tiny-moe"


# ----- tiny models, including the two families model/tiny.py does not build -------------------------
def extra_model(family: str) -> Model:
    """Qwen3-MoE (renormalized top-k) and DeepSeek-V2 (softmax, group-limited, scaled)."""
    from transformers import AutoModelForCausalLM, DeepseekV2Config, Qwen3MoeConfig

    tokenizer = tiny_tokenizer()
    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, num_experts_per_tok=2)
    if family == "qwen3_moe":
        config = Qwen3MoeConfig(**common, num_experts=4, moe_intermediate_size=64, norm_topk_prob=True, head_dim=16)
    else:
        config = DeepseekV2Config(**common, n_routed_experts=4, n_shared_experts=1, moe_intermediate_size=64,
                                  first_k_dense_replace=0, topk_method="group_limited_greedy", n_group=2,
                                  topk_group=1, routed_scaling_factor=1.5, q_lora_rank=32, kv_lora_rank=16,
                                  qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return Model(hf.eval(), tokenizer, name=f"test:{family}")


def moe_model(family: str) -> Model:
    model = extra_model(family) if family in ("qwen3_moe", "deepseek_v2") else tiny_model(family)
    with torch.no_grad():
        for name, param in model.hf.named_parameters():
            if name.endswith(("mlp.gate.weight", "mlp.router.weight")):
                param.mul_(8)  # decisive routers: scores far apart compared with fp32 noise
        if family == "deepseek_v3":  # a correction bias that changes the choice but not the weights
            for layer in model.hf.model.layers[1:]:
                layer.mlp.gate.e_score_correction_bias.copy_(torch.tensor([0.3, -0.2, 0.1, 0.05]))
    return model


MOE_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "gpt_oss", "deepseek_v2", "deepseek_v3")


# ----- the documented router rules, written out here -----------------------------------------------
@torch.no_grad()
def reference_routing(family: str, mlp, hidden: torch.Tensor):
    """(logits [N, E], expert probabilities [N, E], ids [N, k], weights [N, k], shared [N] or None)
    from the MoE block's input hidden [N, d], with float64 math."""
    config_k = mlp.gate.top_k if hasattr(mlp, "gate") else mlp.router.top_k
    h = hidden.double()
    if family == "gpt_oss":
        z = h @ mlp.router.weight.double().T + mlp.router.bias.double()
        top, ids = z.topk(config_k, dim=-1)
        return z, torch.softmax(z, -1), ids, torch.softmax(top, -1), None
    z = h @ mlp.gate.weight.double().T
    k = config_k
    if family == "deepseek_v3":
        gate = mlp.gate
        s = torch.sigmoid(z)
        choice = s + gate.e_score_correction_bias.double()
        grouped = choice.view(len(z), gate.num_group, -1)
        group_score = grouped.topk(2, dim=-1).values.sum(-1)
        keep = torch.zeros_like(group_score).scatter(1, group_score.topk(gate.topk_group, -1).indices, 1.0)
        masked = torch.where(keep.repeat_interleave(grouped.shape[-1], 1).bool(), choice, -math.inf)
        ids = masked.topk(k, dim=-1).indices
        w = s.gather(1, ids)
        if gate.norm_topk_prob:
            w = w / w.sum(-1, keepdim=True)
        return z, s / s.sum(-1, keepdim=True), ids, w * gate.routed_scaling_factor, torch.ones(len(z))
    p = torch.softmax(z, -1)
    if family == "deepseek_v2":
        gate = mlp.gate
        grouped = p.view(len(z), gate.num_group, -1)
        keep = torch.zeros(len(z), gate.num_group, dtype=torch.float64)
        keep.scatter_(1, grouped.max(-1).values.topk(gate.topk_group, -1).indices, 1.0)
        masked = torch.where(keep.repeat_interleave(grouped.shape[-1], 1).bool(), p, 0.0)
        w, ids = masked.topk(k, dim=-1)
        return z, p, ids, w * gate.routed_scaling_factor, torch.ones(len(z))
    w, ids = p.topk(k, dim=-1)
    if family == "mixtral" or getattr(mlp.gate, "norm_topk_prob", False):
        w = w / w.sum(-1, keepdim=True)
    shared = None
    if family == "qwen2_moe":
        shared = torch.sigmoid(h @ mlp.shared_expert_gate.weight.double().T)[:, 0]
    return z, p, ids, w, shared


def moe_inputs(model: Model, ids: list[int]) -> dict[int, torch.Tensor]:
    """Input hidden states [T, d] of every MoE block, from an ordinary HF forward."""
    inputs, handles = {}, []
    for index, layer in enumerate(model.hf.model.layers):
        if hasattr(layer.mlp, "experts"):  # an MoE block (DeepSeek's first layers are dense)
            handles.append(layer.mlp.register_forward_pre_hook(
                lambda module, args, index=index: inputs.__setitem__(index, args[0][0].detach())))
    try:
        with torch.no_grad():
            model.hf(torch.tensor([ids]))
    finally:
        for handle in handles:
            handle.remove()
    return inputs


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_captured_routing_equals_recomputed_router(family):
    model = moe_model(family)
    run = model.analyze(TEXT, signals=["routing"])
    arrays = run.arrays
    inputs = moe_inputs(model, run.table["token_id"].tolist())
    assert arrays["routing_layers"].tolist() == sorted(inputs) == run.meta["routing"]["layers"]
    if family.startswith("deepseek"):
        assert run.meta["routing"]["shared_experts"] == 1
    for m, index in enumerate(arrays["routing_layers"]):
        z, p, ids, w, shared = reference_routing(family, model.hf.model.layers[index].mlp, inputs[index])
        order = w.argsort(-1, descending=True)
        np.testing.assert_allclose(arrays["routing_logits"][m], z.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(arrays["routing_expert_ids"][m], ids.gather(1, order).numpy())
        np.testing.assert_allclose(arrays["routing_weights"][m], w.gather(1, order).numpy(), rtol=1e-4, atol=1e-6)
        entropy = -(p * p.log()).sum(-1)
        np.testing.assert_allclose(arrays["routing_entropy"][m], entropy.numpy(), rtol=1e-5, atol=1e-6)
        if shared is None:
            assert "routing_shared_weight" not in arrays
        else:
            np.testing.assert_allclose(arrays["routing_shared_weight"][m], shared.numpy(), rtol=1e-5)
    top1 = arrays["routing_expert_ids"][:, :, 0]
    assert run.table["experts"].tolist() == top1.T.tolist()
    np.testing.assert_allclose(run.table["router_entropy"].to_numpy(float), arrays["routing_entropy"].mean(0), rtol=1e-6)
    assert run.meta["routing"]["scoring"] == ("sigmoid" if family == "deepseek_v3" else "softmax")


def test_router_that_returns_probabilities_is_detected():
    """transformers 4.55-4.57's GPT-OSS router put softmax-over-top-k scattered into [N, E]
    where logits are documented: the logits are recomputed from the router's weights."""
    model = tiny_model("gpt_oss")
    routers = [router for _, router in model.adapter.routers(model.hf)]

    def old_style(module, args, output):
        logits, weights, ids = output
        return torch.zeros_like(logits).scatter(1, ids, weights), weights, ids

    handles = [router.register_forward_hook(old_style) for router in routers]
    try:
        run = model.analyze(TEXT, signals=["routing"])
    finally:
        for handle in handles:
            handle.remove()
    reference = model.analyze(TEXT, signals=["routing"])
    assert run.meta["routing"]["logits_recomputed"] and not reference.meta["routing"]["logits_recomputed"]
    np.testing.assert_allclose(run.arrays["routing_logits"], reference.arrays["routing_logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(run.arrays["routing_expert_ids"], reference.arrays["routing_expert_ids"])


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
def test_dense_models_say_no_moe_layers(family):
    with pytest.raises(SignalUnavailable, match="routing: this model has no MoE layers"):
        tiny_model(family).analyze(TEXT, signals=["uncertainty", "routing"])


def test_round_trip_keeps_routing(tmp_path):
    run = tiny_model("qwen2_moe").analyze(TEXT, signals=["uncertainty", "routing"])
    again = Run.load(run.save(tmp_path / "run"))
    assert again.arrays.keys() == run.arrays.keys()
    for name, values in run.arrays.items():
        assert again.arrays[name].dtype == values.dtype
        np.testing.assert_array_equal(again.arrays[name], values)
    assert again.meta == run.meta
    assert again.table["experts"].tolist() == run.table["experts"].tolist()  # lists, not arrays
    assert again.table["router_entropy"].equals(run.table["router_entropy"])


# ----- statistics -----------------------------------------------------------------------------------
def test_design_vectors():
    trace = np.array([(0, 1), (0, 1), (0, 0), (1, 1), (1, 0), (1, 1)])
    np.testing.assert_allclose(rs.affinity(trace, 2), [[[1 / 3, 2 / 3], [1 / 3, 2 / 3]]])
    table = rs.specialization(np.zeros(4), np.array([1, 1, 1, 3]), 4)
    np.testing.assert_allclose(table.loc[0, [f"expert_{e}" for e in range(4)]].to_numpy(float), [0, .75, 0, .25])
    assert table.loc[0, "std"] == pytest.approx(.306, abs=5e-4)
    assert table.loc[0, "top_expert"] == 1 and table.loc[0, "count"] == 4


def test_statistics_match_plain_counts():
    rng = np.random.default_rng(0)
    m, tokens, k, experts = 3, 200, 2, 5
    ids = np.stack([np.stack([rng.choice(experts, k, replace=False) for _ in range(tokens)]) for _ in range(m)])
    load = rs.expert_load(ids, experts)
    for layer in range(m):
        counts = Counter(int(e) for row in ids[layer] for e in row)
        assert load[layer].tolist() == [counts[e] / tokens for e in range(experts)]
        assert rs.load_imbalance(load)[layer] == pytest.approx(max(load[layer]) / (k / experts))
    every_token_to_0 = np.stack([np.zeros(tokens, dtype=np.int64), np.arange(tokens) % (experts - 1) + 1], -1)
    assert rs.load_imbalance(rs.expert_load(every_token_to_0[None], experts)) == pytest.approx(experts / k)  # the top-k bound
    trace = ids[:, :, 0].T
    affinity = rs.affinity(trace, experts)
    for layer in range(m - 1):
        for e in range(experts):
            nexts = [int(b) for a, b in zip(trace[:, layer], trace[:, layer + 1]) if a == e]
            for f in range(experts):
                assert affinity[layer, e, f] == pytest.approx(nexts.count(f) / len(nexts))
    keys = rng.integers(0, 7, tokens)
    table = rs.specialization(keys, trace[:, 0], experts, min_count=30)
    for key, row in table.iterrows():
        routed = [int(e) for kk, e in zip(keys, trace[:, 0]) if kk == key]
        shares = [routed.count(e) / len(routed) for e in range(experts)]
        assert row["count"] == len(routed) >= 30
        assert row["std"] == pytest.approx(np.std(shares))
    assert set(table.index) == {key for key, n in Counter(keys.tolist()).items() if n >= 30}


def test_unseen_expert_rows_are_nan():
    affinity = rs.affinity(np.array([[0, 1], [0, 2]]), 3)
    assert np.isnan(affinity[0, 1:]).all() and affinity[0, 0].tolist() == [0, .5, .5]


def test_stability_between_runs():
    model = tiny_model("mixtral")
    run = model.analyze(TEXT, signals=["routing"])
    assert (rs.routing_stability(run, model.analyze(TEXT, signals=["routing"])) == 0).all()
    other = tiny_model("mixtral", seed=1).analyze(TEXT, signals=["routing"])
    changed = rs.routing_stability(run, other)
    trace_a, trace_b = rs.trace(run), rs.trace(other)
    assert changed.index.tolist() == [0, 1]
    assert changed.tolist() == [np.mean(trace_a[:, m] != trace_b[:, m]) for m in range(2)]
    prefixed = model.analyze("Something else entirely. " + TEXT, signals=["routing"])
    with pytest.raises(WorkbenchError, match="align='suffix'"):
        rs.routing_stability(run, prefixed)
    suffix = rs.routing_stability(run, prefixed, align="suffix")
    a, b = run.table["token_id"].tolist(), prefixed.table["token_id"].tolist()
    common = next(n for n in range(1, len(a) + 1) if n == len(a) or a[-n - 1] != b[-n - 1])
    assert common >= len(a) - 1
    np.testing.assert_allclose(suffix, (rs.trace(run)[-common:] != rs.trace(prefixed)[-common:]).mean(0))


def test_specialization_over_runs_by_token_and_position():
    model = tiny_model("olmoe")
    runs = [model.analyze(text, signals=["routing"]) for text in (TEXT, "the the the cat, the dog.")]
    table = rs.specialization_by(runs, by="token_id", min_count=2)
    the = runs[1].table.loc[runs[1].table["token"] == " the", "token_id"].iloc[0]
    assert table.loc[the, "token"] == " the" and table.loc[the, "count"] >= 4
    by_position = rs.specialization_by(runs, by="position", min_count=2, position_bin=4)
    assert by_position.index.tolist() == sorted(by_position.index) and by_position.index[0] == 0
    assert by_position["count"].sum() == sum(len(run) for run in runs)
    contrast = rs.specialization_contrast(runs, min_count=2, position_bin=4)
    assert set(contrast) == {"token_id", "position"} and contrast["position"]["groups"] == len(by_position)


def test_statistics_need_routing():
    run = tiny_model("llama").analyze(TEXT)
    with pytest.raises(WorkbenchError, match="signals=\\['routing'\\]"):
        rs.trace(run)


# ----- views ----------------------------------------------------------------------------------------
def test_views_build_for_a_routing_run():
    from workbench.widgets import routing as views
    from workbench.widgets.panels import PANELS, panels_for

    run = tiny_model("deepseek_v3").analyze(TEXT, signals=["routing"])
    names = [panel.name for panel in panels_for(run)]
    assert {"routing.expert_map", "routing.load", "routing.paths", "routing.affinity",
            "routing.specialization"} <= set(names)
    for name in names:
        if name.startswith("routing."):
            for selected in (None, 3):
                figure = PANELS[name].figure(run, selected)
                assert figure.data, name
    expert_map = views.expert_map(run, selected=3)
    assert np.array_equal(np.asarray(expert_map.data[0].z), run.arrays["routing_expert_ids"][:, :, 0])
    assert expert_map.layout.meta["workbench"]["position_axis"] == "x"  # a click selects a token
    box = expert_map.layout.shapes[0]
    assert box.name == "selection" and (box.x0, box.x1) == (2.5, 3.5)
    top2 = run.arrays["routing_expert_ids"][1, 3]
    assert f"experts: {top2[0]} (" in expert_map.data[0].text[1][3]
    bars, heatmap = views.load_bars(run, selected=3), None
    views.MAX_BAR_LAYERS, saved = 1, views.MAX_BAR_LAYERS
    try:
        heatmap = views.load_bars(run, selected=3)  # many layers: a [layer, expert] heatmap
    finally:
        views.MAX_BAR_LAYERS = saved
    load = rs.expert_load(run.arrays["routing_expert_ids"], 4)
    np.testing.assert_allclose([bar.y for bar in bars.data], load)
    np.testing.assert_allclose(heatmap.data[0].z, load)
    assert len(heatmap.layout.shapes) == 2 * 2  # the selected token's k experts at each layer
    paths = views.expert_paths(run, positions=[0, 1, 2])
    assert sum(paths.data[0].link.value) == 3 * (len(run.arrays["routing_layers"]) - 1)
    with pytest.raises(WorkbenchError, match="positions"):
        views.expert_paths(run, positions=[])
    dense = tiny_model("llama").analyze(TEXT)
    assert not any(panel.name.startswith("routing.") for panel in panels_for(dense))


def test_routing_views_are_framed_like_the_core_views():
    """In the dashboard the expert map sits with the other views along the positions: it
    has their frame (margins, so that the position axes line up; title; no legend), as
    does every routing view, except the load bars, whose legend names the layers."""
    from workbench.widgets import routing as views
    from workbench.widgets.figures import signal_chart

    run = tiny_model("mixtral").analyze(TEXT, signals=["routing"])
    core = signal_chart(run, 3, "router_entropy").layout
    for figure in (views.expert_map(run, 3), views.load_bars(run, 3), views.expert_paths(run, 3),
                   views.affinity_heatmap(run, 3), views.specialization_table(run, 3)):
        layout = figure.layout
        assert layout.margin == core.margin and layout.title.x == core.title.x and layout.font == core.font
        assert layout.showlegend is (figure.data[0].type == "bar")


# ----- the embedded model with learned routing ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_moe():
    return wb.load(TINY_MOE, device="cpu")


def test_tiny_moe_routing_is_learned(tiny_moe):
    """Trained routers: surer than chance, balanced, and (as OpenMoE found) decided by the
    token id in the first layer: repeats of a token take the same expert there."""
    import argparse
    import csv

    assert tiny_moe.adapter.name == "mixtral" and tiny_moe.dtype == torch.float32
    runs = [tiny_moe.analyze(module.__doc__, signals=["routing"], truncate=True) for module in (argparse, csv)]
    experts = rs.n_experts(runs[0])
    assert runs[0].arrays["routing_expert_ids"].shape == (4, len(runs[0]), 2) and experts == 8
    entropy = np.concatenate([run.arrays["routing_entropy"] for run in runs], axis=1)  # [4, T]
    assert entropy.mean() < 0.85 * math.log(experts)  # a random router: ~log 8
    ids = np.concatenate([run.arrays["routing_expert_ids"] for run in runs], axis=1)
    assert (rs.load_imbalance(rs.expert_load(ids, experts)) < 2).all()
    tokens = np.concatenate([run.table["token_id"].to_numpy() for run in runs])
    first = ids[0, :, 0]
    repeats = [first[i] == first[j] for i in range(len(tokens)) for j in range(i + 1, len(tokens))
               if tokens[i] == tokens[j]]
    assert len(repeats) > 1000 and np.mean(repeats) > 0.9  # chance: ~1/8
    contrast = rs.specialization_contrast(runs, moe_layer=0, min_count=8, position_bin=16)
    assert contrast["token_id"]["mean_std"] > 2 * contrast["position"]["mean_std"]


def test_cli_acceptance():
    """`workbench analyze "..." --model workbench:tiny-moe --signals routing --format json`."""
    result = subprocess.run(
        [sys.executable, "-m", "workbench", "analyze", "Once upon a time there was a little robot.",
         "--model", TINY_MOE, "--signals", "routing", "--format", "json"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == TINY_MOE and data["meta"]["routing"]["layers"] == [0, 1, 2, 3]
    assert "".join(token["token"] for token in data["tokens"]) == "Once upon a time there was a little robot."
    for token in data["tokens"]:
        assert len(token["experts"]) == 4 and all(0 <= e < 8 for e in token["experts"])
        assert 0 <= token["router_entropy"] <= math.log(8)
