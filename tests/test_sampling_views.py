"""Sampling views: the kept sets drawn from a step's stored top 50 agree with the sampler
that actually ran (recomputed from the full logits), and the figures name what they show."""
import numpy as np
import plotly.graph_objects as go
import torch

import workbench.samplers as S
from workbench.model.tiny import tiny_model
from workbench.widgets import sampling
from workbench.widgets.figures import TEMPLATE, next_token_chart
from workbench.widgets.panels import panels_for


def test_kept_sets_from_top_50_match_full_logits():
    model = tiny_model("llama")
    run = model.generate("Once upon", sampler=S.TopH(0.4), max_new_tokens=6, seed=2, progress=False)
    ids = run.table.token_id.tolist()
    with torch.no_grad():
        logits = model.hf(torch.tensor([ids])).logits[0]
    for step, row in enumerate(run.table[run.table.generated].itertuples()):
        sets = {label: size for label, size, _, _ in sampling.kept_sets(run.arrays["step_top_probs"][step], row.entropy)}
        full = logits[row.position - 1]
        for label, sampler in (("top-H 0.4", S.TopH(0.4)), ("min-p 0.1", S.MinP(0.1)), ("top-k 20", S.TopK(20))):
            exact = int(sampler.filter(full)[0].sum())
            assert sets[label] == min(exact, 50), (label, step)
        assert sets["top-H 0.4"] == row.kept  # the sampler that ran


def test_the_kept_set_view_draws_the_chosen_sampler_first():
    """With top-k 5 at temperature 0.7, the step's chart marks that sampler's kept set first,
    as wide as the set the sampler keeps from the full logits at that temperature (recomputed
    here), and no top-k 20 comparison."""
    model = tiny_model("llama")
    sampler = S.TopK(5, 0.7)
    run = model.generate("Once upon", sampler=sampler, max_new_tokens=3, seed=1, progress=False)
    with torch.no_grad():
        logits = model.hf(torch.tensor([run.table.token_id.tolist()])).logits[0]
    for position in run.table.position[run.table.generated]:
        exact = int(sampler.filter(logits[position - 1])[0].sum())
        lines = sampling.step_distribution(run, int(position)).data[1:]
        assert lines[0].name.startswith(f"top-k 5, temperature 0.7 (this run): keeps {exact}, H = ")
        assert lines[0].x[1] == exact - 0.6
        assert not any(line.name.startswith("top-k 20") for line in lines)


def test_figures_and_panels():
    run = tiny_model("gpt2").generate("Hi", sampler=S.MinP(0.1), max_new_tokens=5, seed=0, progress=False)
    names = [p.name for p in panels_for(run)]
    assert "sampling.distribution" in names and "sampling.steps" in names
    first = int(run.table.position[run.table.generated].iloc[0])
    dist = sampling.step_distribution(run, first)
    assert f"#{first} " in dist.layout.title.text
    # The run's own sampler first, then the compared rules of other kinds (min-p's is the run's).
    assert [t.name.split(":")[0] for t in dist.data[1:]] == ["min-p 0.1, temperature 1 (this run)"] + [
        r[0] for r in sampling.RULES if not r[0].startswith("min-p")]
    assert not any(t.startswith("#") for t in dist.layout.xaxis.ticktext)  # every token has its text
    steps = sampling.generation_steps(run, first)
    np.testing.assert_array_equal(steps.data[2].y, run.table.kept[run.table.generated].to_numpy(float))
    analyzed = tiny_model("gpt2").analyze("no generation here")
    assert "sampling.distribution" not in [p.name for p in panels_for(analyzed)]


def test_hover_labels_template_and_units():
    run = tiny_model("gpt2").generate("Hi", sampler=S.MinP(0.1), max_new_tokens=5, seed=0, progress=False)
    first = int(run.table.position[run.table.generated].iloc[0])
    steps = sampling.generation_steps(run, first)
    assert "!r" not in steps.data[0].hovertemplate
    assert list(steps.data[0].customdata) == [repr(t) for t in run.table.token[run.table.generated]]
    assert steps.layout.yaxis.title.text == "entropy (nats)"
    light = go.layout.Template(TEMPLATE).to_plotly_json()
    for fig in (steps, sampling.step_distribution(run, first)):
        assert fig.layout.template.to_plotly_json() == light and fig.layout.title.font.size == 13
    assert [t.line.color for t in steps.data[:2]] == ["#1f77b4", "#2ca02c"]  # the two entropies stay apart


def test_a_generated_run_has_the_prediction_after_its_last_token():
    """generate stores the next-token prediction as analyze does; the dashboard's chart shows it
    when no token is selected. Expected values: one plain forward over every token."""
    model = tiny_model("llama")
    run = model.generate("Once upon", sampler=S.Greedy(), max_new_tokens=4, seed=0, progress=False)
    assert run.meta["stop_reason"] == "length"
    with torch.no_grad():
        probs = torch.softmax(model.hf(torch.tensor([run.table.token_id.tolist()])).logits[0, -1].double(), -1)
    top = torch.topk(probs, 5)
    prediction = run.meta["next_token"]
    assert prediction["topk_ids"] == top.indices.tolist()
    np.testing.assert_allclose(prediction["topk_probs"], top.values.numpy(), rtol=1e-4)
    assert prediction["topk_tokens"] == [model.tokenizer.decode([i]) for i in top.indices.tolist()]
    chart = next_token_chart(run, None)
    np.testing.assert_allclose(chart.data[0].x, top.values.numpy(), rtol=1e-4)
    assert chart.layout.title.text == "Prediction after the last token" and not chart.layout.annotations
