"""The Triton kernels compile for an H100 (sm_90) on any machine: the interpreter runs
kernels as Python and accepts code the GPU compiler rejects (globals that are not
constexpr, loop-carried type changes, dot shapes). sm90.py compiles each kernel to a cubin
with Triton's bundled ptxas in a process without TRITON_INTERPRET; this checks that it
succeeds and the GPU-only properties that matter: the matmul loop uses wgmma with
software-pipelined loads, and nothing spills beyond a few registers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason="on a GPU machine test_gpu.py compiles and runs the kernels themselves")


@pytest.fixture(scope="module")
def compiled():
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # Triton 3.9's default, stated to silence its warning
    script = Path(__file__).with_name("sm90.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {row["name"]: row for row in json.loads(done.stdout)}


def test_row_kernels_compile_without_spills(compiled):
    for name in ("vocab_stats prefetch=True", "vocab_stats prefetch=False", "divergence", "linear_vocab_stats merge"):
        assert compiled[name]["STACK"] == 0, compiled[name]


def test_fused_lm_head_kernels_use_pipelined_wgmma(compiled):
    partial = compiled["linear_vocab_stats partial"]
    assert partial["wgmma"] and partial["pipelined"], partial
    assert partial["STACK"] <= 128, partial  # 128 x 128 fp32 tiles plus the statistics: a few spilled registers
    for name in ("linear_divergence js_pass=False", "linear_divergence js_pass=True"):
        assert compiled[name]["wgmma"] and compiled[name]["pipelined"] and compiled[name]["STACK"] <= 128, compiled[name]
    assert compiled["linear_divergence merge"]["STACK"] == 0


def test_attention_passes_pipeline_their_key_and_query_loads(compiled):
    """The flash-style loops overlap the next tile's load with this tile's wgmma (cp.async
    stages) and keep the running statistics in registers. A top-k list puts an insertion
    loop inside the key loop, and Triton pipelines innermost loops only: that variant is
    checked to compile without spills, not to pipeline."""
    for name in ("attention pass1 mask=0 top_k=0", "attention pass2 mask=0", "attention pass2 mask=1"):
        assert compiled[name]["wgmma"] and compiled[name]["pipelined"], compiled[name]
    assert compiled["attention pass1 mask=0 top_k=0"]["STACK"] == 0
    assert compiled["attention pass2 mask=0"]["STACK"] == 0
    assert compiled["attention pass1 mask=1 top_k=8"]["STACK"] == 0
    assert compiled["attention pass2 mask=1"]["STACK"] <= 64  # the mask tile costs a few spilled registers


def test_sampler_keeps_its_search_state_in_registers(compiled):
    for name in ("sample mass=True entropy=True", "sample mass=False entropy=False"):
        assert compiled[name]["STACK"] == 0, compiled[name]
