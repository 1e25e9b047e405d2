"""Attribution benchmark (a measurement, not a test): the embedded SmolLM2-135M, fp32, CPU.

1. Short case, a 23-token prompt and a 15-token continuation (38 tokens), in `--rounds`
   interleaved rounds (medians reported; the load average recorded with each round): one
   plain forward; the floor of a gradient method, one forward plus one input-only backward for
   the batch of 15 targets (plain torch: `torch.autograd.grad(..., is_grads_batched=True)`,
   weights frozen), and for reference the unbatched form (one backward per target); each
   method through `model.attribute`, as a multiple of the forward and of the floor;
   integrated gradients both with 32 steps (Gauss-Legendre, from the unknown token's
   embedding: Inseq's setting) and with the workbench's default; ReAGent bounded to
   REAGENT_STEPS steps, with its time per step: its default of up to 100 steps is why it
   seemed not to finish before. A step is two batched forwards (the update and the stopping
   check) of every chain of every target still running, 2 x 4 chains x 15 targets = 120
   sequences of up to 37 tokens here; a target runs until all its chains stop (after 2 steps
   a fifth of them had), so 100 steps cost up to 100 times one step.
   With --inseq-python, Inseq 0.7.1 (benchmarks/attribution_inseq.py, in its own environment)
   runs in every round after ours: its times, the speedups, and the largest difference of its
   values from ours (the same definitions: f = log p(y); integrated gradients as above).
2. With --long: a 2,000-token prompt with 20 targets for each gradient method (integrated
   gradients with 2 steps: at this length one interpolated input fits a pass, so more steps
   repeat the same pass and peak memory does not grow with them), each in its own process,
   its time and peak resident memory (target: at most 8 GB).

    python benchmarks/attribution.py --rounds 2 --inseq-python /tmp/inseq-venv/bin/python
    python benchmarks/attribution.py --long

One round took 6 minutes on the shared machine (load average 2-4, one thread: ours about 2.5
minutes, most of it integrated gradients twice; Inseq about 3, most of it its integrated
gradients); two rounds about 12. The long case: three children of a few minutes each on an idle
machine (estimated; the previous session's saliency took 22 minutes on a saturated one).

Results: benchmarks/results/attribution-cpu.json (--out), its "short" and "long" parts (each
run replaces its own part), each with its setting and load averages.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

PROMPT_TOKENS, CONTINUATION_TOKENS = 23, 15
PROMPT = ("When my flight landed in Thailand, I converted my currency and took a taxi to the hotel in the capital "
          "city of")
CONTINUATION = " Bangkok, where I stayed for a week before I went to the beach."
REAGENT_STEPS = 2
# Inseq's integrated gradients: Captum's Gauss-Legendre rule, and Inseq's baseline, the unknown
# token's embedding at every position (SmolLM2's unk is token 0, <|endoftext|>; no eos in the text)
INSEQ_SETTINGS = {"steps": 32, "rule": "gauss_legendre", "baseline": 0}
LONG_TOKENS, LONG_TARGETS, LONG_STEPS = 2000, 20, 2


def short_inputs(model) -> tuple[str, str, torch.Tensor, int]:
    """The short case's prompt and continuation texts, their ids [1, 38], the prompt's length."""
    prompt_ids = model.tokenizer(PROMPT)["input_ids"][:PROMPT_TOKENS]
    continuation_ids = model.tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"][:CONTINUATION_TOKENS]
    return (model.tokenizer.decode(prompt_ids), model.tokenizer.decode(continuation_ids),
            torch.tensor([prompt_ids + continuation_ids]), len(prompt_ids))


def methods(default_ig: dict) -> dict[str, dict]:
    """Our runs: name -> model.attribute keywords."""
    runs = {"saliency": {"method": "saliency"}, "input_x_gradient": {"method": "input_x_gradient"},
            "integrated_gradients": {"method": "integrated_gradients", **INSEQ_SETTINGS}}
    if default_ig != INSEQ_SETTINGS:
        runs["integrated_gradients_default"] = {"method": "integrated_gradients", **default_ig}
    runs["occlusion"] = {"method": "occlusion", "level": "token"}
    runs["reagent"] = {"method": "reagent", "max_steps": REAGENT_STEPS}
    return runs


def seconds_of(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def plain_timings(model, ids: torch.Tensor, n_prompt: int) -> dict[str, float]:
    """One round of the forward (median of 5) and of the floor, batched and unbatched."""
    hf = model.hf
    positions = torch.arange(n_prompt, ids.shape[1])
    with torch.no_grad():
        forward = statistics.median(seconds_of(lambda: hf(input_ids=ids)) for _ in range(5))
    flags = [p.requires_grad for p in hf.parameters()]
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

    timings = {"forward_s": forward, "floor_s": seconds_of(lambda: floor(True)),
               "floor_unbatched_s": seconds_of(lambda: floor(False))}
    for p, flag in zip(hf.parameters(), flags):
        p.requires_grad_(flag)
    return timings


def run_inseq(python: str, folder: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "inseq.json"
        subprocess.run([python, str(Path(__file__).parent / "attribution_inseq.py"), str(folder), str(out)],
                       check=True, timeout=900, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def short_case(model, rounds: int, inseq_python: str | None) -> dict:
    from workbench.attribution import gradient
    from workbench.model.embedded import DEFAULT_MODEL, EMBEDDED, materialize

    prompt, continuation, ids, n_prompt = short_inputs(model)
    runs = methods({"steps": gradient.STEPS, "rule": gradient.RULE, "baseline": gradient.BASELINE})
    attribute = lambda options: model.attribute(prompt, continuation=continuation, progress=False,  # noqa: E731
                                                **options)
    plain_timings(model, ids, n_prompt)  # warm-up
    for options in runs.values():  # ReAGent runs the forwards the other methods warmed up
        if options["method"] != "reagent":
            attribute({**options, "steps": 2} if options["method"] == "integrated_gradients" else options)
    samples: dict[str, list[float]] = {}
    loads, inseq_rounds, outputs = [], [], {}
    for round_ in range(rounds):
        loads.append(os.getloadavg())
        for name, value in plain_timings(model, ids, n_prompt).items():
            samples.setdefault(name, []).append(value)
        for name, options in runs.items():
            start = time.perf_counter()
            outputs[name] = attribute(options)
            samples.setdefault(name, []).append(time.perf_counter() - start)
        if inseq_python:
            inseq_rounds.append(run_inseq(inseq_python, materialize(EMBEDDED[DEFAULT_MODEL])))
        print(f"round {round_ + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in samples.items())
              + (", inseq " + ", ".join(f"{k} {v['seconds']:.2f} s" for k, v in inseq_rounds[-1]["methods"].items())
                 if inseq_python else ""), file=sys.stderr)
    loads.append(os.getloadavg())
    median = {name: statistics.median(values) for name, values in samples.items()}
    forward, floor = median["forward_s"], median["floor_s"]
    record = {"n_prompt": n_prompt, "n_continuation": ids.shape[1] - n_prompt, "rounds": rounds,
              "load_average_per_round": loads, "forward_s": forward, "floor_s": floor,
              "floor_unbatched_s": median["floor_unbatched_s"], "samples_s": samples, "methods": {}}
    for name, options in runs.items():
        entry = {**{k: v for k, v in options.items() if k != "method"}, "seconds": median[name],
                 "x_forward": median[name] / forward, "x_floor": median[name] / floor}
        table, targets = outputs[name].table, outputs[name].arrays["attr_targets"]
        if options["method"] == "integrated_gradients":
            gap, delta = (table[c].to_numpy(dtype=float)[targets] for c in ("ig_gap", "ig_delta"))
            entry["max_relative_gap"] = float(np.max(np.abs(gap) / np.abs(delta)))
        if name == "reagent":
            steps = table["reagent_steps"].to_numpy(dtype=float)[targets]
            entry.update(steps_run=float(steps.max()), stopped_share=float(np.mean(
                table["reagent_stopped"].to_numpy(dtype=float)[targets])), seconds_per_step=median[name] / steps.max())
        record["methods"][name] = entry
    if inseq_python:
        record["inseq"] = compare_inseq(inseq_rounds, outputs, median)
    return record


def compare_inseq(rounds: list[dict], outputs: dict, median: dict) -> dict:
    """Inseq's median times, our speedups, and the largest difference of the values."""
    comparison = {"inseq": rounds[0]["inseq"], "torch": rounds[0]["torch"], "compared": (
        "both attribute f = log p(y) (Inseq: attributed_fn='probability', logprob=True); integrated gradients "
        "with 32 steps, Gauss-Legendre, from the unknown token's embedding on both sides; the gradient [d] reduced per source as "
        "ours: its norm (saliency) or its sum (the others); every source before each target")}
    for method in rounds[0]["methods"]:
        theirs = statistics.median(r["methods"][method]["seconds"] for r in rounds)
        ours = outputs[method].arrays[f"attr_{method}"]  # [15, 38]
        their_values = np.array(rounds[-1]["methods"][method]["values"], dtype=float)[:, :ours.shape[1]]
        both = ~np.isnan(ours) & ~np.isnan(their_values)
        comparison[method] = {"inseq_seconds": theirs, "ours_seconds": median[method],
                              "speedup": theirs / median[method],
                              "max_abs_difference": float(np.abs(ours - their_values)[both].max()),
                              "max_abs_value": float(np.abs(ours[both]).max())}
        if method == "integrated_gradients" and "integrated_gradients_default" in median:
            comparison[method]["speedup_of_default"] = theirs / median["integrated_gradients_default"]
        print(f"{method}: Inseq {theirs:.2f} s, ours {median[method]:.2f} s: {theirs / median[method]:.1f}x, "
              f"max |difference| {comparison[method]['max_abs_difference']:.2g}", file=sys.stderr)
    return comparison


def long_case_child(method: str) -> None:
    """Run in a child process: attribute LONG_TARGETS of a LONG_TOKENS text; print JSON."""
    import workbench as wb

    model = wb.load()
    words = (PROMPT + CONTINUATION + " ").split()
    text = " ".join(words[i % len(words)] for i in range(LONG_TOKENS))
    text = model.tokenizer.decode(model.tokenizer(text)["input_ids"][:LONG_TOKENS])
    n = len(model.tokenizer(text)["input_ids"])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 steps leave a completeness gap: this measures memory
        run = model.attribute(text, method=method, targets=list(range(n - LONG_TARGETS, n)), steps=LONG_STEPS,
                              progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"method": method, "n_tokens": n, "n_targets": len(run.arrays["attr_targets"]),
                      "seconds": seconds, "peak_rss_gb": peak / 1e9,
                      **({"steps": LONG_STEPS} if method == "integrated_gradients" else {})}))


def long_case() -> list[dict]:
    results = []
    for method in ("saliency", "input_x_gradient", "integrated_gradients"):
        load = os.getloadavg()
        child = subprocess.run([sys.executable, __file__, "--child", method], capture_output=True, text=True,
                               timeout=3600)
        if child.returncode != 0:
            results.append({"method": method, "error": child.stderr.strip().splitlines()[-1]})
            continue
        results.append({**json.loads(child.stdout.strip().splitlines()[-1]), "load_average": load})
        print(f"long {method}: {results[-1]}", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "attribution-cpu.json")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--inseq-python", default=None, help="the Python of an environment with inseq==0.7.1")
    parser.add_argument("--long", action="store_true", help="the 2,000-token case instead of the short one")
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    if args.child:
        long_case_child(args.child)
        return
    import workbench as wb

    torch.manual_seed(0)
    started = time.perf_counter()
    model = wb.load()
    part = "long" if args.long else "short"
    setting = {"model": model.name, "dtype": "float32", "device": "cpu", "cpu": platform.processor() or platform.machine(),
               "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "command": " ".join(["python"] + sys.argv), "load_average_before": os.getloadavg()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the completeness gap is recorded, not warned
        result = long_case() if args.long else short_case(model, args.rounds, args.inseq_python)
    setting.update(load_average_after=os.getloadavg(), seconds=time.perf_counter() - started)
    # one file holds both parts: each run replaces its own part and keeps the other
    record = json.loads(args.out.read_text()) if args.out.exists() else {}
    record[part] = {"setting": setting, **({"targets": result} if args.long else result)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote the {part} part of {args.out} in {setting['seconds']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
