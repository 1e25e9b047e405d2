"""Sampling benchmark: the Triton `sample` kernel against a sort-based PyTorch sampler, the
PyTorch reference, and FlashInfer's sampling kernels when FlashInfer is installed.

    python benchmarks/sample_bench.py             # GPU: V = 151936, fp32, B in 1 32 128 512
    python benchmarks/sample_bench.py --quick     # tiny sizes: a smoke test (on CPU, Triton interpreted)
    python benchmarks/sample_bench.py --sweep     # also time launch configurations at B = 128

Writes benchmarks/results/sample-<device>.json (or --out FILE, or sample-<device>.json in
--results-dir DIR). For a harness: `run(quick=False, *, batches=None, vocab=None, repeats=20,
warmup=5, sweep=False) -> dict` returns the same JSON-ready dict without writing anything.

Logits: per row, a Gaussian body (std 1.5) plus 20 tokens boosted by U(4, 10), which gives
LLM-like next-token distributions (a few likely tokens over a long tail); seed 0.
Timing: `workbench.bench.timing.timed`, CUDA events around each call (time.perf_counter on CPU), the
median of `repeats` calls after `warmup` calls; every implementation starts from the same fp32
logits and ends with the drawn ids (FlashInfer's probability-based kernels include the softmax
they need). Each (case, B) also records, from the timed calls' outputs, the fraction of rows
where the Triton kernel's kept-set size equals the reference's, and the mean kept-set size:
the timed kernel computes the right set.
One read of the logits (B V 4 bytes) per call is the floor: `triton_read_GBps` is that
volume over the Triton time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import torch

from workbench.bench import timing

CASES = {
    "temperature 0.8": dict(temperature=0.8),
    "top-k 50": dict(top_k=50),
    "top-p 0.9": dict(top_p=0.9),
    "min-p 0.1": dict(min_p=0.1),
    "top-H 0.4": dict(top_h=0.4),
    "T 0.7 + top-k 50 + top-p 0.9": dict(temperature=0.7, top_k=50, top_p=0.9),
}
FULL = dict(batches=(1, 32, 128, 512), vocab=151936)
QUICK = dict(batches=(1, 4), vocab=1000, repeats=3, warmup=1)
# launch configurations timed by --sweep at B = 128, on the cases that exercise the search most
SWEEP = [dict(block=b, thresholds=n, num_warps=w) for b in (512, 1024, 2048) for n in (4, 8) for w in (4, 8)]
SWEEP_CASES = ("top-p 0.9", "top-H 0.4")
RESULTS = Path(__file__).parent / "results"


def llm_like_logits(batch: int, vocab: int, device) -> torch.Tensor:
    """[B, V] fp32: Gaussian body (std 1.5) plus 20 boosted tokens per row (seed 0)."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, vocab, generator=gen) * 1.5
    boosted = torch.randint(vocab, (batch, 20), generator=gen)
    logits.scatter_add_(1, boosted, torch.rand(batch, 20, generator=gen) * 6 + 4)
    return logits.to(device)


def torch_sort_sample(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, top_h=0.0, generator=None):
    """The usual eager PyTorch sampler, with the kernel's outputs: softmax, one full sort,
    cumulative sums in sorted order for top-p and top-H, masks, torch.multinomial.
    Returns (ids, kept size, entropy, kept entropy)."""
    p = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_p, order = p.sort(dim=-1, descending=True)  # [B, V]
    plogp = torch.where(sorted_p > 0, sorted_p * sorted_p.clamp_min(1e-45).log(), 0.0)
    entropy = -plogp.sum(-1)
    keep = torch.ones_like(sorted_p, dtype=torch.bool)
    if top_k > 0:
        keep[:, top_k:] = False
    if top_p < 1:
        keep &= sorted_p.cumsum(-1) - sorted_p < top_p
    if min_p > 0:
        keep &= sorted_p >= min_p * sorted_p[:, :1]
    if top_h > 0:
        mass = sorted_p.cumsum(-1)
        keep &= mass.log() - plogp.cumsum(-1) / mass <= top_h * entropy[:, None] + 1e-6
    keep[:, 0] = True
    q = torch.where(keep, sorted_p, 0.0)
    q = q / q.sum(-1, keepdim=True)
    drawn = torch.multinomial(q, 1, generator=generator)  # [B, 1] positions in sorted order
    kept_entropy = -torch.where(q > 0, q * q.clamp_min(1e-45).log(), 0.0).sum(-1)
    return order.gather(-1, drawn)[:, 0], keep.sum(-1), entropy, kept_entropy


def flashinfer_sampler(params):
    """(name, call) of the FlashInfer kernel for these parameters, or None (not installed, or
    no such kernel: top-H, min-p combined with other rules)."""
    try:
        import flashinfer.sampling as fs
    except Exception:  # not installed, or built for another CUDA/torch
        return None
    t, k, p, m, h = (params.get(name, default) for name, default in
                     (("temperature", 1.0), ("top_k", 0), ("top_p", 1.0), ("min_p", 0.0), ("top_h", 0.0)))
    if h > 0:
        return None
    softmax = getattr(fs, "softmax", None)

    def probs(logits):
        return softmax(logits, temperature=t) if softmax is not None else torch.softmax(logits / t, -1)

    if k > 0 and p < 1 and m == 0:
        return "top_k_top_p_sampling_from_logits", lambda z, gen: fs.top_k_top_p_sampling_from_logits(
            z / t, k, p, generator=gen)
    if k > 0 and p == 1 and m == 0:
        return "softmax + top_k_sampling_from_probs", lambda z, gen: fs.top_k_sampling_from_probs(probs(z), k, generator=gen)
    if p < 1 and k == 0 and m == 0:
        return "softmax + top_p_sampling_from_probs", lambda z, gen: fs.top_p_sampling_from_probs(probs(z), p, generator=gen)
    if m > 0 and k == 0 and p == 1:
        return "softmax + min_p_sampling_from_probs", lambda z, gen: fs.min_p_sampling_from_probs(probs(z), m, generator=gen)
    if k == 0 and p == 1 and m == 0:
        return "softmax + sampling_from_probs", lambda z, gen: fs.sampling_from_probs(probs(z), generator=gen)
    return None


def timed(fn, device: torch.device, repeats: int, warmup: int) -> tuple:
    """(median ms, output) of the argument-free `fn` by `workbench.bench.timing.timed`, or ("error: ...",
    None) when it fails: a missing or incompatible implementation is recorded, not fatal."""
    result = timing.timed(lambda _: fn(), {}, device, repeats, warmup)
    if "error" in result:
        return f"error: {result['error']}", None
    return round(result["ms"], 4), result["out"]


def _triton_sample():
    """The Triton entry point; on CPU it needs TRITON_INTERPRET=1 before triton is imported."""
    if not torch.cuda.is_available() and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from workbench.kernels.triton_sample import sample
    return sample


def run(quick: bool = False, *, batches=None, vocab=None, repeats: int = 20, warmup: int = 5,
        sweep: bool = False) -> dict:
    """Time every implementation on every case and batch size; a JSON-ready dict."""
    with warnings.catch_warnings():
        # the interpreter's NumPy warns about the NaN and inf the kernel leaves in masked lanes
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="triton.runtime.interpreter")
        return _measure(quick, batches, vocab, repeats, warmup, sweep)


def _measure(quick, batches, vocab, repeats, warmup, sweep) -> dict:
    from workbench.kernels import sample_reference

    cuda = torch.cuda.is_available()
    if quick:
        repeats, warmup = QUICK["repeats"], QUICK["warmup"]
    batches, vocab = batches or (QUICK if quick else FULL)["batches"], vocab or (QUICK if quick else FULL)["vocab"]
    device = torch.device("cuda" if cuda else "cpu")
    triton_sample = _triton_sample()
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for batch in batches:
        logits = llm_like_logits(batch, vocab, device)
        for case, params in CASES.items():
            implementations = {
                "triton": lambda: triton_sample(logits, **params, generator=gen),
                "torch-sort": lambda: torch_sort_sample(logits, **params, generator=gen),
                "reference": lambda: sample_reference(logits, **params, generator=gen),
            }
            flashinfer = flashinfer_sampler(params) if cuda else None
            if flashinfer is not None:
                implementations["flashinfer"] = lambda: flashinfer[1](logits, gen)
            ms, out = {}, {}
            for name, fn in implementations.items():
                ms[name], out[name] = timed(fn, device, repeats, warmup)
            row = {"batch": batch, "case": case, "params": params, "ms": ms,
                   "flashinfer_call": flashinfer[0] if flashinfer else None}
            if out["triton"] is not None and out["reference"] is not None:
                row.update(kept_agreement=(out["triton"].kept == out["reference"].kept).float().mean().item(),
                           mean_kept=out["triton"].kept.float().mean().item())
            if isinstance(ms.get("triton"), float):
                row["triton_read_GBps"] = round(batch * vocab * 4 / (ms["triton"] * 1e-3) / 1e9, 1)
                for other in ("torch-sort", "flashinfer"):
                    if isinstance(ms.get(other), float):
                        row[f"speedup_vs_{other}"] = round(ms[other] / ms["triton"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "benchmark": "sample", **timing.environment(device, ("triton", "flashinfer")),
        "vocab": vocab, "dtype": "float32",
        "batches": list(batches), "repeats": repeats, "warmup": warmup,
        "logits": "N(0, 1.5^2) body plus 20 tokens per row boosted by U(4, 10); seed 0",
        "results": rows,
    }
    if sweep and cuda:
        result["sweep"] = launch_sweep(triton_sample, vocab, repeats, warmup)
    return result


def launch_sweep(triton_sample, vocab: int, repeats: int, warmup: int, batch: int = 128) -> list[dict]:
    """Triton time at B = 128 for each launch configuration in SWEEP, per case in SWEEP_CASES."""
    device = torch.device("cuda")
    logits = llm_like_logits(batch, vocab, device)
    gen = torch.Generator(device=device).manual_seed(0)
    out = []
    for config in SWEEP:
        for case in SWEEP_CASES:
            params = CASES[case]
            ms, _ = timed(lambda: triton_sample(logits, **params, generator=gen, rows=1, **config), device, repeats,
                          warmup)
            out.append({"batch": batch, "case": case, **config, "ms": ms})
            print(json.dumps(out[-1]), flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test (on CPU, Triton interpreted)")
    parser.add_argument("--sweep", action="store_true", help="also time launch configurations at B = 128")
    parser.add_argument("--batches", type=int, nargs="+")
    parser.add_argument("--vocab", type=int)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--results-dir", type=Path, default=RESULTS,
                        help="without --out: sample-<device>.json here (default: benchmarks/results)")
    args = parser.parse_args(argv)
    result = run(args.quick, batches=args.batches, vocab=args.vocab, repeats=args.repeats, warmup=args.warmup,
                 sweep=args.sweep)
    out = args.out or args.results_dir / f"sample-{result['device_info']['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
