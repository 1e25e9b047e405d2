"""Integrated gradients' completeness gap against steps, baseline and integration rule (a
measurement, not a test): the embedded SmolLM2-135M, fp32, CPU.

For each text (a prompt and its continuation, every continuation token a target) and each
setting, the relative gap of every target

    |sum_s IG_s - (f(x) - f(b))| / |f(x) - f(b)|

(f = log p(y)); the file holds its median and maximum over the targets of each text, and the
largest over all texts. It chose the defaults of `workbench.attribution.gradient` (STEPS,
BASELINE, RULE).

    python benchmarks/ig_completeness.py [--out benchmarks/results/ig-completeness-cpu.json]
    python benchmarks/ig_completeness.py --steps 128 256 --rules right --baselines zeros --append

12 minutes under a load average of 10 with OMP_NUM_THREADS=1 (the appended 128 and 256 steps: 4 more); the
gaps do not depend on the load.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

TEXTS = [("The capital of France is", " Paris."),
         ("The opposite of hot is", " cold.")]
STEPS = (16, 32, 64)
RULES = ("right", "midpoint", "trapezoid", "gauss_legendre")


def baselines(model) -> dict:
    """The baselines the code offers: the zero embedding, or one token's embedding everywhere."""
    tokenizer = model.tokenizer
    return {"zeros": "zeros", f"eos/pad token {tokenizer.eos_token!r}": tokenizer.eos_token_id,
            f"bos token {tokenizer.bos_token!r}": tokenizer.bos_token_id}


def finite(value) -> float | None:
    """A number for the JSON file; None where it is NaN (a gradient undefined on the path: the
    trapezoid rule evaluates the gradient at the zero baseline itself, where it is NaN)."""
    return float(value) if np.isfinite(value) else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ig-completeness-cpu.json")
    parser.add_argument("--steps", type=int, nargs="+", default=STEPS)
    parser.add_argument("--rules", nargs="+", default=RULES)
    parser.add_argument("--baselines", nargs="+", default=None, help="names of `baselines` (default: all)")
    parser.add_argument("--append", action="store_true", help="add the rows to those already in --out")
    args = parser.parse_args()
    import workbench as wb
    from workbench.errors import IncompleteAttributionWarning

    warnings.simplefilter("ignore", IncompleteAttributionWarning)  # the gap is what this measures
    model = wb.load()
    started = time.perf_counter()
    load_before = os.getloadavg()
    rows = json.loads(args.out.read_text())["rows"] if args.append else []
    for name, baseline in baselines(model).items():
        if args.baselines and name not in args.baselines:
            continue
        for rule in args.rules:
            for steps in args.steps:
                per_text = []
                for prompt, continuation in TEXTS:
                    run = model.attribute(prompt, continuation=continuation, method="integrated_gradients",
                                          steps=steps, baseline=baseline, rule=rule, progress=False)
                    rows_at = run.arrays["attr_targets"]
                    gap = run.table["ig_gap"].to_numpy(dtype=float)[rows_at]
                    delta = run.table["ig_delta"].to_numpy(dtype=float)[rows_at]
                    relative = np.abs(gap) / np.abs(delta)
                    per_text.append({"text": prompt + continuation, "max_relative_gap": finite(relative.max()),
                                     "median_relative_gap": finite(np.median(relative)),
                                     "max_abs_gap": finite(np.abs(gap).max()),
                                     "abs_delta": [round(float(v), 4) for v in np.abs(delta)]})
                worsts = [t["max_relative_gap"] for t in per_text]
                worst = None if None in worsts else max(worsts)
                rows.append({"baseline": name, "rule": rule, "steps": steps, "max_relative_gap": worst,
                             "texts": per_text})
                print(f"{name:>24} {rule:>15} {steps:>4}: max relative gap {worst}", file=sys.stderr)
    runs = json.loads(args.out.read_text())["runs"] if args.append else []
    runs.append({"command": " ".join(["python"] + sys.argv), "seconds": time.perf_counter() - started,
                 "load_average": {"before": load_before, "after": os.getloadavg()}})
    record = {"model": model.name, "dtype": "float32", "device": "cpu", "score": "log p(y)",
              "relative_gap": "|sum_s IG_s - (f(x) - f(b))| / |f(x) - f(b)| per target",
              "threads": torch.get_num_threads(), "runs": runs, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
