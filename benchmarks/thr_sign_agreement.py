"""How often the cheap (hidden-state) Token Hidden Reward agrees in sign with the exact one
on the tokens that matter most, on real rollouts of the embedded model (a measurement, not
a test: issue 7, item 2).

    nice -n 10 .venv/bin/python benchmarks/thr_sign_agreement.py [--groups 4] [--n 8]
        [--max-new-tokens 32] [--max-problems 16] [--seed 0]
        [--out benchmarks/results/thr-sign-agreement-cpu.json]

For the shipped arithmetic problems in order, one group of `n` sampled responses each
(plain sampling at temperature 1, reward `exact_answer`), until `groups` groups have both
correct and incorrect responses (in a group where every reward is equal, every advantage
and so every THR is 0 in both modes: such groups are counted, not compared), or
`max-problems` problems were tried. The report is rewritten after each group, so an
interrupted run leaves what it measured. For each
compared group, THR in three ways:

  exact      gradients of every parameter (one backward for g_C, one forward-mode JVP)
  cheap      the paper's approximation: last-layer features, vocabulary of the group
  cheap_all  the same over the whole vocabulary (= exact THR over the lm_head weight alone)

and, taking the exact THR as the reference: the share of the top 10 tokens by |exact THR|
where the other mode has the same sign, the same for the top 20% of the group's tokens,
and for all its tokens; the Spearman correlation of the values. Pooled figures count
tokens over all compared groups (each group's top tokens, together).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import workbench as wb
from workbench import credit
from workbench.rewards import arithmetic_problems

MODES = {"cheap": dict(mode="cheap"), "cheap_all": dict(mode="cheap", vocabulary="all")}
TOP_SHARE = 0.2


def agreement(reference: np.ndarray, other: np.ndarray, top: int) -> tuple[int, int]:
    """(agreeing, compared) among the `top` tokens of largest |reference| (0 left out)."""
    order = [i for i in np.argsort(-np.abs(reference), kind="stable") if reference[i] != 0][:top]
    return int(np.sum(np.sign(reference[order]) == np.sign(other[order]))), len(order)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a, ranks_b = (np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float) for x in (a, b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def compare(exact: np.ndarray, other: np.ndarray) -> dict:
    """Sign agreement of `other` with `exact` on the top 10, top 20% and all tokens."""
    nonzero = int(np.count_nonzero(exact))
    out = {}
    for key, top in (("top10", 10), ("top20pct", max(1, math.ceil(TOP_SHARE * nonzero))), ("all", nonzero)):
        agree, compared = agreement(exact, other, top)
        out[key] = {"agree": agree, "compared": compared, "share": round(agree / compared, 4) if compared else None}
    out["spearman"] = round(spearman(exact, other), 4)
    return out


def write_report(args, model, groups: list[dict], skipped: list[dict], seconds: float) -> dict:
    """Write the JSON report of the groups compared so far; returns the pooled figures."""
    pooled = {}
    for name in MODES:
        pooled[name] = {}
        for key in ("top10", "top20pct", "all"):
            agree = sum(g[name][key]["agree"] for g in groups)
            compared = sum(g[name][key]["compared"] for g in groups)
            shares = [g[name][key]["share"] for g in groups if g[name][key]["share"] is not None]
            pooled[name][key] = {"agree": agree, "compared": compared,
                                 "share": round(agree / compared, 4) if compared else None,
                                 "mean_over_groups": round(float(np.mean(shares)), 4) if shares else None}
        correlations = [g[name]["spearman"] for g in groups]
        pooled[name]["spearman_mean"] = round(float(np.mean(correlations)), 4) if groups else None
    report = {
        "benchmark": "sign agreement of cheap (hidden-state) vs exact Token Hidden Reward on the top-|THR| tokens",
        "model": model.name,
        "dtype": str(model.dtype),
        "device": f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": {"n": args.n, "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                     "sampler": "temperature 1", "reward": "exact_answer", "top_share": TOP_SHARE},
        "problems_tried": len(groups) + len(skipped),
        "groups_compared": len(groups),
        "groups_skipped": skipped,
        "pooled": pooled,
        "groups": groups,
        "wall_s": round(seconds, 1),
        "process_cpu_s": round(time.process_time(), 1),  # this process's CPU time, model loading included
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=4, help="groups with mixed rewards to compare")
    parser.add_argument("--n", type=int, default=8, help="responses per group")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-problems", type=int, default=16, help="problems to try at most")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first problem's group (+1 per problem)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "thr-sign-agreement-cpu.json")
    args = parser.parse_args()

    model = wb.load()
    started = time.perf_counter()
    groups, skipped = [], []
    for k, problem in enumerate(arithmetic_problems()[:args.max_problems]):
        if len(groups) == args.groups:
            break
        group = model.rollouts(problem.question, n=args.n, reward=problem.reward(), max_new_tokens=args.max_new_tokens,
                               seed=args.seed + k, thr=None, progress=False)
        correct = int(group.correct().sum())
        if correct in (0, len(group)):
            skipped.append({"problem": k, "correct": correct})
            print(f"problem {k}: {correct}/{len(group)} correct, every THR is 0: skipped")
            continue
        tick = time.perf_counter()
        exact = credit.token_hidden_reward(model, group, mode="exact")
        seconds = {"exact": time.perf_counter() - tick}
        row = {"problem": k, "question": problem.question, "correct": correct, "responses": len(group),
               "tokens": len(group.table), "exact_method": exact.attrs["method"], "exact_params": exact.attrs["params"]}
        for name, options in MODES.items():
            tick = time.perf_counter()
            values = credit.token_hidden_reward(model, group, **options)
            seconds[name] = time.perf_counter() - tick
            row[name] = compare(exact.to_numpy(), values.to_numpy())
        row["seconds"] = {name: round(s, 3) for name, s in seconds.items()}
        groups.append(row)
        write_report(args, model, groups, skipped, time.perf_counter() - started)
        print(f"problem {k}: {correct}/{len(group)} correct, {len(group.table)} tokens; cheap agrees on "
              f"top 10 {row['cheap']['top10']['share']:.0%}, top 20% {row['cheap']['top20pct']['share']:.0%}, "
              f"all {row['cheap']['all']['share']:.0%}; exact {seconds['exact']:.1f} s, cheap {seconds['cheap']:.2f} s")

    pooled = write_report(args, model, groups, skipped, time.perf_counter() - started)
    print(json.dumps(pooled, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
