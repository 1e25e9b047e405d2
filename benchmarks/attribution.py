"""Attribution benchmark (a measurement, not a test): the embedded SmolLM2-135M, fp32, CPU.

1. A 23-token prompt and a 15-token continuation (38 tokens): each method's time as a
   multiple of one plain forward, and as a fraction of the floor of a gradient method, one
   forward plus one input-only backward for the batch of 15 targets (measured with plain torch:
   `torch.autograd.grad(..., is_grads_batched=True)`, weights frozen). For reference also the
   unbatched form, one forward plus 15 backwards.
2. A 2,000-token prompt with 20 targets: saliency and integrated gradients (8 steps), each in
   its own process, with its peak resident memory (target: at most 8 GB).

    python benchmarks/attribution.py [--out benchmarks/results/attribution-cpu.json] [--skip-long]

Inseq runs separately (benchmarks/attribution_inseq.py, in its own environment); then
`--compare-inseq` adds its times and the largest difference of its values from ours (saliency
and input x gradient, after scaling ours by p(y): Inseq attributes p(y)) to the results.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

PROMPT_TOKENS, CONTINUATION_TOKENS = 23, 15
PROMPT = ("When my flight landed in Thailand, I converted my currency and took a taxi to the hotel in the capital "
          "city of")
CONTINUATION = " Bangkok, where I stayed for a week before I went to the beach."
METHODS = {"saliency": {}, "input_x_gradient": {}, "integrated_gradients": {"steps": 32},
           "occlusion": {"level": "token"}, "reagent": {}}
REPEATS = 1  # the median of more runs where the machine is quiet; 1 on a shared one


def timed(work, repeats: int = REPEATS) -> float:
    """Median wall time of `work()` over `repeats` runs, after one warm-up."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def short_case(model) -> dict:
    prompt_ids = model.tokenizer(PROMPT)["input_ids"][:PROMPT_TOKENS]
    continuation_ids = model.tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"][:CONTINUATION_TOKENS]
    prompt = model.tokenizer.decode(prompt_ids)
    continuation = model.tokenizer.decode(continuation_ids)
    ids = torch.tensor([prompt_ids + continuation_ids])
    n = ids.shape[1]
    positions = torch.arange(len(prompt_ids), n)
    hf = model.hf

    with torch.no_grad():
        forward = timed(lambda: hf(input_ids=ids))
    for p in hf.parameters():
        p.requires_grad_(False)

    def floor(batched: bool):
        embeds = hf.get_input_embeddings()(ids).detach().requires_grad_(True)
        logprobs = hf(inputs_embeds=embeds).logits[0, positions - 1].log_softmax(-1)
        values = logprobs.gather(-1, ids[0, positions][:, None])[:, 0]
        if batched:
            torch.autograd.grad(values, embeds, grad_outputs=torch.eye(len(values)), is_grads_batched=True)
        else:
            for k in range(len(values)):
                torch.autograd.grad(values[k], embeds, retain_graph=k < len(values) - 1)

    floor_batched = timed(lambda: floor(True))
    floor_unbatched = timed(lambda: floor(False))
    for p in hf.parameters():
        p.requires_grad_(True)
    methods = {}
    for method, options in METHODS.items():
        seconds = timed(lambda: model.attribute(prompt, continuation=continuation, method=method, progress=False,
                                                **options), repeats=1 if method == "integrated_gradients" else REPEATS)
        methods[method] = {"seconds": seconds, "x_forward": seconds / forward, "x_floor": seconds / floor_batched,
                           **options}
        print(f"{method:>22}: {seconds:7.3f} s = {seconds / forward:6.1f} forwards = {seconds / floor_batched:5.2f} "
              "floors", file=sys.stderr)
    return {"n_prompt": len(prompt_ids), "n_continuation": len(continuation_ids), "forward_s": forward,
            "floor_s": floor_batched, "floor_unbatched_s": floor_unbatched, "methods": methods}


def long_case_child(method: str, n_tokens: int, n_targets: int) -> None:
    """Run in a child process: attribute n_targets of an n_tokens text; print JSON."""
    import workbench as wb

    model = wb.load()
    words = (PROMPT + CONTINUATION + " ").split()
    text = " ".join(words[i % len(words)] for i in range(n_tokens))
    ids = model.tokenizer(text)["input_ids"][:n_tokens]
    text = model.tokenizer.decode(ids)
    n = len(model.tokenizer(text)["input_ids"])
    start = time.perf_counter()
    run = model.attribute(text, method=method, targets=list(range(n - n_targets, n)), steps=8, progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"method": method, "n_tokens": n, "n_targets": len(run.arrays["attr_targets"]),
                      "seconds": seconds, "peak_rss_gb": peak / 1e9,
                      **({"steps": 8} if method == "integrated_gradients" else {})}))


def long_case() -> list[dict]:
    results = []
    for method in ("saliency", "integrated_gradients"):
        child = subprocess.run([sys.executable, __file__, "--child", method], capture_output=True, text=True,
                               timeout=3600)
        if child.returncode != 0:
            results.append({"method": method, "error": child.stderr.strip().splitlines()[-1]})
            continue
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"long {method}: {results[-1]}", file=sys.stderr)
    return results


def compare_inseq(out: Path) -> None:
    """Add Inseq's times (benchmarks/attribution_inseq.py's JSON) and value differences to `out`."""
    import numpy as np

    import workbench as wb

    inseq = json.loads((out.parent / "attribution-inseq-cpu.json").read_text())
    record = json.loads(out.read_text())
    model = wb.load()
    prompt_ids = model.tokenizer(PROMPT)["input_ids"][:PROMPT_TOKENS]
    continuation_ids = model.tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"][:CONTINUATION_TOKENS]
    prompt, continuation = model.tokenizer.decode(prompt_ids), model.tokenizer.decode(continuation_ids)
    comparison = {"inseq": inseq["inseq"]}
    for method, theirs in inseq["methods"].items():
        ours = record["short"]["methods"][method]["seconds"]
        entry = {"inseq_seconds": theirs["seconds"], "ours_seconds": ours, "speedup": theirs["seconds"] / ours}
        if method != "integrated_gradients":
            run = model.attribute(prompt, continuation=continuation, method=method, progress=False)
            values = run.arrays[f"attr_{method}"]  # [15, 38]
            probability = np.exp(run.table["target_score"].to_numpy(dtype=float, na_value=np.nan)[
                run.arrays["attr_targets"]])[:, None]
            their_values = np.array(theirs["values"], dtype=float)[:, :values.shape[1]]
            both = ~np.isnan(values) & ~np.isnan(their_values)
            entry["max_abs_difference"] = float(np.abs(values * probability - their_values)[both].max())
            entry["compared"] = "ours x p(y) against Inseq's attribution of p(y), every source before each target"
        comparison[method] = entry
        print(f"{method}: Inseq {theirs['seconds']:.2f} s, ours {ours:.2f} s: {entry['speedup']:.1f}x "
              f"{entry.get('max_abs_difference', '')}", file=sys.stderr)
    record["inseq"] = comparison
    out.write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "attribution-cpu.json")
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--child", default=None)
    parser.add_argument("--compare-inseq", action="store_true")
    args = parser.parse_args()
    if args.compare_inseq:
        compare_inseq(args.out)
        return
    if args.child:
        long_case_child(args.child, 2000, 20)
        return
    import workbench as wb

    torch.manual_seed(0)
    model = wb.load()
    record = {"model": model.name, "dtype": "float32", "device": "cpu", "cpu": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "short": short_case(model)}
    if not args.skip_long:
        record["long"] = long_case()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
