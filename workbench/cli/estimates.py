"""`--estimators NAMES` of `workbench analyze` and `generate`: sequence-level uncertainty
estimates (`workbench.estimators`) put into the run (columns contrib_<name>, meta["estimators"]),
so every output format carries them; the table format adds the scores and a contributions table."""
from __future__ import annotations

import math

ALL = "all"


def estimators_option(parser) -> None:
    parser.add_argument("--estimators", default=None,
                        help="sequence uncertainty estimators with per-token contributions, comma-separated, or 'all' "
                             "(msp, perplexity, mean_entropy, surprisal_max, surprisal_q90, surprisal_median, "
                             "entropy_max, token_sar, rauq; by name only: pmi, the answer's pointwise mutual information with "
                             "its prompt)")


def check_names(args) -> None:
    """Before the model loads: every name is a known single-sequence estimator."""
    if args.estimators and args.estimators != ALL:
        from ..estimators import resolve

        resolve(args.estimators)


def add_estimates(args, model, run):
    """The run with the asked estimators' contributions and scores (unchanged without --estimators)."""
    if not args.estimators:
        return run
    from .. import estimators

    names = None if args.estimators == ALL else args.estimators
    return estimators.annotate(run, estimators.estimate(run, names, model=model))


def render_estimates(run) -> str:
    """The scores on one line, then one row per scored token with its contribution to each."""
    from ..estimators import CONTRIBUTION_PREFIX

    records = run.meta.get("estimators")
    if not records:
        return ""
    names = list(records)
    scores = " · ".join(f"{name} {_number(records[name]['score'])} ({records[name]['combine']})" for name in names)
    lines = ["", f"estimators: {scores}", f"{'pos':>5}  {'token':<18}" + "".join(f"{name[:13]:>14}" for name in names)]
    scored = run.table[run.table[[CONTRIBUTION_PREFIX + name for name in names]].notna().any(axis=1)]
    for _, row in scored.iterrows():
        cells = "".join(f"{_number(row[CONTRIBUTION_PREFIX + name]):>14}" for name in names)
        lines.append(f"{row['position']:>5}  {repr(row['token'])[:18]:<18}{cells}")
    return "\n".join(lines) + "\n"


def _number(value) -> str:
    """A score or contribution: "not finite" for None (a score that was not), NaN or inf; "-" for
    <NA>, a token the estimator leaves out (pmi's first answer token without a BOS)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "not finite"
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"
