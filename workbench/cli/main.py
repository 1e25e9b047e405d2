"""`workbench` command line: the same functions as the Python API, for scripts and the
served app. Input errors print one line and exit with status 2 (no traceback), checked before
the model loads where they can be; a run with NaN or infinite values is such an error too.

Output formats: `table` (a terminal view), `json` (every token row, and the run's named
arrays such as the logit lens [layers, tokens]), `parquet` (the token table with the metadata
in the file, the named arrays beside it in `<stem>.arrays.safetensors`) and `run` (the folder
`Run.save` / `Group.save` writes: table, arrays and metadata, loadable again)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..errors import NonFiniteWarning, WorkbenchError
from ..sampler_parameters import BY_NAME, DEFAULT_SAMPLER
from . import corpus_command
from .estimates import add_estimates, check_names, estimators_option, render_estimates

FORMATS = ("table", "json", "parquet", "run")
# `workbench.compare.signals.PAIR_SIGNALS`, named here so that --help needs no torch import
PAIR_SIGNAL_NAMES = ("kl_pq", "kl_qp", "js", "acceptance", "log_ratio", "implicit_reward", "excess_loss", "cdpo_weight")
FILE_FORMATS = ("parquet", "run")  # formats that need --out


SIGNALS_HELP = "{registered signals}"  # filled in when help is shown (`SignalsHelp`)


class SignalsHelp(argparse.HelpFormatter):
    """Help that lists the registered signals (`workbench.signals`), read only when help is
    shown: the signals import torch, which parsing arguments does not need."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action)
        if SIGNALS_HELP not in (text or ""):
            return text
        from ..signals.registry import signals_help

        return text.replace(SIGNALS_HELP, signals_help().replace("%", "%%"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Which tokens matter inside a language model.")
    parser.add_argument("--version", action="version", version=f"token-workbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="per-token signals of a text", formatter_class=SignalsHelp)
    _input_options(analyze, "text", "the text to analyze")
    _chat_option(analyze)
    _model_options(analyze)
    analyze.add_argument("--signals", default="uncertainty",
                         help="comma-separated signal names (default: uncertainty): " + SIGNALS_HELP)
    _alternatives_option(analyze)
    analyze.add_argument("--truncate", action="store_true", help="keep the first context-length tokens of a long text")
    estimators_option(analyze)
    _output_options(analyze)

    generate = commands.add_parser("generate", help="sample a continuation, recording each step's signals")
    _input_options(generate, "prompt", "the text to continue")
    _chat_option(generate)
    _model_options(generate)
    _sampler_options(generate, "generate")
    generate.add_argument("--compare", default=None,
                          help="several samplers side by side, e.g. top-p:0.9,min-p:0.1,top-h:0.4 (instead of "
                               "--sampler and its rule flags; --temperature applies to each)")
    _alternatives_option(generate)
    generate.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (default: 64)")
    generate.add_argument("--seed", type=int, default=None, help="same seed, same output")
    generate.add_argument("--stop", action="append", default=None, help="stop once this string appears (repeatable)")
    estimators_option(generate)
    generate.add_argument("--draft", default=None,
                          help="speculative sampling with this draft model (same vocabulary; e.g. workbench:smollm2-first-k "
                               "for the default model): the same output distribution, traced per step")
    generate.add_argument("--gamma", type=int, default=4, help="with --draft: tokens drafted per step (default: 4)")
    _output_options(generate)

    rollouts = commands.add_parser("rollouts", help="a group of sampled responses: rewards, GRPO advantages, token credit")
    _input_options(rollouts, "prompt", "the question (sent through the chat template when the model has one)")
    _model_options(rollouts)
    answer = rollouts.add_mutually_exclusive_group(required=True)
    answer.add_argument("--answer", help="the expected final answer (reward 1 when the response's answer equals it)")
    answer.add_argument("--regex", help="reward 1 when this regular expression occurs in the response")
    rollouts.add_argument("--n", type=int, default=8, help="responses in the group (default: 8)")
    rollouts.add_argument("--max-new-tokens", type=int, default=64, help="tokens per response at most (default: 64)")
    rollouts.add_argument("--seed", type=int, default=None, help="same seed, same group")
    _sampler_options(rollouts, "rollouts")
    rollouts.add_argument("--thr", choices=["auto", "exact", "cheap", "none"], default="auto",
                          help="Token Hidden Reward: exact (gradients), cheap (hidden states), auto (exact when it "
                               "fits), none (default: auto)")
    rollouts.add_argument("--raw", action="store_true", help="continue the prompt as raw text, not as a chat message")
    _output_options(rollouts)

    compare = commands.add_parser("compare", help="the same tokens under two predictors: two models, or two contexts")
    _input_options(compare, "text", "the text to score")
    _chat_option(compare)
    _model_options(compare)
    compare.add_argument("--reference", default=None,
                         help="the reference model (same tokenizer vocabulary; default: the model itself, with "
                              "--context / --reference-context)")
    compare.add_argument("--context", default=None,
                         help="text the model reads before the scored text (with --chat: its system prompt)")
    compare.add_argument("--reference-context", default=None,
                         help="text the reference reads before the scored text (with --chat: its system prompt)")
    compare.add_argument("--signal", default="js", choices=sorted(PAIR_SIGNAL_NAMES),
                         help="what colors the table's text (default: js)")
    compare.add_argument("--beta", type=float, default=0.1, help="the DPO implicit reward's beta (default: 0.1)")
    compare.add_argument("--cdpo-beta", type=float, default=1.0, help="the cDPO contrast's beta (default: 1)")
    compare.add_argument("--gamma", type=int, default=4,
                         help="draft length for the expected tokens per speculative step in the table (default: 4)")
    compare.add_argument("--commitment", action="store_true",
                         help="each side's commitment layer from the logit lens (one lens pass per layer and side)")
    compare.add_argument("--branches", type=int, default=8,
                         help="divergent positions (largest JS first) that get both greedy continuations (default: 8; "
                              "0: none)")
    compare.add_argument("--branch-tokens", type=int, default=6, help="tokens per continuation (default: 6)")
    _alternatives_option(compare)
    _output_options(compare)

    serve = commands.add_parser("serve", help="the dashboard in a browser (Panel)")
    _model_options(serve)
    serve.add_argument("--reference", default=None,
                       help="a second model with the same tokenizer vocabulary for the compare mode (which also "
                            "compares the model under two contexts without one)")
    serve.add_argument("--draft", default=None,
                       help="a draft model sharing the vocabulary for the generate mode's speculative sampling (e.g. "
                            "workbench:smollm2-first-k for the default model): a Draft box and γ, the trace view")
    serve.add_argument("--corpus", type=Path, default=None,
                       help="a folder written by workbench corpus: the page opens in corpus mode on it (the model: "
                            "the one that scored it, unless --model)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=5006, help="port to listen on (default: 5006)")

    commands.add_parser("models", help="list the embedded models")

    from .attribute import add_command as add_attribute  # the subcommand lives in its own module
    add_attribute(commands)

    bench = commands.add_parser("bench", help="kernel benchmarks: time, GB/s, roofline, speedups (GPU; --quick on CPU)")
    bench.add_argument("--quick", action="store_true", help="tiny shapes on the CPU, to check the harness")
    bench.add_argument("--out", type=Path, help="one JSON for all results, plus a plot next to it (.html); "
                                                 "default with --quick: bench-quick-<device>.json here")
    bench.add_argument("--results-dir", type=Path, default=None,
                       help="without --out: <kernel>-<device>.json per kernel here (default: benchmarks/results)")
    bench.add_argument("--kernels", default=None, help="comma-separated kernel names (default: every registered one)")
    bench.add_argument("--runs", type=int, default=20,
                       help="timed calls per measurement, after warm-up (default: 20, the least allowed)")
    bench.add_argument("--no-compile", action="store_true", help="skip the torch.compile comparison")

    corpus_command.add_parser(commands, _model_options)
    return parser


def _input_options(parser, name: str, what: str):
    """The text as an argument or from --file (a path, or - for standard input)."""
    parser.add_argument("text", nargs="?", metavar=name, help=f"{what} (or --file)")
    parser.add_argument("--file", type=Path, help=f"read the {name} from this file (UTF-8), or from standard input "
                                                  "with --file -")
    parser.add_argument("--replace-invalid", action="store_true",
                        help="replace invalid UTF-8 in the text by U+FFFD instead of refusing it")


def _chat_option(parser):
    parser.add_argument("--chat", action="store_true",
                        help="send the text as the user's message through the model's chat template")


def _as_input(text: str, chat: bool, keyword: str) -> dict:
    """The keyword argument that hands the text to `analyze` (keyword "text") or `generate`
    ("prompt"): the text itself, or with --chat one user message."""
    return {"messages": [{"role": "user", "content": text}]} if chat else {keyword: text}


def _alternatives_option(parser):
    parser.add_argument("--alternatives", type=int, default=5, metavar="K",
                        help="the most likely tokens recorded per position, with their probabilities (default: 5)")


def _sampler_options(parser, command: str):
    default = DEFAULT_SAMPLER[command]
    parser.add_argument("--sampler", default=None, choices=list(BY_NAME),
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


def _check_output(args, kind: str = "run", folders: Sequence[str] = ()) -> None:
    """Before any model loads: a file format has --out, and --out can be written. Nothing is
    created yet (an interrupted run leaves no empty folder): the nearest existing folder above
    --out must be writable, and with --format run, --out (or its `folders` inside, for
    --compare) must be free or hold a saved `kind` ("run" or "group") to replace."""
    if args.format in FILE_FORMATS and args.out is None:
        raise WorkbenchError(f"--format {args.format} writes {'a folder' if args.format == 'run' else 'a file'}: "
                             "add --out PATH")
    if args.out is None:
        return
    if args.format != "run" and args.out.is_dir():
        raise WorkbenchError(f"--out {args.out} is a folder; give a file path (or --format run for a folder)")
    if args.format == "run":
        from ..results.run import META_FILE, check_save_target

        if folders and args.out.exists() and not (args.out.is_dir() and not (args.out / META_FILE).exists()):
            raise WorkbenchError(f"--out {args.out} {'is a saved run' if args.out.is_dir() else 'is a file'}; --compare "
                                 "writes a folder per sampler there: give a new folder or one of earlier --compare runs")
        for folder in [args.out / name for name in folders] or [args.out]:
            check_save_target(folder, kind)
    existing = next(folder for folder in [args.out.parent, *args.out.parent.parents] if folder.exists())
    if not existing.is_dir():
        raise WorkbenchError(f"cannot create the folder of --out {args.out}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkbenchError(f"cannot write --out {args.out}: no permission to write in {existing}")


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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonFiniteWarning)  # `_check_finite` says it as the error
            return COMMANDS[args.command](args)
    except WorkbenchError as error:
        print(f"workbench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130


def cmd_analyze(args) -> int:
    text = _read_text(args, "text")
    _check_output(args)
    check_names(args)
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    run = model.analyze(**_as_input(text, args.chat, "text"), signals=args.signals, top_k=args.alternatives,
                        truncate=args.truncate, progress=sys.stderr.isatty())
    return _output_run(add_estimates(args, model, run), args, _analysis_table, shown=("lens_rank",))


def _analysis_table(run, color: bool) -> str:
    from .terminal import render_lens, render_table

    return (render_table(run, color=color) + (render_lens(run) if "lens_rank" in run.arrays else "")
            + render_estimates(run))


def _output_run(run, args, table, shown=()) -> int:
    """One run in --format: saved (parquet, run), JSON with its arrays, or `table(run, color)`
    (the arrays not `shown` there are named on standard error)."""
    _check_finite(run.meta)
    if args.format in FILE_FORMATS:
        _save(run, args.format, args.out, f"{len(run)} tokens")
        return 0
    if args.format == "json":
        output = run.to_json(arrays=True) + "\n"
    else:
        output = table(run, args.out is None and _wants_color())
        _note_arrays_left_out(run, shown=shown)
    _write(output, args.out)
    return 0


def _check_finite(meta: dict) -> None:
    """A run with NaN or infinite values (`workbench.finite`) is not printed: its numbers mean nothing."""
    if meta.get("non_finite"):
        raise WorkbenchError(f"{meta['non_finite']}; nothing written")


def _note_arrays_left_out(run, shown=()) -> None:
    left_out = [name for name in run.arrays if name not in shown]
    if left_out:
        print(f"workbench: the table does not show the arrays {', '.join(left_out)}: --format json prints them, "
              "--format run --out DIR saves them", file=sys.stderr)


def _save(result, fmt: str, out: Path, what: str) -> None:
    """--format parquet (the token table, arrays beside it) or run (the whole folder, `result.save`)."""
    if fmt == "run":
        result.save(out)
        loader = "wb.Group.load" if hasattr(result, "responses") else "wb.Run.load"
        print(f"wrote {what} to the folder {out} (read it back with {loader})", file=sys.stderr)
    else:
        _write_parquet(result.table, result.arrays, result.meta, out, what)


def _write_parquet(table, arrays: dict, meta: dict, out: Path, what: str) -> None:
    """The token rows to `out`, the run's metadata in the file's key-value metadata (under
    "workbench"), and its named arrays, which rows cannot hold, to `<out stem>.arrays.safetensors`
    beside it (`safetensors.numpy.load_file` reads them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..results.run import save_arrays

    out.parent.mkdir(parents=True, exist_ok=True)
    rows = pa.Table.from_pandas(table, preserve_index=False)
    rows = rows.replace_schema_metadata({**rows.schema.metadata, b"workbench": json.dumps(meta).encode()})
    pq.write_table(rows, out)
    note = ""
    if arrays:
        sidecar = out.with_name(f"{out.stem}.arrays.safetensors")
        save_arrays(arrays, sidecar)
        note = f", and the arrays {', '.join(arrays)} to {sidecar}"
    print(f"wrote {what} to {out}{note}", file=sys.stderr)


# `Sampler` field -> the flag that sets it (each flag is named after its field, but top-H's alpha).
RULE_FLAGS = {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "top_h": "alpha"}
LOW_HINTS = {"alpha": " (alpha near 0 approaches greedy: use --sampler greedy for that)"}  # for a value too low


def _sampler_name(args) -> str:
    """--sampler, or the command's default (`DEFAULT_SAMPLER`) when it is not given."""
    return args.sampler or DEFAULT_SAMPLER[args.command]


def sampler_from_args(args):
    """--sampler NAME plus any rule flags -> one composed sampler (each flag given adds its
    rule; the sampler's own flag defaults to its value in `BY_NAME`). A truncation flag
    outside its sampler's allowed values (`BY_NAME`) is refused: at the value that switches
    its rule off, the run would silently sample without it. --temperature keeps the
    `Sampler`'s own check, where 0 is greedy."""
    from .. import samplers

    given = {rule: getattr(args, flag) for rule, flag in RULE_FLAGS.items() if getattr(args, flag) is not None}
    parameter = BY_NAME[_sampler_name(args)]
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
    prompt = _read_text(args, "prompt")
    named = _named_samplers(args)
    _check_output(args, folders=[_folder_name(name) for name, _ in named] if len(named) > 1 else ())
    _check_positive(args, "--max-new-tokens", "--gamma")
    check_names(args)
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    draft = wb.load(args.draft, dtype=model.dtype, device=model.device) if args.draft else None
    progress = sys.stderr.isatty()
    given = _as_input(prompt, args.chat, "prompt")
    runs = [(name, model.generate(**given, sampler=sampler, max_new_tokens=args.max_new_tokens, seed=args.seed,
                                  stop=args.stop, top_k=args.alternatives, progress=progress, draft=draft,
                                  gamma=args.gamma))
            for name, sampler in named]
    for _, run in runs:
        _check_finite(run.meta)
        add_estimates(args, model, run)
    if args.format == "parquet":
        import pandas as pd

        tables = [run.table.assign(sampler=name) for name, run in runs]
        if len(runs) == 1:
            arrays, meta = runs[0][1].arrays, runs[0][1].meta
        else:  # each sampler's arrays under its name
            arrays = {f"{name}/{key}": values for name, run in runs for key, values in run.arrays.items()}
            meta = {"runs": {name: run.meta for name, run in runs}}
        _write_parquet(pd.concat(tables, ignore_index=True), arrays, meta, args.out,
                       f"{sum(len(t) for t in tables)} rows")
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

        output = render_generations(runs, color=args.out is None and _wants_color()) + "".join(
            render_estimates(run) for _, run in runs)
    _write(output, args.out)
    return 0


def _named_samplers(args) -> list[tuple[str, object]]:
    """(name, sampler) pairs: each of --compare's, or the one of --sampler and its rule flags.
    Refused: an empty or repeated --compare item, and --sampler or a truncation flag beside
    --compare (only --temperature applies to every compared sampler)."""
    from .. import samplers

    if args.compare is None:
        return [(_sampler_name(args), sampler_from_args(args))]
    specs = [spec.strip() for spec in args.compare.split(",")]
    if not all(specs):
        raise WorkbenchError(f"--compare {args.compare!r} has an empty item; give samplers such as "
                             "top-p:0.9,min-p:0.1")
    repeated = sorted({spec for spec in specs if specs.count(spec) > 1})
    if repeated:
        raise WorkbenchError(f"--compare names {', '.join(repeated)} more than once; each sampler once")
    truncation_flags = [flag for rule, flag in RULE_FLAGS.items() if rule != "temperature"]
    beside = [flag for flag in ("sampler", *truncation_flags) if getattr(args, flag) is not None]
    if beside:
        flag = "--" + beside[0].replace("_", "-")
        raise WorkbenchError(f"{flag} does not apply beside --compare: put that sampler in the list "
                             "(e.g. --compare top-p:0.9,top-h:0.3); only --temperature applies to each")
    return [(spec, samplers.from_spec(spec, args.temperature)) for spec in specs]


def _folder_name(sampler_name: str) -> str:
    """A folder name for one --compare sampler: "top-p:0.9" -> "top-p-0.9"."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in sampler_name)


def cmd_rollouts(args) -> int:
    prompt = _read_text(args, "prompt")
    _check_output(args, kind="group")
    _check_positive(args, "--max-new-tokens", "--n")
    from .. import rewards

    reward = rewards.exact_answer(args.answer) if args.answer is not None else rewards.regex(args.regex)
    sampler = sampler_from_args(args)
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    group = model.rollouts(prompt, n=args.n, reward=reward, sampler=sampler, max_new_tokens=args.max_new_tokens,
                           seed=args.seed, chat=False if args.raw else None,
                           thr=None if args.thr == "none" else args.thr, progress=sys.stderr.isatty())
    _check_finite(group.meta)
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


def cmd_compare(args) -> int:
    text = _read_text(args, "text")
    _check_output(args)
    _check_positive(args, "--gamma", "--branch-tokens", "--alternatives")
    if args.branches < 0:
        raise WorkbenchError(f"--branches must be 0 or more, got {args.branches}")
    if args.reference is None and args.context == args.reference_context:
        raise WorkbenchError("nothing to compare: give --reference MODEL (same tokenizer vocabulary), or a --context "
                             "and a --reference-context that differ")
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    reference = None if args.reference is None else wb.load(args.reference, dtype=args.dtype, device=args.device)
    given = _as_input(text, args.chat, "text")
    run = model.compare(**given, reference=reference, context=args.context, reference_context=args.reference_context,
                        beta=args.beta, cdpo_beta=args.cdpo_beta, top_k=args.alternatives, commitment=args.commitment,
                        branches=args.branches, branch_tokens=args.branch_tokens, progress=sys.stderr.isatty())
    from .compare_table import render_compare

    return _output_run(run, args, lambda run, color: render_compare(run, color=color, signal=args.signal,
                                                                      gamma=args.gamma))


def _write(output: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(output)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(output, encoding="utf-8")


def cmd_serve(args) -> int:
    _check_port_free(args.host, args.port)  # before the model loads
    import workbench as wb
    from ..widgets import serve

    name = args.model
    if args.corpus is not None and name is None:  # the model whose token ids the corpus holds
        name = wb.CorpusFolder(args.corpus).manifest["settings"]["model"]["name"]
    model = wb.load(name, dtype=args.dtype, device=args.device)
    reference = None if args.reference is None else wb.load(args.reference, dtype=args.dtype, device=args.device)
    if reference is not None:
        from ..model.vocabulary import check_same_vocabulary

        check_same_vocabulary(model, reference, "--reference")
    draft = None if args.draft is None else wb.load(args.draft, dtype=model.dtype, device=model.device)
    if draft is not None:  # as `generate --draft` loads it and speculative sampling checks it, before serving
        from ..decoding.speculative import require_shared_vocabulary

        require_shared_vocabulary(model, draft)
    serve(model, reference=reference, draft=draft, corpus=args.corpus, host=args.host, port=args.port)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """The port is a port number, the host an address of this machine, and nothing listens there."""
    import errno
    import socket

    if not 0 <= port <= 65535:
        raise WorkbenchError(f"--port must be in [0, 65535] (0: any free port), got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except socket.gaierror as error:
        raise WorkbenchError(f"--host {host} is not an address or a known host name ({error.strerror})") from None
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise WorkbenchError(f"cannot listen on {host}:{port} ({error.strerror}): another program (perhaps "
                                 "another workbench serve) uses it; choose another with --port") from None
        raise WorkbenchError(f"cannot listen on {host}:{port} ({error.strerror}); give --host an address of this "
                             "machine (127.0.0.1, 0.0.0.0 for every one) and --port a free port") from None


def cmd_attribute(args) -> int:
    from .attribute import cmd_attribute as attribute  # its own module, which uses the helpers here

    return attribute(args)


def cmd_models(args) -> int:
    from ..model.embedded import EMBEDDED

    for name, model in EMBEDDED.items():
        print(f"{name}\t{model.description}")
    return 0


def _read_text(args, what: str) -> str:
    """The text (or prompt) from the argument or --file, checked before any model loads
    (`tokens.check_text`); invalid UTF-8 becomes U+FFFD with --replace-invalid."""
    from ..tokens import check_text, replace_invalid

    if (args.text is None) == (args.file is None):
        raise WorkbenchError(f"give the {what} as an argument or with --file PATH (one of them)")
    text = args.text if args.file is None else _read_file(args.file, args.replace_invalid)
    if args.replace_invalid:
        text = replace_invalid(text)
    check_text(text, what)
    return text


def _read_file(path: Path, replace_invalid: bool) -> str:
    """A UTF-8 text file, or standard input for "-", without a leading byte-order mark."""
    errors = "replace" if replace_invalid else "strict"
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        return data.decode("utf-8-sig", errors=errors)
    except FileNotFoundError:
        raise WorkbenchError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise WorkbenchError(f"{path} is a folder; give a text file") from None
    except PermissionError:
        raise WorkbenchError(f"no permission to read {path}") from None
    except UnicodeDecodeError as error:
        raise WorkbenchError(f"{path} is not UTF-8 text (byte {error.start}: {error.reason}); fix it, or replace "
                             "such bytes with U+FFFD: --replace-invalid") from None


def _wants_color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def cmd_bench(args) -> int:
    from ..bench.timing import main as bench_main

    return bench_main(args)


COMMANDS = {"analyze": cmd_analyze, "generate": cmd_generate, "rollouts": cmd_rollouts, "compare": cmd_compare,
            "serve": cmd_serve, "models": cmd_models, "bench": cmd_bench, "corpus": corpus_command.cmd_corpus,
            "attribute": cmd_attribute}

if __name__ == "__main__":
    sys.exit(main())
