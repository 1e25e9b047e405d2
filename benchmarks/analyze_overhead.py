"""Time of `analyze` (uncertainty signals) vs a plain Hugging Face forward of the same
model on the same tokens, on CPU, as a ratio measured in one run.

    .venv/bin/python benchmarks/analyze_overhead.py [--lengths 128 512 2048] [--repeats 5]
        [--out benchmarks/results/analyze-overhead-cpu.json]

The plain forward is `hf(input_ids).logits` (what a user would write: it computes the full
[T, V] logits and nothing else). `analyze` tokenizes with offsets, runs the backbone,
computes logits chunk by chunk and every uncertainty statistic, and builds the table.
Both are run alternately, one of each per repeat after a warm-up, so drift in the machine's
speed affects both alike; each time is the median over `repeats`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import workbench as wb

PARAGRAPH = (
    "The history of the city begins with a small settlement on the river, where traders "
    "met to exchange salt, grain and cloth. Over the centuries the market grew into a town, "
    "the town into a city, and the city into the capital of a kingdom. "
)


def text_of_length(tokenizer, n_tokens: int) -> str:
    """A prefix of repeated prose that tokenizes to exactly n_tokens."""
    text = PARAGRAPH * (n_tokens // 20 + 2)
    encoding = tokenizer(text, return_offsets_mapping=True)
    cut = text[: encoding["offset_mapping"][n_tokens - 1][1]]
    assert len(tokenizer(cut)["input_ids"]) == n_tokens
    return cut


def interleaved_medians(functions, repeats: int) -> list[float]:
    """Median seconds of each function, calling them in turn `repeats` times."""
    for function in functions:  # warm-up
        function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, record in zip(functions, times):
            start = time.perf_counter()
            function()
            record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "analyze-overhead-cpu.json")
    args = parser.parse_args()

    model = wb.load()
    results = []
    for n in args.lengths:
        text = text_of_length(model.tokenizer, n)
        ids = torch.tensor([model.tokenizer(text)["input_ids"]])

        def plain():
            with torch.inference_mode():
                return model.hf(ids).logits

        forward, analyze = interleaved_medians([plain, lambda: model.analyze(text)], args.repeats)
        results.append({"tokens": n, "plain_forward_s": round(forward, 4), "analyze_s": round(analyze, 4),
                        "ratio": round(analyze / forward, 3)})
        print(f"{n:>6} tokens: forward {forward:.3f} s, analyze {analyze:.3f} s, ratio {analyze / forward:.2f}")

    report = {
        "benchmark": "analyze (uncertainty) vs plain HF forward",
        "model": model.name,
        "device": f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "target_ratio": 1.3,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
