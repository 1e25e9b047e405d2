"""The corpus pipeline on CPU, embedded SmolLM2, uncertainty signals: tokens/s against a plain
batched Hugging Face forward loop over the same documents and batch size, peak RSS at two
corpus sizes, and the Ray engine's overhead against the local one.

    .venv/bin/python benchmarks/corpus.py [--documents 256] [--batch-size 16] [--repeats 3] [--threads 1]
        [--rss-sizes 1000 20000] [--rss-model tiny:llama] [--ray-documents 128] [--parts throughput rss ray]
        [--out benchmarks/results/corpus-cpu.json]

Plain loop: for each batch of `batch_size` documents (in file order), the tokenizer pads the
batch and `hf(input_ids, attention_mask).logits` runs (the full [B, T, V] logits and nothing
else: what a user would write). Corpus: `wb.corpus(...)` into a fresh folder: reading,
tokenizing with offsets, batched forwards, every uncertainty statistic, the document figures,
Parquet shards and the manifest. Both are timed alternately, `repeats` times after a warm-up;
each figure is the median. Peak RSS: each size in its own process (`ru_maxrss`, the process's
peak resident set, model included), documents of the same kind, with its tokens/s. Its model
(--rss-model) is tiny:llama by default, built from a config: RSS flatness in the corpus size is
a property of the pipeline (what it keeps per document or per shard), not of the model, and the
embedded SmolLM2 scores about 100 tokens/s on 2 shared cores, too slow for 20,000 documents
(--rss-model workbench:smollm2-135m --rss-sizes 1000 5000 measures it). --threads: torch's CPU
threads in every process (1 by default: on a shared 2-core machine two threads waiting for
each other made tiny forwards 7x slower); the load average is recorded with the results.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

WORDS = ("the river market grew into a town and the town into a city where traders met to exchange salt grain "
         "cloth stories songs and news from distant places").split()


def documents(n: int) -> list[str]:
    """n short documents (8 to 31 words), deterministic."""
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(8 + i % 24)).capitalize() + "."
            for i in range(n)]


def write_source(folder: Path, n: int) -> Path:
    path = folder / f"docs-{n}.txt"
    path.write_text("\n".join(documents(n)) + "\n")
    return path


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def throughput(model, source: Path, texts: list[str], batch_size: int, repeats: int, scratch: Path) -> dict:
    import workbench as wb

    tokenizer = model.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    n_tokens = sum(len(tokenizer(t)["input_ids"]) for t in texts)

    def plain():
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True)
                model.hf(**batch).logits

    def corpus():
        out = scratch / "corpus-out"
        shutil.rmtree(out, ignore_errors=True)
        wb.corpus(model, source, out=out, signals=["uncertainty"], batch_size=batch_size, progress=False)

    plain(), corpus()  # warm-up
    times = {"plain": [], "corpus": []}
    for _ in range(repeats):
        times["plain"].append(timed(plain))
        times["corpus"].append(timed(corpus))
    plain_s, corpus_s = statistics.median(times["plain"]), statistics.median(times["corpus"])
    return {"documents": len(texts), "tokens": n_tokens, "batch_size": batch_size,
            "plain_loop_s": round(plain_s, 3), "corpus_s": round(corpus_s, 3),
            "plain_tokens_per_s": round(n_tokens / plain_s, 1), "corpus_tokens_per_s": round(n_tokens / corpus_s, 1),
            "ratio_of_plain": round(plain_s / corpus_s, 3), "all_s": times}


def status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS: now, VmHWM: peak), MiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))


def peak_rss_child(model_name: str, source: str, out: str, batch_size: int) -> None:
    """In a child process: load the model, reset the peak-RSS mark (writing 5 to
    /proc/self/clear_refs, Linux), run the corpus, print the peaks (MiB) and time as JSON:
    peak_rss_mib is the process's peak over its whole life (the model's loading included),
    corpus_peak_rss_mib the peak while the corpus ran."""
    import workbench as wb

    model = wb.load(model_name)
    loaded = status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    start = time.perf_counter()
    folder = wb.corpus(model, source, out=out, signals=["uncertainty"], batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - start
    token_rows = folder.manifest["counts"]["token_rows"]
    print(json.dumps({"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "rss_after_load_mib": round(loaded, 1), "corpus_peak_rss_mib": round(status_mib("VmHWM"), 1),
                      "seconds": round(seconds, 1), "token_rows": token_rows,
                      "tokens_per_s": round(token_rows / seconds, 1), "load_average": os.getloadavg()}))


def peak_rss(model_name: str, sizes: list[int], threads: int, batch_size: int, scratch: Path) -> dict:
    """Each corpus size in a fresh child process (`peak_rss_child`); the ratio of the largest
    size's corpus peak to the smallest's (flat: within 1.1)."""
    runs = {}
    for n in sizes:
        child = subprocess.run([sys.executable, __file__, "--threads", str(threads), "--rss-child", model_name,
                                str(write_source(scratch, n)), str(scratch / f"rss-{n}"), str(batch_size)],
                               capture_output=True, text=True, check=True)
        runs[str(n)] = json.loads(child.stdout.strip().splitlines()[-1])
        print(model_name, n, runs[str(n)], flush=True)
    smallest, largest = runs[str(min(sizes))], runs[str(max(sizes))]
    return {"sizes": runs, "peak_ratio_largest_to_smallest": round(largest["peak_rss_mib"] / smallest["peak_rss_mib"], 3),
            "corpus_peak_ratio_largest_to_smallest": round(
                largest["corpus_peak_rss_mib"] / smallest["corpus_peak_rss_mib"], 3)}


def ray_overhead(model, source: Path, batch_size: int, scratch: Path) -> dict:
    import ray

    import workbench as wb

    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    try:
        local_s = timed(lambda: wb.corpus(model, source, out=scratch / "local", batch_size=batch_size, progress=False))
        ray_s = timed(lambda: wb.corpus(model, source, out=scratch / "ray", engine="ray", actors=1,
                                        batch_size=batch_size, progress=False))
    finally:
        ray.shutdown()
    return {"ray_init_s": round(init_s, 2), "local_s": round(local_s, 2), "ray_s": round(ray_s, 2),
            "ray_over_local": round(ray_s / local_s, 3),
            "note": "one actor on the same machine (Ray sets its threads); ray_s includes starting the actor and "
                    "loading the model in it; ray_init_s is not in it"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[1000, 20000])
    parser.add_argument("--rss-model", default="tiny:llama", help="the model of the peak-RSS runs (default: tiny:llama)")
    parser.add_argument("--ray-documents", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parts", nargs="+", choices=("throughput", "rss", "ray"), default=["throughput", "rss", "ray"],
                        help="what to measure; the others' results already in --out are kept")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "corpus-cpu.json")
    parser.add_argument("--rss-child", nargs=4, metavar=("MODEL", "SOURCE", "OUT", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_child:
        peak_rss_child(*args.rss_child[:3], int(args.rss_child[3]))
        return

    import workbench as wb

    scratch = Path(tempfile.mkdtemp(prefix="corpus-bench-"))
    report = json.loads(args.out.read_text()) if args.out.is_file() else {}
    report.update({"benchmark": "corpus pipeline (uncertainty) vs plain batched HF forward loop", "device": "cpu",
                   "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                   "torch_threads": torch.get_num_threads()})
    report.setdefault("load_average", {})
    try:
        model = wb.load() if {"throughput", "ray"} & set(args.parts) else None
        if model is not None:
            report["model"] = model.name
        if "throughput" in args.parts:
            report["load_average"]["throughput_start"] = os.getloadavg()
            source = write_source(scratch, args.documents)
            report["throughput"] = throughput(model, source, documents(args.documents), args.batch_size,
                                              args.repeats, scratch)
            print(json.dumps(report["throughput"]), flush=True)
        if "rss" in args.parts:
            report["load_average"]["rss_start"] = os.getloadavg()
            report.setdefault("peak_rss", {})[args.rss_model] = peak_rss(args.rss_model, args.rss_sizes, args.threads,
                                                                         args.batch_size, scratch)
        if "ray" in args.parts and args.ray_documents:
            report["load_average"]["ray_start"] = os.getloadavg()
            report["ray"] = ray_overhead(model, write_source(scratch, args.ray_documents), args.batch_size, scratch)
            print(json.dumps(report["ray"]), flush=True)
        report["load_average"]["end"] = os.getloadavg()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
