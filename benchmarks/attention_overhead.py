"""Cost of the attention signals on CPU, on the embedded model:

(a) time of `analyze(text, signals=["attention"])` vs a plain Hugging Face forward of the same
    tokens (target: at most 3x at 2048 tokens), as a ratio measured in one run;
(b) peak RSS of the command a user runs on a ~4096-token text (target: under 4 GB),
        workbench analyze --file long.txt --signals attention --format parquet --out a.parquet
    measured as the largest resident set of that child process (getrusage of a fresh parent
    that runs nothing else), next to what keeping eager attention maps would need
    (layers x heads x T x T float32).

    .venv/bin/python benchmarks/attention_overhead.py [--tokens 2048] [--rss-tokens 4096] [--repeats 5]
        [--out benchmarks/results/attention-overhead-cpu.json]

The text is CPython's own documentation (`pydoc_data.topics`, shipped with Python: offline),
cut to exactly the number of tokens asked for. The plain forward is `hf(input_ids).logits`;
`analyze` tokenizes with offsets, runs the backbone with every layer's Q, K streamed through
`kernels.attention_stats` (and, at most 512 tokens, exact rows), and builds the table. Both are
run alternately after a warm-up, and each time is the median over `repeats`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import workbench as wb

sys.path.insert(0, str(Path(__file__).parent))
from analyze_overhead import interleaved_medians  # noqa: E402  (same timing protocol)

GB = 1e9


def documentation_text(tokenizer, n_tokens: int) -> str:
    """A prefix of the CPython documentation topics that tokenizes to exactly n_tokens."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name].strip() for name in sorted(topics))
    encoding = tokenizer(text, return_offsets_mapping=True)
    if len(encoding["input_ids"]) < n_tokens:
        raise SystemExit(f"the documentation text has only {len(encoding['input_ids'])} tokens")
    cut = text[: encoding["offset_mapping"][n_tokens - 1][1]]
    assert len(tokenizer(cut)["input_ids"]) == n_tokens
    return cut


def peak_rss_of(command: list[str]) -> tuple[int, int]:
    """(exit status, peak RSS in bytes) of `command`, run by a fresh Python parent whose only
    child it is, so RUSAGE_CHILDREN's ru_maxrss (KiB on Linux) is that command's."""
    probe = ("import json, resource, subprocess, sys; "
             "status = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
             "print(json.dumps([status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]))")
    result = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True)
    status, rss = json.loads(result.stdout.strip().splitlines()[-1])
    return status, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048, help="length for the time ratio")
    parser.add_argument("--rss-tokens", type=int, default=4096, help="length for the peak-RSS run of the CLI")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "attention-overhead-cpu.json")
    args = parser.parse_args()

    model = wb.load()
    config = model.hf.config

    # (b) first, while this process has no other children
    with tempfile.TemporaryDirectory() as folder:
        long_text = Path(folder) / "long.txt"
        long_text.write_text(documentation_text(model.tokenizer, args.rss_tokens), encoding="utf-8")
        status, rss = peak_rss_of([sys.executable, "-m", "workbench", "analyze", "--file", str(long_text),
                                   "--signals", "attention", "--format", "parquet", "--out", str(Path(folder) / "a.parquet")])
    if status != 0:
        raise SystemExit(f"the CLI failed (exit status {status}) on {args.rss_tokens} tokens")
    eager_maps = config.num_hidden_layers * config.num_attention_heads * args.rss_tokens**2 * 4
    print(f"{args.rss_tokens:>6} tokens: CLI peak RSS {rss / GB:.2f} GB (eager attention maps alone: {eager_maps / GB:.1f} GB)")

    # (a)
    text = documentation_text(model.tokenizer, args.tokens)
    ids = torch.tensor([model.tokenizer(text)["input_ids"]])

    def plain():
        with torch.inference_mode():
            return model.hf(ids).logits

    forward, analyze = interleaved_medians([plain, lambda: model.analyze(text, signals=["attention"])], args.repeats)
    print(f"{args.tokens:>6} tokens: forward {forward:.3f} s, analyze (attention) {analyze:.3f} s, "
          f"ratio {analyze / forward:.2f}")

    report = {
        "benchmark": "attention signals: analyze vs plain HF forward, and peak RSS of the CLI",
        "model": model.name,
        "layers": config.num_hidden_layers,
        "heads": config.num_attention_heads,
        "kv_heads": config.num_key_value_heads,
        "device": f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "text": "CPython documentation topics (pydoc_data.topics)",
        "time": {"tokens": args.tokens, "plain_forward_s": round(forward, 4), "analyze_attention_s": round(analyze, 4),
                 "ratio": round(analyze / forward, 3), "target_ratio": 3.0},
        "memory": {"tokens": args.rss_tokens, "cli_peak_rss_gb": round(rss / GB, 3), "target_gb": 4.0,
                   "eager_attention_maps_gb": round(eager_maps / GB, 2)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
