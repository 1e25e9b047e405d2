"""attention_stats on a GPU: the Triton pass 1 and pass 1 + 2 against a flash-attention forward
at the same shape, and where eager attention (the materialized softmax) runs out of memory.

    python benchmarks/attention_bench.py [--lengths 8192 32768] [--runs 20] [--out PATH | --results-dir DIR]
    python benchmarks/attention_bench.py --quick     # CPU smoke run: tiny shapes, the reference only

Shape (issue 5): batch 1, Hq = 32 query heads sharing Hkv = 8 key/value heads, d = 128, causal,
bf16 inputs. Each implementation is timed by `workbench.bench.timing.timed`: CUDA events, median over
`runs` (>= 20) calls after warm-up (the first call also runs Triton's autotuning), and the CUDA
memory one call allocates beyond its inputs. Rows per length:
    pass1         `query_pass`: lse, entropy, sink mass (sink = 1); no top-k, no key subset
    pass1+2       `attention_stats`: pass 1, then pass 2 (received attention)
    pass1+2 top8  the same with top_k = 8 and a key subset (information; no target)
    reference     (--quick only) the blocked PyTorch reference, in place of the Triton rows
    sdpa_flash    F.scaled_dot_product_attention(q, k, v, is_causal=True) on the flash backend,
                  GQA native (enable_gqa) or, where the backend refuses it, K/V expanded beforehand
    flash_attn    flash_attn_func(q, k, v, causal=True), when the package is installed
    eager         softmax(q k^T / sqrt(d), causal) v with [B, Hq, T, T] scores, softmax in fp32 as
                  in transformers' eager attention; its estimated peak memory, or the OOM it raises
Ratios against the fastest flash forward: pass1 <= 2x and pass1+2 <= 3x are the targets. The
matmul roofline (one QK^T for pass 1, two for pass 1 + 2, QK^T and PV for flash; causal halves
each) is given for context: with d = 128 the exponentials cost about as much as the matmuls.
A one-shot check against the PyTorch reference gives the max abs error of lse, entropy, received.

For the `workbench bench` harness: `run(lengths, runs=..., quick=...) -> dict` is the whole
benchmark as a JSON-ready report; `write(report, out)` saves it.
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

from workbench.bench.timing import MIN_RUNS, device_info, environment, roofline_ms, timed
from workbench.kernels.attention_stats import attention_stats_reference

SHAPE = dict(B=1, Hq=32, Hkv=8, d=128, causal=True)
QUICK_SHAPE = dict(B=1, Hq=4, Hkv=2, d=32, causal=True)
LENGTHS, QUICK_LENGTHS = (8192, 32768), (128, 256)
TARGETS = {"pass1": 2.0, "pass1+2": 3.0}  # at most this many flash-attention forwards
RESULTS = Path(__file__).parent / "results"


def make_inputs(shape: dict, length: int, dtype: torch.dtype, device: torch.device, seed: int = 0) -> dict:
    """q [B, Hq, T, d], k and v [B, Hkv, T, d], a key subset [T] (every 97th key)."""
    generator = torch.Generator(device=device).manual_seed(seed)

    def randn(heads):
        return torch.randn(shape["B"], heads, length, shape["d"], generator=generator, device=device).to(dtype)

    subset = torch.zeros(length, dtype=torch.bool, device=device)
    subset[::97] = True
    return dict(q=randn(shape["Hq"]), k=randn(shape["Hkv"]), v=randn(shape["Hkv"]), subset=subset,
                causal=shape["causal"])


def eager_attention(i: dict) -> torch.Tensor:
    """What transformers' eager attention does: K/V repeated per group, [B, Hq, T, T] scores,
    fp32 softmax cast back, times V."""
    q, k, v = i["q"], i["k"], i["v"]
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5  # [B, Hq, T, T]
    if i["causal"]:
        t = q.shape[2]
        scores.masked_fill_(torch.ones(t, t, dtype=torch.bool, device=q.device).triu_(1), float("-inf"))
    return torch.softmax(scores, -1, dtype=torch.float32).to(q.dtype) @ v


def eager_bytes(shape: dict, length: int, dtype: torch.dtype) -> int:
    """Peak of `eager_attention` beyond its inputs: scores (dtype), fp32 probabilities and their
    dtype copy alive together, the bool causal mask, the repeated K and V."""
    scores = shape["B"] * shape["Hq"] * length * length
    repeated_kv = 2 * shape["B"] * shape["Hq"] * length * shape["d"] * dtype.itemsize
    return scores * (2 * dtype.itemsize + 4) + length * length + repeated_kv


def sdpa_flash(i: dict):
    """The timed SDPA flash forward, and how GQA was handled ("native" or "expanded")."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def native(x):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(x["q"], x["k"], x["v"], is_causal=x["causal"], enable_gqa=True)

    try:
        native(i)
        return native, "native"
    except RuntimeError:  # this backend refuses enable_gqa: expand K/V once, outside the timing
        group = i["q"].shape[1] // i["k"].shape[1]
        k, v = i["k"].repeat_interleave(group, 1), i["v"].repeat_interleave(group, 1)

        def expanded(x):
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(x["q"], k, v, is_causal=x["causal"])
        return expanded, "expanded"


def flash_attn_forward(i: dict):
    """flash_attn_func on [B, T, H, d] copies made once (None when flash_attn is not installed)."""
    try:
        from flash_attn import flash_attn_func
    except (ImportError, OSError):  # absent, or built against another CUDA
        return None
    q, k, v = (i[name].transpose(1, 2).contiguous() for name in ("q", "k", "v"))
    return lambda x: flash_attn_func(q, k, v, causal=x["causal"])


def matmul_flop(shape: dict, length: int, products: int) -> float:
    """FLOP of `products` [T, d] x [d, T]-sized matmuls per query head (causal: half of each)."""
    return products * 2 * shape["B"] * shape["Hq"] * length * length * shape["d"] * (0.5 if shape["causal"] else 1.0)


def triton_rows() -> dict:
    """The timed Triton calls, each taking the inputs of `make_inputs`."""
    from workbench.kernels.triton_attention_stats import attention_stats, query_pass

    return {"pass1": lambda x: query_pass(x["q"], x["k"], causal=x["causal"]),
            "pass1+2": lambda x: attention_stats(x["q"], x["k"], causal=x["causal"]),
            "pass1+2 top8": lambda x: attention_stats(x["q"], x["k"], causal=x["causal"], top_k=8,
                                                      key_subset=x["subset"])}


def max_errors(stats, expected) -> dict:
    return {name: (getattr(stats, name) - getattr(expected, name)).abs().nan_to_num(0.0).max().item()
            for name in ("lse", "entropy", "received")}


def bench_length(shape: dict, length: int, device: torch.device, info: dict, *, runs: int, quick: bool) -> dict:
    """One row: times (ms), peak memory (MiB), ratios to flash, roofline, errors (see the docstring)."""
    dtype = torch.float32 if quick else torch.bfloat16  # CPUs have no fast bf16 path
    i = make_inputs(shape, length, dtype, device)
    warmup = 1 if quick else 5
    row = dict(T=length, shape=shape, dtype=str(dtype).removeprefix("torch."), runs=runs,
               eager_estimate_gb=eager_bytes(shape, length, dtype) / 1e9)
    measured = {}
    if quick:  # the reference only: the Triton kernels need a GPU (or the interpreter, far too slow here)
        measured["reference"] = timed(lambda x: attention_stats_reference(x["q"], x["k"], causal=x["causal"]),
                                      i, device, runs, warmup)
    else:
        for name, fn in triton_rows().items():
            try:  # compile and autotune (which allocates its own buffers) before the memory measurement
                fn(i)
            except Exception:  # noqa: BLE001 - `timed` calls it again and records the error
                pass
            measured[name] = timed(fn, i, device, runs, warmup)
        if "out" in measured["pass1+2"]:
            expected = attention_stats_reference(i["q"], i["k"], causal=i["causal"])
            row["max_abs_err_vs_reference"] = max_errors(measured["pass1+2"]["out"], expected)
            del expected
    flash, row["sdpa_gqa"] = sdpa_flash(i)
    measured["sdpa_flash"] = timed(flash, i, device, runs, warmup)
    other = flash_attn_forward(i)
    if other is not None:
        measured["flash_attn"] = timed(other, i, device, runs, warmup)
    measured["eager"] = timed(eager_attention, i, device, runs, warmup)

    row["ms"] = {name: m.get("ms") for name, m in measured.items()}
    row["peak_mem_mb"] = {name: m.get("peak_mem_mb") for name, m in measured.items()}
    row["errors"] = {name: m["error"] for name, m in measured.items() if "error" in m}
    row["eager_oom"] = "OutOfMemoryError" in row["errors"].get("eager", "")
    flash_times = [row["ms"][name] for name in ("sdpa_flash", "flash_attn") if row["ms"].get(name)]
    row["flash_ms"] = min(flash_times) if flash_times else None
    row["ratio_to_flash"] = {name: row["ms"][name] / row["flash_ms"] for name in ("pass1", "pass1+2", "pass1+2 top8",
                                                                               "reference")
                             if row["ms"].get(name) and row["flash_ms"]}
    row["meets_target"] = {name: row["ratio_to_flash"][name] <= limit for name, limit in TARGETS.items()
                           if name in row["ratio_to_flash"]}
    products = {"pass1": 1, "pass1+2": 2, "flash": 2}  # QK^T; QK^T twice; QK^T and PV
    flop = {name: matmul_flop(shape, length, count) for name, count in products.items()}
    moved = sum(t.numel() * t.element_size() for t in (i["q"], i["k"]))
    row["roofline_ms"] = {name: roofline_ms((moved, f), info) for name, f in flop.items()}
    row["tflops"] = {name: flop[name if name != "sdpa_flash" else "flash"] / (row["ms"][name] * 1e9)
                     for name in ("pass1", "pass1+2", "sdpa_flash") if row["ms"].get(name)}
    return row


def run(lengths=None, *, runs: int = MIN_RUNS, quick: bool = False) -> dict:
    """The benchmark as a JSON-ready report: {"benchmark", `workbench.bench.timing.environment` ("device",
    "device_info", versions), "quick", "date", "targets", "results": [one row per length]}.
    quick: tiny shapes on the CPU, the reference only."""
    if runs < MIN_RUNS:
        raise ValueError(f"runs must be >= {MIN_RUNS} (medians over fewer calls are noise)")
    if not quick and not torch.cuda.is_available():
        raise RuntimeError("the attention benchmark needs a CUDA GPU; use --quick for the CPU smoke run")
    device = torch.device("cpu" if quick else "cuda")
    shape = QUICK_SHAPE if quick else SHAPE
    info = device_info(device)
    lengths = lengths or (QUICK_LENGTHS if quick else LENGTHS)
    rows = [bench_length(shape, length, device, info, runs=runs, quick=quick) for length in lengths]
    return dict(benchmark="attention_stats", **environment(device, ("triton", "flash_attn")), quick=quick,
                date=datetime.now(timezone.utc).isoformat(timespec="seconds"), targets=TARGETS, results=rows)


def write(report: dict, out: Path | None = None, results_dir: Path = RESULTS) -> Path:
    """Save the report to `out` (default: <results_dir>/attention_stats-<device>.json, results_dir
    benchmarks/results) and return the path."""
    out = out or results_dir / f"attention_stats-{report['device_info']['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return out


def summary(row: dict) -> str:
    def ms(name):
        value = row["ms"].get(name)
        return f"{name} {value:.3f} ms" if value else f"{name} {row['errors'].get(name, '-')[:40]}"

    ratios = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in row["ratio_to_flash"].items())
    parts = [ms(name) for name in row["ms"]]
    return f"T={row['T']}: " + "; ".join(parts) + (f" | vs flash: {ratios}" if ratios else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=None)
    parser.add_argument("--runs", type=int, default=MIN_RUNS)
    parser.add_argument("--quick", action="store_true", help="tiny shapes on the CPU, the reference only")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--results-dir", type=Path, default=RESULTS,
                        help="without --out: attention_stats-<device>.json here (default: benchmarks/results)")
    args = parser.parse_args()
    report = run(args.lengths, runs=args.runs, quick=args.quick)
    for row in report["results"]:
        print(summary(row))
    print(f"wrote {write(report, args.out, args.results_dir)}")


if __name__ == "__main__":
    main()
