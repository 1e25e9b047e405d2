"""Which uncertainty estimator predicts the embedded model's errors (issue 20, item 3): a
measurement, not a test.

    nice -n 10 .venv/bin/python benchmarks/estimators.py [--max-problems 64] [--samples 4]
        [--max-new-tokens 24] [--seed 0] [--out benchmarks/results/estimators-cpu.json]

The shipped arithmetic problems (`wb.rewards.arithmetic_problems()`), each asked as a chat
message and answered greedily by the embedded SmolLM2-135M-Instruct; correctness by
`exact_answer`. Every single-sequence estimator scores the greedy answer; with --samples K > 0,
K responses are also sampled per question (top-p 0.9, seed + question index) for the group
estimators (sentence_sar, sar). For each estimator: AUROC for detecting the wrong answers and
the prediction-rejection ratio (`workbench.pipelines.error_prediction`). The report also keeps
each question's response, correctness and scores, and the wall time.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import workbench as wb
from workbench.pipelines.error_prediction import answer, evaluation_table, scores_table
from workbench.rewards import arithmetic_problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-problems", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4, help="sampled responses per question for the group estimators")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "estimators-cpu.json")
    args = parser.parse_args()

    model = wb.load()
    started = time.perf_counter()
    answered = answer(model, arithmetic_problems()[:args.max_problems], max_new_tokens=args.max_new_tokens,
                      samples=args.samples, seed=args.seed)
    seconds = time.perf_counter() - started
    table = evaluation_table(answered)
    report = {
        "model": model.name, "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch."),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "answers": "greedy, chat template", "group_samples": {"n": args.samples, "sampler": "top-p:0.9", "seed": args.seed},
        "max_new_tokens": args.max_new_tokens, "questions": len(answered),
        "accuracy": float(sum(a.correct for a in answered) / len(answered)), "seconds": round(seconds, 1),
        "estimators": json.loads(table.to_json(orient="records")),  # NaN (undefined) as null
        "items": json.loads(scores_table(answered).to_json(orient="records")),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(table.to_string(index=False))
    print(f"{len(answered)} questions, accuracy {report['accuracy']:.0%}, {seconds:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
