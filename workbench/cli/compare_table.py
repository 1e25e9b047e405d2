"""The CLI's table of a comparison (`workbench compare`): what was compared, both sides'
sequence figures, the mean acceptance and the expected tokens per speculative step, the text
colored by one pair signal, then one line per token (both surprisals, the log-ratio, the
divergences, both top-1 tokens, a mark where they differ) and the branches at divergent
positions."""
from __future__ import annotations

import pandas as pd

from ..compare.signals import expected_accepted_tokens
from .terminal import _cell, _finite_max, _paint, _short, sequence_line

COLUMNS = ("surprisal", "ref_surprisal", "log_ratio", "kl_pq", "js", "acceptance")
LABELS = {"surprisal": "surpr p", "ref_surprisal": "surpr q", "log_ratio": "log p/q", "kl_pq": "KL(p‖q)",
          "js": "JS", "acceptance": "accept"}


def render_compare(run, *, color: bool, signal: str = "js", gamma: int = 4) -> str:
    table, about = run.table, run.meta["compare"]
    lines = [_title(run.meta, about)]
    lines += [f"p: {sequence_line(run.meta)}", f"q: {sequence_line({'sequence': run.meta['reference_sequence']})}"]
    acceptance = table["acceptance"].astype("Float64").dropna().astype(float)
    if len(acceptance):
        mean = float(acceptance.mean())
        lines.append(f"mean acceptance {mean:.3f} (q drafting for p) · expected tokens per speculative step with "
                     f"gamma {gamma}: {float(expected_accepted_tokens(mean, gamma)):.2f} at the mean, "
                     f"{float(expected_accepted_tokens(acceptance.to_numpy(), gamma).mean()):.2f} averaged over tokens "
                     f"· top-1 agreement {table['top1_agree'].astype('boolean').dropna().mean():.0%}")
    values = table[signal]
    top = _finite_max(values)
    lines += [f"color = {signal}" + (f" (max {top:.3f})" if top else ""),
              "".join(_paint(run.text[s:e], v, top, color) for s, e, v in zip(table["start"], table["end"], values)),
              ""]
    lines.append(f"{'pos':>5}  {'token':<18}" + "".join(f"{LABELS[c]:>11}" for c in COLUMNS)
                 + f"  {'top-1 p':<14}{'top-1 q':<14}")
    for _, row in table.iterrows():
        cells = "".join(_cell(row[c], row[signal], top, color and c == signal) for c in COLUMNS)
        differ = "" if pd.isna(row["top1_agree"]) or row["top1_agree"] else " ≠"
        guesses = "" if pd.isna(row["top1_token"]) else (f"{_short(repr(row['top1_token']), 13):<14}"
                                                        f"{_short(repr(row['ref_top1_token']), 13):<14}{differ}")
        lines.append(f"{row['position']:>5}  {_short(repr(row['token']), 18):<18}{cells}  {guesses}")
    if "branch" in table and table["branch"].notna().any():
        lines += ["", "branches where the greedy choices differ (p's choice and continuation | q's):"]
        for _, row in table[table["branch"].notna()].iterrows():
            lines.append(f"{row['position']:>5}  before {_short(repr(run.text[:row['start']][-30:]), 34)}: "
                         f"p {row['branch']!r} | q {row['ref_branch']!r}")
    return "\n".join(lines) + "\n"


def _title(meta: dict, about: dict) -> str:
    """"p = model (context ...), q = reference (context ...)"."""
    def context(value) -> str:
        return "" if value is None else f" reading {_short(repr(value), 40)} first"

    return (f"p = {meta.get('model')}{context(about['context'])}, "
            f"q = {about['reference']}{context(about['reference_context'])}")
