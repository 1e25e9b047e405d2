"""`workbench` command line: the same functions as the Python API, for scripts and the
served app. Input errors print one line and exit with status 2 (no traceback)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .errors import WorkbenchError

FORMATS = ("table", "json", "parquet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Which tokens matter inside a language model.")
    parser.add_argument("--version", action="version", version=f"token-workbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="per-token signals of a text")
    analyze.add_argument("text", nargs="?", help="the text to analyze (or --file)")
    analyze.add_argument("--file", type=Path, help="read the text from this file (UTF-8)")
    _model_options(analyze)
    analyze.add_argument("--signals", default="uncertainty", help="comma-separated signal names (default: uncertainty)")
    analyze.add_argument("--top-k", type=int, default=5, help="alternatives kept per token (default: 5)")
    analyze.add_argument("--truncate", action="store_true", help="keep the first context-length tokens of a long text")
    _output_options(analyze)

    generate = commands.add_parser("generate", help="sample a continuation, recording each step's signals")
    generate.add_argument("prompt", help="the text to continue")
    _model_options(generate)
    _sampler_options(generate, default="top-p")
    generate.add_argument("--compare", default=None, help="several samplers side by side, e.g. top-p:0.9,min-p:0.1,top-h:0.4")
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--seed", type=int, default=None, help="same seed, same output")
    generate.add_argument("--stop", action="append", default=None, help="stop once this string appears (repeatable)")
    _output_options(generate)

    rollouts = commands.add_parser("rollouts", help="a group of sampled responses: rewards, GRPO advantages, token credit")
    rollouts.add_argument("prompt", help="the question (sent through the chat template when the model has one)")
    _model_options(rollouts)
    answer = rollouts.add_mutually_exclusive_group(required=True)
    answer.add_argument("--answer", help="the expected final answer (reward 1 when the response's answer equals it)")
    answer.add_argument("--regex", help="reward 1 when this regular expression occurs in the response")
    rollouts.add_argument("--n", type=int, default=8, help="responses in the group (default: 8)")
    rollouts.add_argument("--max-new-tokens", type=int, default=64)
    rollouts.add_argument("--seed", type=int, default=None, help="same seed, same group")
    _sampler_options(rollouts, default="temperature")
    rollouts.add_argument("--thr", choices=["auto", "exact", "cheap", "none"], default="auto",
                          help="Token Hidden Reward: exact (gradients), cheap (hidden states), auto (exact when it fits)")
    rollouts.add_argument("--raw", action="store_true", help="continue the prompt as raw text, not as a chat message")
    _output_options(rollouts)

    serve = commands.add_parser("serve", help="the dashboard in a browser (Panel)")
    _model_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=5006)

    commands.add_parser("models", help="list the embedded models")

    bench = commands.add_parser("bench", help="kernel benchmarks: time, GB/s, roofline, speedups (GPU; --quick on CPU)")
    bench.add_argument("--quick", action="store_true", help="tiny shapes on the CPU, to check the harness")
    bench.add_argument("--out", type=Path, help="one JSON for all results, plus a plot next to it (.html)")
    bench.add_argument("--results-dir", type=Path, default=Path("benchmarks/results"),
                       help="without --out: <kernel>-<device>.json per kernel here (default: benchmarks/results)")
    bench.add_argument("--kernels", default=None, help="comma-separated kernel names (default: every registered one)")
    bench.add_argument("--runs", type=int, default=20, help="timed calls per measurement, after warm-up (>= 20)")
    bench.add_argument("--no-compile", action="store_true", help="skip the torch.compile comparison")
    return parser


def _sampler_options(parser, default: str):
    parser.add_argument("--sampler", default=default, choices=list(SAMPLER_DEFAULTS),
                        help=f"truncation rule (default: {default}); its value comes from the flag below")
    parser.add_argument("--temperature", type=float, default=None, help="temperature before truncation")
    parser.add_argument("--top-k", type=int, default=None, help="top-k: keep the k most likely")
    parser.add_argument("--top-p", type=float, default=None, help="top-p: smallest set with this mass")
    parser.add_argument("--min-p", type=float, default=None, help="min-p: keep p >= m * max p")
    parser.add_argument("--alpha", type=float, default=None, help="top-H: entropy budget alpha * H(p)")


def _output_options(parser):
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--out", type=Path, help="write here instead of stdout (required for parquet)")


def _check_output(args) -> None:
    if args.format == "parquet" and args.out is None:
        raise WorkbenchError("--format parquet writes a file: add --out PATH")


def _model_options(parser):
    parser.add_argument("--model", default=None, help="embedded name, HF id, local folder or .gguf (default: workbench:smollm2-135m)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: fp32 on CPU, bf16 on GPU)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except WorkbenchError as error:
        print(f"workbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130


def cmd_analyze(args) -> int:
    text = _read_text(args)
    _check_output(args)
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    run = model.analyze(text, signals=args.signals, top_k=args.top_k, truncate=args.truncate)
    if args.format == "parquet":
        run.table.to_parquet(args.out, index=False)
        print(f"wrote {len(run)} tokens to {args.out}", file=sys.stderr)
        return 0
    if args.format == "json":
        output = run.to_json(indent=None) + "\n"
    else:
        from .terminal import render_table

        output = render_table(run, color=args.out is None and _wants_color())
    _write(output, args.out)
    return 0


# --sampler NAME -> (flag holding its value, default value)
SAMPLER_DEFAULTS = {"greedy": (None, None), "temperature": ("temperature", 1.0), "top-k": ("top_k", 50),
                    "top-p": ("top_p", 0.9), "min-p": ("min_p", 0.1), "top-h": ("alpha", 0.4)}


def sampler_from_args(args):
    """--sampler NAME plus any rule flags -> one composed sampler."""
    from . import samplers

    flag, default = SAMPLER_DEFAULTS[args.sampler]
    if flag is not None and getattr(args, flag) is None:
        setattr(args, flag, default)
    if args.sampler == "greedy":
        return samplers.Greedy()
    return samplers.Sampler(
        temperature=1.0 if args.temperature is None else args.temperature,
        top_k=args.top_k or 0, top_p=1.0 if args.top_p is None else args.top_p,
        min_p=args.min_p or 0.0, top_h=args.alpha or 0.0,
    )


def cmd_generate(args) -> int:
    _check_output(args)
    from . import samplers

    if args.compare:
        named = [(spec.strip(), samplers.from_spec(spec, args.temperature)) for spec in args.compare.split(",") if spec.strip()]
    else:
        named = [(args.sampler, sampler_from_args(args))]
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    runs = [(name, model.generate(args.prompt, sampler=sampler, max_new_tokens=args.max_new_tokens,
                                  seed=args.seed, stop=args.stop, progress=False)) for name, sampler in named]
    if args.format == "parquet":
        import pandas as pd

        tables = [run.table.assign(sampler=name) for name, run in runs]
        pd.concat(tables, ignore_index=True).to_parquet(args.out, index=False)
        print(f"wrote {sum(len(t) for t in tables)} rows to {args.out}", file=sys.stderr)
        return 0
    if args.format == "json":
        import json

        if len(runs) == 1:
            output = runs[0][1].to_json() + "\n"
        else:
            output = json.dumps({"model": model.name, "runs": [dict(run.to_dict(), sampler=name) for name, run in runs]},
                                ensure_ascii=False) + "\n"
    else:
        from .terminal import render_generations

        output = render_generations(runs, color=args.out is None and _wants_color())
    _write(output, args.out)
    return 0


def cmd_rollouts(args) -> int:
    _check_output(args)
    from . import rewards

    reward = rewards.exact_answer(args.answer) if args.answer is not None else rewards.regex(args.regex)
    sampler = sampler_from_args(args)
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    group = model.rollouts(args.prompt, n=args.n, reward=reward, sampler=sampler, max_new_tokens=args.max_new_tokens,
                           seed=args.seed, chat=False if args.raw else None,
                           thr=None if args.thr == "none" else args.thr, progress=sys.stderr.isatty())
    if args.format == "parquet":
        group.table.to_parquet(args.out, index=False)
        print(f"wrote {len(group.table)} token rows of {len(group)} responses to {args.out}", file=sys.stderr)
        return 0
    if args.format == "json":
        output = group.to_json() + "\n"
    else:
        from .terminal import render_group

        output = render_group(group, color=args.out is None and _wants_color())
    _write(output, args.out)
    return 0


def _write(output: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(output)
    else:
        out.write_text(output, encoding="utf-8")


def cmd_serve(args) -> int:
    import workbench as wb
    from .widgets import serve

    serve(wb.load(args.model, dtype=args.dtype, device=args.device), host=args.host, port=args.port)
    return 0


def cmd_models(args) -> int:
    from .embedded import EMBEDDED

    for name, model in EMBEDDED.items():
        print(f"{name}\t{model.description}")
    return 0


def _read_text(args) -> str:
    if (args.text is None) == (args.file is None):
        raise WorkbenchError("give the text as an argument or with --file PATH (one of them)")
    if args.file is None:
        return args.text
    try:
        return args.file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkbenchError(f"file not found: {args.file}") from None
    except UnicodeDecodeError:
        raise WorkbenchError(f"{args.file} is not UTF-8 text") from None


def _wants_color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def cmd_bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args)


COMMANDS = {"analyze": cmd_analyze, "generate": cmd_generate, "rollouts": cmd_rollouts, "serve": cmd_serve,
            "models": cmd_models, "bench": cmd_bench}

if __name__ == "__main__":
    sys.exit(main())
