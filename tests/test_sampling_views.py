"""Sampling views: the kept sets drawn from a step's stored top 50 agree with the sampler
that actually ran (recomputed from the full logits), and the figures name what they show."""
import numpy as np
import torch

import workbench.samplers as S
from workbench.testing import tiny_model
from workbench.widgets import sampling
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


def test_figures_and_panels():
    run = tiny_model("gpt2").generate("Hi", sampler=S.MinP(0.1), max_new_tokens=5, seed=0, progress=False)
    names = [p.name for p in panels_for(run)]
    assert "sampling.distribution" in names and "sampling.steps" in names
    first = int(run.table.position[run.table.generated].iloc[0])
    dist = sampling.step_distribution(run, first)
    assert f"position {first}" in dist.layout.title.text
    assert [t.name.split(":")[0] for t in dist.data[1:]] == [r[0] for r in sampling.RULES]
    assert not any(t.startswith("#") for t in dist.layout.xaxis.ticktext)  # every token has its text
    steps = sampling.generation_steps(run, first)
    np.testing.assert_array_equal(steps.data[2].y, run.table.kept[run.table.generated].to_numpy(float))
    analyzed = tiny_model("gpt2").analyze("no generation here")
    assert "sampling.distribution" not in [p.name for p in panels_for(analyzed)]
