"""`model.compare` on the embedded pair against its floor, the two plain forwards, on CPU.

    .venv/bin/python benchmarks/compare.py [--lengths 512 2048] [--repeats 3] [--default-at 512]
        [--out benchmarks/results/compare-cpu.json]

The model is the embedded SmolLM2 (`DEFAULT_MODEL`), the reference its first-k-layers draft
(`DRAFT_MODEL`); the text is the repository's own documentation cut to `length` tokens. Per
length, interleaved and repeated (`--repeats` per length, medians; a first round at the first
length warms up):

- floor: each model's plain Hugging Face forward over the text, logits of every position
  included (lm_head of each side), one after the other;
- pair: `compare(text, reference=..., branches=0)`: both backbones, both heads in blocks of
  rows, every pair signal, the table;
- default: `compare(text, reference=...)` as a user calls it: the same plus greedy branches
  at the 8 most divergent positions (`branches=8`, `branch_tokens=6`; commitment layers are
  off by default), once at each length of `--default-at` (at 2048 tokens the branches' prefill
  alone takes many minutes on 2 shared cores).

Peak memory: before the timings (after a first call, which pages in the memory-mapped weights)
and after freed memory is handed back to the system
(`malloc_trim`), the resident set is sampled every 2 ms during one `pair` call; its growth over
the set before the call is set against T * V * 4 bytes (one side's fp32 [T, V] logits).
The load average is recorded: on a shared machine the ratios (side by side) mean more than
the seconds.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import torch

import workbench as wb
from workbench.model.embedded import DEFAULT_MODEL, DRAFT_MODEL

ROOT = Path(__file__).resolve().parent.parent


def source_text() -> str:
    """The repository's documentation as one text (README, docs/*.md)."""
    files = [ROOT / "docs" / "signals.md", ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    seen, parts = set(), []
    for path in files:
        if path.exists() and path not in seen:
            seen.add(path)
            parts.append(path.read_text())
    return "\n\n".join(parts)


def text_of(model, tokens: int) -> str:
    """A text that the model's tokenizer reads as `tokens` tokens (BOS included if it adds one)."""
    ids = model.tokenizer(source_text(), add_special_tokens=False)["input_ids"]
    if len(ids) < tokens:
        raise SystemExit(f"the documentation holds only {len(ids)} tokens, fewer than {tokens}")
    for cut in range(tokens, tokens - 20, -1):  # decoding then encoding may merge or split a token
        text = model.tokenizer.decode(ids[:cut])
        if len(model.tokenizer(text)["input_ids"]) == tokens:
            return text
    return model.tokenizer.decode(ids[:tokens])


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_growth(call) -> int:
    """Largest resident-set growth (bytes) while `call()` runs, sampled every 2 ms, after the
    memory freed so far is returned to the system (else a call reuses pages already resident)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    start, peak, done = resident_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes() - start)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        call()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], resident_bytes() - start)


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(model, reference, tokens: int, repeats: int, *, warm_up: bool, default: bool) -> dict:
    text = text_of(model, tokens)
    ids = torch.tensor([model.tokenizer(text)["input_ids"]])

    def floor():
        with torch.inference_mode():
            for side in (model, reference):
                side.hf(input_ids=ids).logits  # [1, T, V]: every position's logits, as a plain forward gives

    def pair():
        return model.compare(text, reference=reference, branches=0, progress=False)

    if warm_up:
        pair()  # the first call pages in both models' weights (memory-mapped): not the call's own memory
    growth = peak_growth(pair)
    times = {"floor": [], "pair": []}
    for repeat in range(0 if warm_up else 1, repeats + 1):
        for name, call in (("floor", floor), ("pair", pair)) if repeat % 2 else (("pair", pair), ("floor", floor)):
            elapsed = timed(call)
            if repeat:
                times[name].append(elapsed)
    default_s = timed(lambda: model.compare(text, reference=reference, progress=False)) if default else None
    floor_s, pair_s = statistics.median(times["floor"]), statistics.median(times["pair"])
    logits_bytes = tokens * model.vocab_size * 4
    return {
        "tokens": tokens, "repeats": repeats,
        "floor_s": [round(t, 3) for t in times["floor"]], "pair_s": [round(t, 3) for t in times["pair"]],
        "floor_median_s": round(floor_s, 3), "pair_median_s": round(pair_s, 3),
        "ratio_pair_over_floor": round(pair_s / floor_s, 3),
        "ratios_per_round": [round(p / f, 3) for p, f in zip(times["pair"], times["floor"])],
        "median_ratio_per_round": round(statistics.median(p / f for p, f in zip(times["pair"], times["floor"])), 3),
        "default_call_s": default_s and round(default_s, 3),
        "ratio_default_over_floor": default_s and round(default_s / floor_s, 3),
        "pair_peak_rss_growth_mib": round(growth / 2**20, 1),
        "one_side_logits_fp32_mib": round(logits_bytes / 2**20, 1),
        "rss_growth_over_logits": round(growth / logits_bytes, 3),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--repeats", type=int, nargs="+", default=[3], help="timed rounds, per length")
    parser.add_argument("--default-at", type=int, nargs="*", default=[512],
                        help="lengths at which the default call (with branches) is timed too")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "compare-cpu.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    load_before = [round(x, 2) for x in os.getloadavg()]
    model, reference = wb.load(DEFAULT_MODEL), wb.load(DRAFT_MODEL)
    results = []
    repeats = args.repeats + args.repeats[-1:] * (len(args.lengths) - len(args.repeats))
    for index, (tokens, rounds) in enumerate(zip(args.lengths, repeats)):
        results.append(measure(model, reference, tokens, rounds, warm_up=index == 0, default=tokens in args.default_at))
        print(json.dumps(results[-1]), flush=True)
    report = {
        "benchmark": "compare on the embedded pair vs the two plain forwards (floor), CPU",
        "model": DEFAULT_MODEL, "reference": DRAFT_MODEL, "vocab_size": model.vocab_size,
        "device": f"cpu: {platform.machine()}, {os.cpu_count()} cores", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "load_average_before": load_before,
        "target": "pair <= 1.2 x floor at 512 and 2048 tokens; no [T, V] held",
        "defaults": "compare(text, reference=) runs branches=8 (greedy continuations, branch_tokens=6) and "
                    "commitment=False: 'pair' is branches=0, 'default' the plain call",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("->", args.out)


if __name__ == "__main__":
    main()
