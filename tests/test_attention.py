"""Attention capture on tiny models of every family: statistics equal those of the eager
attention probabilities (output_attentions), and capturing leaves the outputs unchanged."""
import pytest
import torch

from workbench.attention_capture import capturing_attention
from workbench.testing import FAMILIES, tiny_model


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_matches_eager_attention(family):
    model = tiny_model(family)
    ids = torch.randint(3, 300, (1, 33), generator=torch.Generator().manual_seed(1))
    captured = {}
    with torch.no_grad():
        before = model.hf(ids).logits
        with capturing_attention(model.hf, captured.__setitem__):
            during = model.hf(ids).logits
        implementation = model.hf.config._attn_implementation
        model.hf.set_attn_implementation("eager")
        attentions = model.hf(ids, output_attentions=True).attentions  # [B, H, T, T] per layer
        model.hf.set_attn_implementation(implementation)
    assert torch.equal(before, during), "capture changed the model's outputs"
    assert sorted(captured) == list(range(len(attentions)))
    for layer, a in enumerate(attentions):
        a = a.double()
        p_sink = 1 - a.sum(-1)  # GPT-OSS: mass on the learned sink; ~0 elsewhere
        entropy = -torch.where(a > 0, a * a.clamp_min(1e-300).log(), 0.0).sum(-1)
        entropy -= torch.where(p_sink > 1e-6, p_sink * p_sink.clamp_min(1e-300).log(), 0.0)
        stats = captured[layer]
        torch.testing.assert_close(stats.entropy.double(), entropy, rtol=0, atol=1e-5)
        torch.testing.assert_close(stats.received.double(), a.sum(2), rtol=0, atol=1e-5)
        torch.testing.assert_close(stats.sink_mass.double(), a[..., 0], rtol=0, atol=1e-5)
    assert model.hf.config._attn_implementation == implementation  # restored
