"""Compile the Triton kernels for an H100 (sm_90) without a GPU, to a cubin with Triton's
bundled ptxas, and report what the GPU compiler made of them (run as a script by
test_compile_sm90.py, in a process without TRITON_INTERPRET, where `triton.jit` builds
real JIT functions): one JSON object per kernel variant with its registers and spill
stack per thread and whether the matmul loop uses wgmma with pipelined (async) loads."""
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from workbench.kernels import (triton_attention_stats, triton_divergence, triton_linear_divergence,
                              triton_linear_vocab_stats, triton_sample, triton_vocab_stats)

ALIGNED = ("h_stride", "w_stride", "D", "row_stride", "p_stride", "q_stride", "split_cols", "hp_stride", "wp_stride",
           "hq_stride", "wq_stride", "DP", "DQ", "sqb", "sqh", "sqt", "skb", "skh", "skt", "smb", "smh",
           "smq")  # as the launcher specializes them (a multiple of 16)


def compile_sm90(kernel, signature: dict, constants: dict, num_warps: int, num_stages: int = 3):
    """Compile `kernel` (jitted or autotuned) for sm_90 with 16-aligned pointers and strides.
    `constants` holds the constexprs and any argument the launcher specializes to a value
    (a unit stride: Triton compiles arguments equal to 1 as constants)."""
    function = kernel
    while not isinstance(function, triton.runtime.JITFunction):
        function = function.fn
    kinds = dict(signature, **{name: "constexpr" for name in constants})
    names = function.arg_names  # attributes are indexed by argument position
    signature = {name: kinds[name] for name in names}
    attrs = {(names.index(name),): [["tt.divisibility", 16]] for name, kind in signature.items()
             if kind.startswith("*") or name in ALIGNED}
    return triton.compile(ASTSource(function, signature, constants, attrs), target=GPUTarget("cuda", 90, 32),
                          options=dict(num_warps=num_warps, num_stages=num_stages))


def resources(compiled) -> dict:
    """Registers and stack (spill) bytes per thread, from cuobjdump on the cubin."""
    tool = Path(triton.backends.nvidia.__file__).parent / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        usage = subprocess.run([str(tool), "--dump-resource-usage", cubin.name], capture_output=True, text=True).stdout
    return {key: int(value) for key, value in re.findall(r"(REG|STACK):(\d+)", usage)}


def report(name, compiled) -> dict:
    ttgir = compiled.asm["ttgir"]
    return dict(name=name, **resources(compiled), wgmma="ttng.warp_group_dot" in ttgir,
                pipelined="ttg.async_copy_global_to_local" in ttgir)


def main() -> None:
    results = []
    vocab = dict(logits_ptr="*bf16", row_stride="i32", targets_ptr="*i64", temperature="fp32", T="i32", V="i32",
                 lse_ptr="*fp32", entropy_ptr="*fp32", varentropy_ptr="*fp32", margin_ptr="*fp32",
                 logprob_ptr="*fp32", rank_ptr="*i64", topk_ids_ptr="*i64", topk_probs_ptr="*fp32")
    for prefetch in (True, False):
        compiled = compile_sm90(triton_vocab_stats._vocab_stats_kernel, vocab,
                                dict(K=5, KP=8, TOP_K=5, ROWS=1, BLOCK=4096, HAS_TARGETS=True, SCALED=True,
                                     IGNORE=-100, PREFETCH=prefetch), num_warps=8)
        results.append(report(f"vocab_stats prefetch={prefetch}", compiled))
    partial = dict(hidden_ptr="*bf16", h_stride="i32", weight_ptr="*bf16", w_stride="i32", bias_ptr="*bf16",
                   targets_ptr="*i64", T="i32", V="i32", D="i32", softcap="fp32", temperature="fp32", split_cols="i32",
                   m_ptr="*fp32", s0_ptr="*fp32", s1_ptr="*fp32", s2_ptr="*fp32", rank_ptr="*i32", values_ptr="*fp32",
                   ids_ptr="*i32", target_ptr="*fp32")
    compiled = compile_sm90(triton_linear_vocab_stats._partial_kernel, partial,
                            dict(K=5, KP=8, BLOCK_T=128, BLOCK_V=128, BLOCK_K=64, HAS_TARGETS=True, HAS_BIAS=True,
                                 SOFTCAP=True, SCALED=False, DOT_FP32=False, PRECISION="tf32", IGNORE=-100), num_warps=8)
    results.append(report("linear_vocab_stats partial", compiled))
    merge = dict(m_ptr="*fp32", s0_ptr="*fp32", s1_ptr="*fp32", s2_ptr="*fp32", rank_ptr="*i32", values_ptr="*fp32",
                 ids_ptr="*i32", target_ptr="*fp32", targets_ptr="*i64", T="i32", S="i32", lse_ptr="*fp32",
                 entropy_ptr="*fp32", varentropy_ptr="*fp32", margin_ptr="*fp32", logprob_ptr="*fp32",
                 out_rank_ptr="*i64", topk_ids_ptr="*i64", topk_probs_ptr="*fp32")
    compiled = compile_sm90(triton_linear_vocab_stats._merge_kernel, merge,
                            dict(K=5, KP=8, TOP_K=5, ROWS=16, HAS_TARGETS=True, IGNORE=-100), num_warps=4)
    results.append(report("linear_vocab_stats merge", compiled))
    pair = dict(p_ptr="*bf16", p_stride="i32", q_ptr="*bf16", q_stride="i32", targets_ptr="*i64", beta="fp32",
                T="i32", V="i32", kl_pq_ptr="*fp32", kl_qp_ptr="*fp32", js_ptr="*fp32", score_ptr="*fp32",
                overlap_ptr="*fp32")
    compiled = compile_sm90(triton_divergence._divergence_kernel, pair,
                            dict(ROWS=1, BLOCK=4096, HAS_TARGETS=True, JS=True, OVERLAP=True, IGNORE=-100, LOG2=0.6931471805599453,
                                 PREFETCH=True), num_warps=8)
    results.append(report("divergence", compiled))
    two_heads = dict(hp_ptr="*bf16", hp_stride="i32", wp_ptr="*bf16", wp_stride="i32", bp_ptr="*bf16", hq_ptr="*bf16",
                     hq_stride="i32", wq_ptr="*bf16", wq_stride="i32", bq_ptr="*bf16", targets_ptr="*i64",
                     lse_p_ptr="*fp32", lse_q_ptr="*fp32", part_ptr="*fp32", contrast_y_ptr="*fp32", T="i32", V="i32",
                     DP="i32", DQ="i32", softcap_p="fp32", softcap_q="fp32", beta="fp32", split_cols="i32", S="i32")
    for js_pass in (False, True):
        compiled = compile_sm90(triton_linear_divergence._pair_kernel, two_heads,
                                dict(BLOCK_T=64, BLOCK_V=64, BLOCK_K=64, HAS_BIAS_P=False, HAS_BIAS_Q=True,
                                     SOFTCAP_P=False, SOFTCAP_Q=False, HAS_TARGETS=True, JS_PASS=js_pass, JS=True, OVERLAP=True,
                                     DOT_FP32=False, PRECISION_P="tf32", PRECISION_Q="tf32", IGNORE=-100,
                                     LOG2=0.6931471805599453), num_warps=4)
        results.append(report(f"linear_divergence js_pass={js_pass}", compiled))
    pair_merge = dict(part_ptr="*fp32", contrast_y_ptr="*fp32", targets_ptr="*i64", T="i32", S="i32",
                      kl_pq_ptr="*fp32", kl_qp_ptr="*fp32", score_ptr="*fp32", lse_p_ptr="*fp32", lse_q_ptr="*fp32")
    compiled = compile_sm90(triton_linear_divergence._pair_merge_kernel, pair_merge,
                            dict(ROWS=64, HAS_TARGETS=True, IGNORE=-100), num_warps=2)
    results.append(report("linear_divergence merge", compiled))
    results += attention_kernels() + sample_kernels()
    json.dump(results, sys.stdout)


def attention_kernels() -> list[dict]:
    """Both attention passes at the benchmark's shape (bf16, d = 128, causal, GQA) with the
    largest tiles of their autotune lists, with and without a boolean mask and top-k keys."""
    shared = dict(t_q="i32", t_k="i32", offset="i32", group="i32")
    strides = {name: "i32" for name in ("sqb", "sqh", "sqt", "skb", "skh", "skt", "smb", "smh", "smq")}
    flags = dict(HEAD_DIM=128, CAUSAL=True, DOT="native", BLOCK_D=128, BLOCK_M=128, sqd=1, skd=1, smk=1)
    results = []
    for mask_kind, top_k in ((0, 0), (1, 8)):
        pass1 = dict(q_ptr="*bf16", k_ptr="*bf16", mask_ptr="*u8", subset_ptr="*u8", sink_logit_ptr="*fp32",
                     lse_ptr="*fp32", entropy_ptr="*fp32", sink_ptr="*fp32", subset_out_ptr="*fp32",
                     top_id_ptr="*i64", top_p_ptr="*fp32", **shared, sink="i32", qk_scale2="fp32",
                     mask_floor="fp32", **strides)
        compiled = compile_sm90(triton_attention_stats._pass1_kernel, pass1,
                                dict(flags, MASK_KIND=mask_kind, HAS_SUBSET=top_k > 0, HAS_SINK_LOGIT=top_k > 0,
                                     TOPK=top_k, TOPK_PAD=max(top_k, 1), BLOCK_N=64), num_warps=8)
        results.append(report(f"attention pass1 mask={mask_kind} top_k={top_k}", compiled))
        pass2 = dict(q_ptr="*bf16", k_ptr="*bf16", mask_ptr="*u8", lse_ptr="*fp32", received_ptr="*fp32",
                     **shared, qk_scale2="fp32", mask_floor="fp32", **strides)
        compiled = compile_sm90(triton_attention_stats._pass2_kernel, pass2,
                                dict(flags, MASK_KIND=mask_kind, BLOCK_N=128), num_warps=8)
        results.append(report(f"attention pass2 mask={mask_kind}", compiled))
    return results


def sample_kernels() -> list[dict]:
    """The sampler at its GPU launch (one row per program, 1024-logit tiles, 8 warps), every
    rule on (top-p and top-H need the mass and entropy sums) and the plain temperature case."""
    rows, block, cap = triton_sample.tiles(128, 151936, on_gpu=True)
    signature = dict(logits_ptr="*fp32", row_stride="i32", B="i32", V="i32", temperature_ptr="*fp32",
                     top_k_ptr="*i32", top_p_ptr="*fp32", min_p_ptr="*fp32", top_h_ptr="*fp32", seed_ptr="*i64",
                     band_ptr="*fp32", ids_ptr="*i64", kept_ptr="*i64", entropy_ptr="*fp32",
                     kept_entropy_ptr="*fp32", prob_ptr="*fp32")
    results = []
    for use_mass, use_entropy in ((True, True), (False, False)):
        compiled = compile_sm90(triton_sample._sample_kernel, signature,
                                dict(R=rows, BLOCK=block, NTH=4, CAP=cap, ITERS=151936 .bit_length() + 1,
                                     USE_MASS=use_mass, USE_ENTROPY=use_entropy), num_warps=8)
        results.append(report(f"sample mass={use_mass} entropy={use_entropy}", compiled))
    return results


if __name__ == "__main__":
    main()
