"""`workbench` command line: the same functions as the Python API, for scripts and the
served app. Input errors print one line and exit with status 2 (no traceback).

Output formats: `table` (a terminal view), `json` (every token row, and the run's named
arrays such as the logit lens [layers, tokens]), `parquet` (the token table) and `run` (the
folder `Run.save` / `Group.save` writes: table, arrays and metadata, loadable again)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import WorkbenchError
from .sampler_parameters import BY_NAME

FORMATS = ("table", "json", "parquet", "run")
FILE_FORMATS = ("parquet", "run")  # formats that need --out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Which tokens matter inside a language model.")
    parser.add_argument("--version", action="version", version=f"token-workbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="per-token signals of a text")
    analyze.add_argument("text", nargs="?", help="the text to analyze (or --file)")
    analyze.add_argument("--file", type=Path, help="read the text from this file (UTF-8)")
    _model_options(analyze)
    analyze.add_argument("--signals", default="uncertainty",
                         help="comma-separated signal names (default: uncertainty); e.g. uncertainty, logit_lens, "
                              "attention, keyformer, routing")
    analyze.add_argument("--top-k", type=int, default=5, help="alternatives kept per token (default: 5)")
    analyze.add_argument("--truncate", action="store_true", help="keep the first context-length tokens of a long text")
    _output_options(analyze)

    generate = commands.add_parser("generate", help="sample a continuation, recording each step's signals")
    generate.add_argument("prompt", help="the text to continue")
    _model_options(generate)
    _sampler_options(generate, default="top-p")
    generate.add_argument("--compare", default=None, help="several samplers side by side, e.g. top-p:0.9,min-p:0.1,top-h:0.4")
    generate.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (default: 64)")
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
    rollouts.add_argument("--max-new-tokens", type=int, default=64, help="tokens per response at most (default: 64)")
    rollouts.add_argument("--seed", type=int, default=None, help="same seed, same group")
    _sampler_options(rollouts, default="temperature")
    rollouts.add_argument("--thr", choices=["auto", "exact", "cheap", "none"], default="auto",
                          help="Token Hidden Reward: exact (gradients), cheap (hidden states), auto (exact when it fits)")
    rollouts.add_argument("--raw", action="store_true", help="continue the prompt as raw text, not as a chat message")
    _output_options(rollouts)

    serve = commands.add_parser("serve", help="the dashboard in a browser (Panel)")
    _model_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=5006, help="port to listen on (default: 5006)")

    commands.add_parser("models", help="list the embedded models")

    bench = commands.add_parser("bench", help="kernel benchmarks: time, GB/s, roofline, speedups (GPU; --quick on CPU)")
    bench.add_argument("--quick", action="store_true", help="tiny shapes on the CPU, to check the harness")
    bench.add_argument("--out", type=Path, help="one JSON for all results, plus a plot next to it (.html); "
                                                 "default with --quick: bench-quick-<device>.json here")
    bench.add_argument("--results-dir", type=Path, default=None,
                       help="without --out: <kernel>-<device>.json per kernel here (default: benchmarks/results)")
    bench.add_argument("--kernels", default=None, help="comma-separated kernel names (default: every registered one)")
    bench.add_argument("--runs", type=int, default=20, help="timed calls per measurement, after warm-up (>= 20)")
    bench.add_argument("--no-compile", action="store_true", help="skip the torch.compile comparison")
    return parser


def _sampler_options(parser, default: str):
    parser.add_argument("--sampler", default=default, choices=list(BY_NAME),
                        help=f"truncation rule (default: {default}); its value comes from the flag below, and the "
                             "other rule flags add their rules to it")

    def default_of(name: str) -> str:
        return f"(default: {BY_NAME[name].default:g})"

    parser.add_argument("--temperature", type=float, default=None,
                        help=f"temperature before truncation {default_of('temperature')}")
    parser.add_argument("--top-k", type=int, default=None, help=f"top-k: keep the k most likely {default_of('top-k')}")
    parser.add_argument("--top-p", type=float, default=None,
                        help=f"top-p: smallest set with this mass {default_of('top-p')}")
    parser.add_argument("--min-p", type=float, default=None, help=f"min-p: keep p >= m * max p {default_of('min-p')}")
    parser.add_argument("--alpha", type=float, default=None,
                        help=f"top-H: entropy budget alpha * H(p) {default_of('top-h')}")


def _output_options(parser):
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default), json (rows and arrays), parquet (rows; needs --out), run (a folder "
                             "that wb.Run.load / wb.Group.load reads back; needs --out)")
    parser.add_argument("--out", type=Path, help="write here instead of stdout (a folder for --format run)")


def _check_output(args) -> None:
    """Before any model loads: a file format has --out, and --out can be written."""
    if args.format in FILE_FORMATS and args.out is None:
        raise WorkbenchError(f"--format {args.format} writes {'a folder' if args.format == 'run' else 'a file'}: "
                             "add --out PATH")
    if args.out is None:
        return
    if args.format != "run" and args.out.is_dir():
        raise WorkbenchError(f"--out {args.out} is a folder; give a file path (or --format run for a folder)")
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WorkbenchError(f"cannot create the folder of --out {args.out}: {error.strerror}") from None


def _check_positive(args, *flags: str) -> None:
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value < 1:
            raise WorkbenchError(f"{flag} must be a positive integer, got {value}")


def _model_options(parser):
    parser.add_argument("--model", default=None, help="embedded name, HF id, local folder or .gguf (default: workbench:smollm2-135m)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: fp32 on CPU, bf16 on GPU)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps or auto (default: cuda when available)")


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
    if args.format in FILE_FORMATS:
        _save(run, args.format, args.out, f"{len(run)} tokens")
        return 0
    if args.format == "json":
        output = run.to_json(arrays=True) + "\n"
    else:
        from .terminal import render_lens, render_table

        color = args.out is None and _wants_color()
        output = render_table(run, color=color) + (render_lens(run) if "lens_rank" in run.arrays else "")
        _note_arrays_left_out(run, shown=("lens_rank",))
    _write(output, args.out)
    return 0


def _note_arrays_left_out(run, shown=()) -> None:
    left_out = [name for name in run.arrays if name not in shown]
    if left_out:
        print(f"workbench: the table does not show the arrays {', '.join(left_out)}: --format json prints them, "
              "--format run --out DIR saves them", file=sys.stderr)


def _save(result, fmt: str, out: Path, what: str) -> None:
    """--format parquet (the token table) or run (the whole folder, `result.save`)."""
    if fmt == "run":
        result.save(out)
        loader = "wb.Group.load" if hasattr(result, "responses") else "wb.Run.load"
        print(f"wrote {what} to the folder {out} (read it back with {loader})", file=sys.stderr)
    else:
        result.table.to_parquet(out, index=False)
        print(f"wrote {what} to {out}", file=sys.stderr)


# `Sampler` field -> the flag that sets it (each flag is named after its field, but top-H's alpha).
RULE_FLAGS = {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "top_h": "alpha"}
LOW_HINTS = {"alpha": " (alpha near 0 approaches greedy: use --sampler greedy for that)"}  # for a value too low


def sampler_from_args(args):
    """--sampler NAME plus any rule flags -> one composed sampler (each flag given adds its
    rule; the sampler's own flag defaults to its value in `BY_NAME`). A truncation flag
    outside its sampler's allowed values (`BY_NAME`) is refused: at the value that switches
    its rule off, the run would silently sample without it. --temperature keeps the
    `Sampler`'s own check, where 0 is greedy."""
    from . import samplers

    given = {rule: getattr(args, flag) for rule, flag in RULE_FLAGS.items() if getattr(args, flag) is not None}
    parameter = BY_NAME[args.sampler]
    if parameter is None:
        if given:
            flag = RULE_FLAGS[next(iter(given))]
            raise WorkbenchError(f"greedy takes no parameters, got --{flag.replace('_', '-')}; "
                                 "choose another --sampler to use it")
        return samplers.Greedy()
    given.setdefault(parameter.rule, parameter.default)
    for truncation in BY_NAME.values():
        if truncation is None or truncation.rule == "temperature":
            continue
        value, flag = given.get(truncation.rule), RULE_FLAGS[truncation.rule]
        if value is not None and value not in truncation.allowed:
            hint = LOW_HINTS.get(flag, "") if value <= truncation.allowed.low else ""
            raise WorkbenchError(f"--{flag.replace('_', '-')} must be {truncation.allowed.interval()}, "
                                 f"got {value}{hint}")
    return samplers.Sampler(**given)


def cmd_generate(args) -> int:
    if not args.prompt.strip():
        raise WorkbenchError("give a prompt to continue (it is empty)")
    _check_output(args)
    _check_positive(args, "--max-new-tokens")
    from . import samplers

    if args.compare:
        named = [(spec.strip(), samplers.from_spec(spec, args.temperature)) for spec in args.compare.split(",") if spec.strip()]
    else:
        named = [(args.sampler, sampler_from_args(args))]
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    progress = sys.stderr.isatty()
    runs = [(name, model.generate(args.prompt, sampler=sampler, max_new_tokens=args.max_new_tokens,
                                  seed=args.seed, stop=args.stop, progress=progress)) for name, sampler in named]
    if args.format == "parquet":
        import pandas as pd

        tables = [run.table.assign(sampler=name) for name, run in runs]
        pd.concat(tables, ignore_index=True).to_parquet(args.out, index=False)
        print(f"wrote {sum(len(t) for t in tables)} rows to {args.out}", file=sys.stderr)
        return 0
    if args.format == "run":
        for name, run in runs:  # one sampler: the folder itself; --compare: a folder per sampler
            out = args.out if len(runs) == 1 else args.out / _folder_name(name)
            _save(run, "run", out, f"{len(run)} tokens" + (f" ({name})" if len(runs) > 1 else ""))
        return 0
    if args.format == "json":
        if len(runs) == 1:
            output = runs[0][1].to_json(arrays=True) + "\n"
        else:
            output = json.dumps({"model": model.name, "runs": [dict(run.to_dict(arrays=True), sampler=name)
                                                               for name, run in runs]}, ensure_ascii=False) + "\n"
    else:
        from .terminal import render_generations

        output = render_generations(runs, color=args.out is None and _wants_color())
    _write(output, args.out)
    return 0


def _folder_name(sampler_name: str) -> str:
    """A folder name for one --compare sampler: "top-p:0.9" -> "top-p-0.9"."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in sampler_name)


def cmd_rollouts(args) -> int:
    if not args.prompt.strip():
        raise WorkbenchError("give a question to answer (the prompt is empty)")
    _check_output(args)
    _check_positive(args, "--max-new-tokens", "--n")
    from . import rewards

    reward = rewards.exact_answer(args.answer) if args.answer is not None else rewards.regex(args.regex)
    sampler = sampler_from_args(args)
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    group = model.rollouts(args.prompt, n=args.n, reward=reward, sampler=sampler, max_new_tokens=args.max_new_tokens,
                           seed=args.seed, chat=False if args.raw else None,
                           thr=None if args.thr == "none" else args.thr, progress=sys.stderr.isatty())
    if args.format in FILE_FORMATS:
        _save(group, args.format, args.out, f"{len(group.table)} token rows of {len(group)} responses")
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
    _check_port_free(args.host, args.port)  # before the model loads
    import workbench as wb
    from .widgets import serve

    serve(wb.load(args.model, dtype=args.dtype, device=args.device), host=args.host, port=args.port)
    return 0


def _check_port_free(host: str, port: int) -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as error:
        raise WorkbenchError(f"cannot listen on {host}:{port} ({error.strerror}): another program (perhaps another "
                             "workbench serve) uses it; choose another with --port") from None


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
    except IsADirectoryError:
        raise WorkbenchError(f"{args.file} is a folder; give a text file") from None
    except PermissionError:
        raise WorkbenchError(f"no permission to read {args.file}") from None
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
