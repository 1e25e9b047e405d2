"""What a GPU user runs, end to end on CUDA: `analyze` (vocabulary statistics and the logit
lens through the fused lm_head kernel, attention statistics through the two-pass kernel,
MoE routing), `generate` through the sampling kernel. The same fp32 weights on the CPU
(PyTorch references) are the independent answer. Skipped without CUDA.

Tolerances: the GPU runs the model in fp32 with TF32 off, so its hidden states match the
CPU's to about 1e-5; the kernels accumulate in fp32 in their own order. Entropies and
surprisals within 1e-3 absolute, ranks equal on at least 95% of tokens (random tiny models
have near-ties), attention statistics within 1e-3.
"""
import numpy as np
import pytest
import torch

import workbench as wb

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TEXT = "The quick brown fox jumps over the lazy dog. " * 12
SIGNALS = ["uncertainty", "logit_lens", "attention"]
CLOSE = dict(rtol=0, atol=1e-3)


@pytest.fixture(scope="module", autouse=True)
def no_tf32():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def both(name: str):
    return wb.load(name, dtype="float32", device="cpu"), wb.load(name, dtype="float32", device="cuda")


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_oss", "mixtral"])  # GQA, learned sinks + windows, MoE
def test_analyze_on_cuda_matches_the_cpu(family):
    cpu_model, gpu_model = both(f"tiny:{family}")
    cpu, gpu = (model.analyze(TEXT, signals=SIGNALS) for model in (cpu_model, gpu_model))
    assert gpu_model.device.type == "cuda" and gpu.table["token_id"].equals(cpu.table["token_id"])
    for column in ("entropy", "surprisal", "margin", "attn_entropy", "attn_sink_mass", "attn_received"):
        np.testing.assert_allclose(gpu.table[column].to_numpy(float), cpu.table[column].to_numpy(float),
                                   equal_nan=True, err_msg=column, **CLOSE)
    assert (gpu.table["rank"] == cpu.table["rank"]).mean() >= 0.95
    for name in ("lens_entropy", "lens_surprisal"):
        np.testing.assert_allclose(gpu.arrays[name], cpu.arrays[name], equal_nan=True, err_msg=name, **CLOSE)
    np.testing.assert_allclose(gpu.arrays["attn_entropy"], cpu.arrays["attn_entropy"], equal_nan=True, **CLOSE)


def test_routing_on_cuda_matches_the_cpu():
    cpu_model, gpu_model = both("workbench:tiny-moe")
    text = "Once upon a time there was a little robot."
    cpu, gpu = (model.analyze(text, signals=["routing"]) for model in (cpu_model, gpu_model))
    np.testing.assert_allclose(gpu.arrays["routing_weights"], cpu.arrays["routing_weights"], rtol=0, atol=1e-4)
    assert (gpu.arrays["routing_expert_ids"] == cpu.arrays["routing_expert_ids"]).mean() >= 0.99


def test_generate_on_cuda():
    cpu_model, gpu_model = both("tiny:llama")
    greedy = [model.generate("Once upon a time", sampler=wb.samplers.Greedy(), max_new_tokens=12, seed=0,
                             progress=False) for model in (cpu_model, gpu_model)]
    assert greedy[1].table["token_id"].tolist() == greedy[0].table["token_id"].tolist()
    sampler = wb.samplers.TopP(0.9, temperature=0.8)
    first, second = (gpu_model.generate("Once upon a time", sampler=sampler, max_new_tokens=12, seed=3,
                                        progress=False) for _ in range(2))
    assert first.table["token_id"].tolist() == second.table["token_id"].tolist()  # same seed, same draw
    steps = first.table[first.table["generated"]]
    assert len(steps) == 12 and (steps["kept"] >= 1).all()
    assert (steps["kept_entropy"] <= steps["entropy"] + 1e-5).all()  # truncation never adds entropy
