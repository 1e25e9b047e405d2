"""Which uncertainty estimator predicts the embedded model's errors (issue 20, item 3): a
measurement, not a test.

    .venv/bin/python benchmarks/estimators.py [--max-problems 64] [--samples 5] [--max-new-tokens 32]
        [--seed 0] [--threads 1] [--out benchmarks/results/estimators-cpu.json] [--resume]

The shipped arithmetic problems (`wb.rewards.arithmetic_problems()`), each asked as a chat
message and answered greedily by the embedded SmolLM2-135M-Instruct; correctness by
`exact_answer`. Every single-sequence estimator scores the greedy answer, pmi included (the chat
prompt is its context); with --samples K > 0, K responses are also sampled per question in one
batch (top-p 0.9, seed + question index) for the group estimators (sentence_sar, sar), which
score the question. For each estimator: AUROC for detecting the wrong answers and the
prediction-rejection ratio (`workbench.pipelines.error_prediction`). The report also keeps each
question's response, correctness and scores, the wall time and the load average (the AUROC and
PRR do not depend on the load, the time does); it is rewritten after each question, so an
interrupted run leaves what it measured, and --resume continues it: question k is answered the
same way in any run (greedy; samples seeded with seed + k), so a resumed report equals a whole run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pandas as pd
import torch

import workbench as wb
from workbench.pipelines.error_prediction import SAMPLER, answer, evaluate_scores, scores_table
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
    parser.add_argument("--resume", action="store_true", help="continue the report in --out (same settings)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = wb.load()
    names = wb.estimators.list_estimators(group=False if args.samples == 0 else None)  # pmi too: a chat has a context
    report = {"model": model.name, "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch."),
              "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "answers": "greedy, chat template",
              "group_samples": {"n": args.samples, "sampler": SAMPLER, "seed": args.seed},
              "max_new_tokens": args.max_new_tokens}
    items, runs = earlier_items(args.out, report) if args.resume else ([], [])
    run = {"first_question": len(items), "questions": 0, "seconds": 0.0,
           "loadavg_1_5_15_start": [round(x, 2) for x in os.getloadavg()]}
    runs.append(run)
    started = time.perf_counter()
    for k, problem in enumerate(arithmetic_problems()[:args.max_problems]):  # the report is rewritten after each
        if k < len(items):
            continue
        answered = answer(model, [problem], names, max_new_tokens=args.max_new_tokens, samples=args.samples,
                          seed=args.seed + k, progress=False)
        items += json.loads(scores_table(answered).to_json(orient="records"))  # NaN (undefined) as null
        run.update(questions=run["questions"] + 1, seconds=round(time.perf_counter() - started, 1),
                   loadavg_1_5_15_end=[round(x, 2) for x in os.getloadavg()])
        write_report(args.out, report, names, items, runs)
        print(f"{k + 1} questions, {sum(item['correct'] for item in items)} right, {run['seconds']:.0f} s", flush=True)
    print(evaluate_scores(pd.DataFrame(items), names).to_string(index=False))
    print(f"wrote {args.out}")


def earlier_items(path: Path, settings: dict) -> tuple[list[dict], list[dict]]:
    """The items and runs of the report at `path`, after checking it was made with `settings`."""
    earlier = json.loads(path.read_text())
    differ = [key for key, value in settings.items() if earlier.get(key) != value]
    if differ:
        raise SystemExit(f"{path} was made with other settings ({', '.join(differ)}): run without --resume")
    return earlier["items"], earlier.get("runs", [])


def write_report(path: Path, settings: dict, names: list[str], items: list[dict], runs: list[dict]):
    """The report so far to `path`: settings, totals, the evaluation table, the items, the runs."""
    table = evaluate_scores(pd.DataFrame(items), names)
    report = {**settings, "questions": len(items),
              "accuracy": float(sum(item["correct"] for item in items) / len(items)),
              "seconds": round(sum(run["seconds"] for run in runs), 1),
              "estimators": json.loads(table.to_json(orient="records")),  # NaN (undefined) as null
              "runs": runs, "items": items}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    main()
