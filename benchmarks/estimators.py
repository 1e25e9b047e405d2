"""Which uncertainty estimator predicts the embedded model's errors (issue 20, item 3): a
measurement, not a test.

    .venv/bin/python benchmarks/estimators.py [--max-problems 64] [--samples 5] [--max-new-tokens 32]
        [--seed 0] [--threads 1] [--out benchmarks/results/estimators-cpu.json]

The shipped arithmetic problems (`wb.rewards.arithmetic_problems()`), each asked as a chat
message and answered greedily by the embedded SmolLM2-135M-Instruct; correctness by
`exact_answer`. Every single-sequence estimator scores the greedy answer, pmi included (the chat
prompt is its context); with --samples K > 0, K responses are also sampled per question in one
batch (top-p 0.9, seed + question index) for the group estimators (sentence_sar, sar), which
score the question. For each estimator: AUROC for detecting the wrong answers and the
prediction-rejection ratio (`workbench.pipelines.error_prediction`). The report also keeps each
question's response, correctness and scores, the wall time and the load average (the AUROC and
PRR do not depend on the load, the time does); it is rewritten after each question, so an
interrupted run leaves what it measured.
"""
from __future__ import annotations

import argparse
import json
import os
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
    parser.add_argument("--samples", type=int, default=5, help="sampled responses per question for the group estimators")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine one thread decodes several times faster)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "estimators-cpu.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = wb.load()
    names = wb.estimators.list_estimators(group=False if args.samples == 0 else None)  # pmi too: a chat has a context
    load_before = os.getloadavg()
    started = time.perf_counter()
    answered = []
    for k, problem in enumerate(arithmetic_problems()[:args.max_problems]):  # the report is rewritten after each
        answered += answer(model, [problem], names, max_new_tokens=args.max_new_tokens, samples=args.samples,
                           seed=args.seed + k, progress=False)
        table = write_report(args, model, answered, time.perf_counter() - started, load_before)
        print(f"{k + 1} questions, {sum(a.correct for a in answered)} right, {time.perf_counter() - started:.0f} s",
              flush=True)
    print(table.to_string(index=False))
    print(f"wrote {args.out}")


def write_report(args, model, answered, seconds: float, load_before: tuple[float, float, float]):
    """The report so far to args.out; returns the evaluation table."""
    table = evaluation_table(answered)
    report = {
        "model": model.name, "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch."),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "answers": "greedy, chat template", "group_samples": {"n": args.samples, "sampler": "top-p:0.9", "seed": args.seed},
        "max_new_tokens": args.max_new_tokens, "questions": len(answered),
        "accuracy": float(sum(a.correct for a in answered) / len(answered)), "seconds": round(seconds, 1),
        "loadavg_1_5_15": {"start": [round(x, 2) for x in load_before], "end": [round(x, 2) for x in os.getloadavg()]},
        "estimators": json.loads(table.to_json(orient="records")),  # NaN (undefined) as null
        "items": json.loads(scores_table(answered).to_json(orient="records")),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return table


if __name__ == "__main__":
    main()
