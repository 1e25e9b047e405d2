"""The embedded SmolLM2 against its offline draft and against itself in reduced precision, on CPU.

    .venv/bin/python benchmarks/speculative.py [--new-tokens 24] [--repeats 2]
        [--out benchmarks/results/speculative-cpu.json]

1. Choosing k for the first-k-layers draft (`workbench:smollm2-first-k`): on SELECTION_TEXT,
   one forward of the full model gives every layer's hidden state; the draft with k layers
   predicts with the final norm and head on layer k's (what `layer_skip.keep_first_layers`
   builds). Per k: the mean acceptance rate alpha = mean_t sum_v min(p_t,v, q_t,v) under the
   default sampler (top-p 0.9) and at temperature 1, and the speedup Leviathan et al. 2023
   predict (eq. 1 over the cost of gamma draft forwards and one target forward):
   (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1)), c the draft's cost relative to the
   target's, counted in multiply-adds per token (layers and the tied head; attention over a
   short context left out). On SmolLM2-135M no k predicts a speedup (the tied head alone costs
   as much as 8 of its 30 layers, and the early layers' lens predicts poorly), so k is the
   smallest with alpha >= MIN_ALPHA: a pair for comparison and for the trace, not for speed.
2. Held out: on HELD_OUT_TEXT (not used for 1) the chosen draft's alpha, KL(p||q) and top-1
   agreement per token (teacher-forced, full softmaxes in float64: V = 49152 is small here).
3. Reduced precision: the model in bf16 and with int8 dynamic quantization of its linear layers
   (`torch.ao.quantization.quantize_dynamic`) against fp32 on HELD_OUT_TEXT: per-token KL, 1 - TV,
   top-1 agreement, and the tokens it hurts most.
4. Wall time: `generate` with and without the draft on a chat prompt (same sampler and seed,
   `new-tokens` tokens, medians over `repeats`, alternating), with the trace's measured and
   expected tokens per step; a run that ends before `new-tokens` tokens stops the benchmark.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import workbench as wb
from workbench.model.embedded import DEFAULT_MODEL, DRAFT_LAYERS, DRAFT_MODEL
from workbench.samplers import TopP

SELECTION_TEXT = (
    "The history of the city begins with a small settlement on the river, where traders met to exchange "
    "salt, grain and cloth. Over the centuries the market grew into a town, the town into a city, and the "
    "city into the capital of a kingdom. Its walls were built in the twelfth century and torn down in the "
    "nineteenth, when the railway arrived and the city spread across the plain."
)
HELD_OUT_TEXT = (
    "Photosynthesis is the process by which green plants use sunlight to turn water and carbon dioxide into "
    "sugar and oxygen. It takes place in the chloroplasts, small structures inside the leaf cells that contain "
    "chlorophyll. The oxygen we breathe comes from this process, and almost every food chain on Earth starts "
    "with it. Scientists still study how to copy it to make clean fuels."
)
# A chat turn: the instruct model answers it at length. As raw text, "... why the sky is blue." is
# followed by <|im_end|> half the time (p = .52), so a run ended after its first token: a timing
# of one step, and at gamma = 1 a trace of one rejected draft (0 accepted).
PROMPT = [{"role": "user", "content": "Write a short paragraph about why the sky is blue."}]
GAMMAS = (1, 2, 3, 4, 6, 8)
MIN_ALPHA = 0.3  # the shipped draft: the smallest k whose acceptance rate (top-p 0.9) reaches this
WALL_GAMMAS = (1, 4)
SAMPLERS = {"top-p 0.9": TopP(0.9), "temperature 1": wb.samplers.Temperature(1.0)}


def distributions(logits: torch.Tensor, sampler) -> torch.Tensor:
    """The sampler's distribution per position, [T, V] float64."""
    return sampler.filter(logits.float())[1].double()


def pair_statistics(p_logits: torch.Tensor, q_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per position, from full softmaxes in float64: KL(p||q), 1 - TV = sum min(p, q), top-1 agreement."""
    log_p, log_q = torch.log_softmax(p_logits.double(), -1), torch.log_softmax(q_logits.double(), -1)
    p, q = log_p.exp(), log_q.exp()
    return {"kl": (p * (log_p - log_q)).sum(-1), "one_minus_tv": torch.minimum(p, q).sum(-1),
            "top1_agree": (p.argmax(-1) == q.argmax(-1)).double()}


def layer_logits(model, text: str) -> tuple[list[int], list[torch.Tensor]]:
    """Token ids and, per k = 1..L, the logits [T, V] of the first-k-layers draft (final norm and
    head on layer k's hidden state; k = L is the model itself)."""
    ids = model.tokenizer(text)["input_ids"]
    with torch.inference_mode():
        hidden = model.hf(torch.tensor([ids]), output_hidden_states=True).hidden_states  # L + 1 of [1, T, d]
        norm = model.adapter.final_norm(model.hf)
        per_layer = [model.adapter.logits(model.hf, norm(h[0])).float() for h in hidden[1:-1]]
        per_layer.append(model.adapter.logits(model.hf, hidden[-1][0]).float())  # the last one is normed already
    return ids, per_layer


def draft_cost(model, k: int) -> float:
    """Multiply-adds per token of the first k layers + head, over those of the whole model."""
    layer = sum(p.numel() for p in model.adapter.layers(model.hf)[0].parameters() if p.ndim == 2)
    head = model.adapter.lm_head(model.hf).weight.numel()
    return (k * layer + head) / (model.n_layers * layer + head)


def predicted_speedup(alpha: float, gamma: int, cost: float) -> float:
    tokens = gamma + 1 if alpha >= 1 else (1 - alpha ** (gamma + 1)) / (1 - alpha)
    return tokens / (gamma * cost + 1)


def choose_k(model) -> dict:
    _, per_layer = layer_logits(model, SELECTION_TEXT)
    target = per_layer[-1]
    target_p = {name: distributions(target, s) for name, s in SAMPLERS.items()}
    rows = []
    for k in range(1, model.n_layers):
        alphas = {name: torch.minimum(target_p[name], distributions(per_layer[k - 1], s)).sum(-1).mean().item()
                  for name, s in SAMPLERS.items()}
        cost = draft_cost(model, k)
        best = max(GAMMAS, key=lambda g: predicted_speedup(alphas["top-p 0.9"], g, cost))
        rows.append({"k": k, "alpha": {n: round(a, 4) for n, a in alphas.items()}, "cost": round(cost, 4),
                     "best_gamma": best, "predicted_speedup": round(predicted_speedup(alphas["top-p 0.9"], best, cost), 4)})
    fastest = max(rows, key=lambda row: row["predicted_speedup"])
    chosen = next(row for row in rows if row["alpha"]["top-p 0.9"] >= MIN_ALPHA)
    return {"text_tokens": target.shape[0], "rule": f"smallest k with alpha (top-p 0.9) >= {MIN_ALPHA}",
            "chosen_k": chosen["k"], "best_predicted_speedup": {"k": fastest["k"], **{key: fastest[key] for key in
                                                                  ("alpha", "best_gamma", "predicted_speedup")}},
            "per_k": rows}


def held_out(model, k: int) -> dict:
    ids, per_layer = layer_logits(model, HELD_OUT_TEXT)
    target, draft = per_layer[-1], per_layer[k - 1]
    stats = pair_statistics(target, draft)
    alphas = {name: torch.minimum(distributions(target, s), distributions(draft, s)).sum(-1).mean().item()
              for name, s in SAMPLERS.items()}
    return {"k": k, "tokens": len(ids), "alpha": {n: round(a, 4) for n, a in alphas.items()},
            "kl_mean": round(stats["kl"].mean().item(), 4), "kl_median": round(stats["kl"].median().item(), 4),
            "top1_agreement": round(stats["top1_agree"].mean().item(), 4)}


def quantized_copies(model) -> dict[str, object]:
    """bf16 and int8-dynamic copies of the model, and what quantize_dynamic warned."""
    import copy

    bf16 = copy.deepcopy(model.hf).to(torch.bfloat16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from torch.ao.quantization import quantize_dynamic

        int8 = quantize_dynamic(copy.deepcopy(model.hf), {torch.nn.Linear}, dtype=torch.qint8)
    notes = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught})
    return {"bf16": bf16, "int8-dynamic": int8, "int8_warnings": notes}


def precision(model, hurt: int = 8) -> dict:
    ids = model.tokenizer(HELD_OUT_TEXT)["input_ids"]
    tokens = model.tokenizer.convert_ids_to_tokens(ids)
    copies = quantized_copies(model)
    with torch.inference_mode():
        reference = model.hf(torch.tensor([ids])).logits[0]
        out = {"int8_warnings": copies["int8_warnings"]}
        for name in ("bf16", "int8-dynamic"):
            logits = copies[name](torch.tensor([ids])).logits[0].float()
            stats = pair_statistics(reference, logits)
            worst = stats["kl"].argsort(descending=True)[:hurt].tolist()
            log_p = torch.log_softmax(reference.double(), -1)
            out[name] = {
                "kl_mean": stats["kl"].mean().item(), "kl_max": stats["kl"].max().item(),
                "one_minus_tv_mean": stats["one_minus_tv"].mean().item(),
                "top1_agreement": stats["top1_agree"].mean().item(),
                # position t predicts token t + 1: the context's last token and the fp32 top-1 next
                "most_hurt": [{"position": t, "after": tokens[t], "fp32_top1": model.tokenizer.decode([int(reference[t].argmax())]),
                               "quantized_top1": model.tokenizer.decode([int(logits[t].argmax())]),
                               "kl": round(stats["kl"][t].item(), 5), "fp32_entropy": round(-(log_p[t].exp() * log_p[t]).sum().item(), 4)}
                              for t in worst],
            }
    return out


def wall_time(model, draft, gamma: int, new_tokens: int, repeats: int) -> dict:
    sampler = TopP(0.9)
    results = {"plain": [], "speculative": []}
    traces = []
    for repeat in range(repeats + 1):  # the first round warms up
        for mode in ("plain", "speculative"):
            extra = {"draft": draft, "gamma": gamma} if mode == "speculative" else {}
            start = time.perf_counter()
            run = model.generate(messages=PROMPT, sampler=sampler, max_new_tokens=new_tokens, seed=repeat,
                                 progress=False, **extra)
            elapsed = time.perf_counter() - start
            if run.meta["n_generated"] < new_tokens:  # a short run times its prefill, not its steps
                raise SystemExit(f"{mode} generation (gamma {gamma}, seed {repeat}) stopped after "
                                 f"{run.meta['n_generated']} of {new_tokens} tokens ({run.meta['stop_reason']}): "
                                 "give a prompt that the model answers at length")
            if repeat:
                results[mode].append(elapsed / run.meta["n_generated"])
                if mode == "speculative":
                    traces.append(run.meta["speculative"])
    plain, fast = statistics.median(results["plain"]), statistics.median(results["speculative"])
    keys = ("tokens_per_step", "expected_tokens_given_drafts", "expected_tokens_analytic", "mean_alpha", "acceptance_rate")
    return {"sampler": sampler.describe(), "gamma": gamma, "new_tokens": new_tokens, "repeats": repeats,
            "plain_s_per_token": round(plain, 4), "speculative_s_per_token": round(fast, 4),
            "speedup": round(plain / fast, 3),
            "trace_means": {key: round(statistics.mean(t[key] for t in traces), 4) for key in keys}}


def section(name: str, new_tokens: int, repeats: int):
    """One part of the report, in its own process."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = wb.load()
    if name == "choose_k":
        return choose_k(model)
    if name == "held_out":
        return held_out(model, DRAFT_LAYERS)
    if name == "precision":
        return precision(model)
    draft = wb.load(DRAFT_MODEL)
    return [wall_time(model, draft, gamma, new_tokens, repeats) for gamma in WALL_GAMMAS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "speculative-cpu.json")
    args = parser.parse_args()
    with ProcessPoolExecutor(max_workers=4) as pool:  # the sections in parallel: the machine is shared
        parts = {name: pool.submit(section, name, args.new_tokens, args.repeats)
                 for name in ("choose_k", "held_out", "precision", "wall_time")}
        parts = {name: part.result() for name, part in parts.items()}
    selection = parts["choose_k"]
    report = {
        "benchmark": "SmolLM2-135M-Instruct: first-k-layers draft, reduced precision, speculative vs plain generation",
        "model": DEFAULT_MODEL, "draft": DRAFT_MODEL, "draft_layers_shipped": DRAFT_LAYERS,
        "device": f"cpu: {platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'unknown'})",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "note": "2 cores shared with other jobs and the four sections run in parallel processes: wall times are "
                "noisy; the speedups come from alternating plain and speculative runs in one process",
        **parts,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("held_out", "wall_time")}, indent=2))
    print("chosen k", selection["chosen_k"], "shipped", DRAFT_LAYERS, "->", args.out)


if __name__ == "__main__":
    main()
