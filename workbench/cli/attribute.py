"""`workbench attribute PROMPT --continuation TEXT | --max-new-tokens N --method M`: which
earlier tokens made the model produce each token (`model.attribute`), in every output format.
The table format prints the text colored by each source's total attribution, then one line per
target with its score and its most important sources."""
from __future__ import annotations

import sys
import warnings

import numpy as np

from ..attribution.gradient import BASELINE, RULE, RULES, STEPS, incomplete
from ..errors import IncompleteAttributionWarning, WorkbenchError
from . import main as cli

METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "occlusion", "reagent")  # pipelines.attribute.METHODS
TOP_SOURCES = 3


def add_command(commands) -> None:
    parser = commands.add_parser("attribute", help="which earlier tokens made the model produce each token")
    cli._input_options(parser, "prompt", "the text before the attributed tokens")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--continuation", default=None, help="the text that follows the prompt: its tokens are "
                                                             "attributed (without it and --max-new-tokens: the "
                                                             "prompt's own tokens)")
    source.add_argument("--max-new-tokens", type=int, default=None, help="generate this many tokens greedily and "
                                                                         "attribute them")
    parser.add_argument("--method", choices=METHODS, default="saliency", help="attribution method (default: saliency)")
    parser.add_argument("--foil", default=None, help="contrast every target with this one-token text: log p(y) - "
                                                     "log p(foil)")
    parser.add_argument("--targets", default=None, help="comma-separated token positions to attribute (default: "
                                                        "every continuation token)")
    parser.add_argument("--steps", type=int, default=STEPS,
                        help=f"integrated gradients: path steps (default: {STEPS})")
    parser.add_argument("--baseline", default=BASELINE, help="integrated gradients: 'zeros', or a token id whose "
                                                           f"embedding stands at every position (default: {BASELINE})")
    parser.add_argument("--rule", choices=RULES, default=RULE,
                        help=f"integrated gradients: the path integral's quadrature (default: {RULE})")
    parser.add_argument("--level", choices=("token", "word", "sentence"), default="token",
                        help="occlusion: what is left out at a time (default: token)")
    parser.add_argument("--replacement", choices=("uniform", "predictions"), default="uniform",
                        help="ReAGent: where replacement tokens come from (default: uniform)")
    parser.add_argument("--seed", type=int, default=0, help="ReAGent's draws (default: 0)")
    cli._model_options(parser)
    cli._output_options(parser)


def _targets(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise WorkbenchError(f"--targets takes comma-separated token positions, e.g. 5,6,7; got {text!r}") from None


def _baseline(text: str):
    """'zeros', or a token id (model.attribute checks its range)."""
    return int(text) if text.strip().isdigit() else text


def cmd_attribute(args) -> int:
    prompt = cli._read_text(args, "prompt")
    targets = _targets(args.targets)
    if args.max_new_tokens is not None:
        cli._check_positive(args, "--max-new-tokens")
    cli._check_positive(args, "--steps")
    cli._check_output(args)
    import workbench as wb

    model = wb.load(args.model, dtype=args.dtype, device=args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteAttributionWarning)  # said below as one line, kept in run.meta
        run = model.attribute(prompt, continuation=args.continuation, max_new_tokens=args.max_new_tokens,
                              method=args.method, targets=targets, foil=args.foil, steps=args.steps,
                              baseline=_baseline(args.baseline), rule=args.rule, level=args.level,
                              replacement=args.replacement, seed=args.seed,
                              progress=sys.stderr.isatty())
    cli._check_finite(run.meta)
    if "incomplete" in run.meta["attribution"]:
        print(f"workbench: warning: {run.meta['attribution']['incomplete']}", file=sys.stderr)
    if args.format in cli.FILE_FORMATS:
        cli._save(run, args.format, args.out, f"the attribution of {len(run.arrays['attr_targets'])} tokens")
        return 0
    output = (run.to_json(arrays=True) + "\n" if args.format == "json"
              else render_attribution(run, color=args.out is None and cli._wants_color()))
    cli._write(output, args.out)
    return 0


def render_attribution(run, *, color: bool) -> str:
    """The text colored by each source's total, then per target: position, token, score
    (and the completeness gap of integrated gradients) and its TOP_SOURCES largest sources."""
    from .terminal import _finite_max, _paint, _short

    info = run.meta["attribution"]
    method = info["method"]
    values, targets, table = run.arrays[f"attr_{method}"], run.arrays["attr_targets"], run.table
    totals = table[f"attr_{method}_total"]
    top = _finite_max(totals.abs())
    lines = [f"{run.meta.get('model')}: {method.replace('_', ' ')} of {len(targets)} tokens, score {info['score']}; "
             "color = total attribution received",
             "".join(_paint(run.text[s:e], None if v is None else abs(v), top, color)
                     for s, e, v in zip(table["start"], table["end"], totals.astype(object).where(totals.notna(), None))),
             "", f"{'pos':>5}  {'target':<16}{'score':>10}{'IG gap':>10}  largest sources (position:token value)"]
    gaps = table["ig_gap"].to_numpy(dtype=float)[targets] if "ig_gap" in table else None
    missed = incomplete(gaps, table["ig_delta"].to_numpy(dtype=float)[targets]) if gaps is not None else None
    for k, position in enumerate(targets):
        row = values[k]
        order = [s for s in np.argsort(-np.abs(np.nan_to_num(row)), kind="stable")[:TOP_SOURCES] if not np.isnan(row[s])]
        sources = "  ".join(f"{s}:{table['token'][s]!r} {row[s]:+.3g}" for s in order)
        gap = f"{_gap_cell(gaps[k]):>9}{'!' if missed[k] else ' '}" if gaps is not None else f"{'':>10}"
        lines.append(f"{position:>5}  {_short(repr(table['token'][position]), 16):<16}"
                     f"{table['target_score'][position]:>10.4g}{gap}  {sources}")
    if "incomplete" in info:
        lines.append(f"! {info['incomplete']}")
    return "\n".join(lines) + "\n"


def _gap_cell(gap: float) -> str:
    """A completeness gap in the table's column: the number, or 'not fin.' (never 'nan')."""
    return f"{gap:.2g}" if np.isfinite(gap) else "not fin."
