"""The CLI's readable table: the text as a strip of tokens colored by surprisal, then
one line per token with the uncertainty values (colors only on a terminal)."""
from __future__ import annotations

import pandas as pd

from ..signals import COLUMNS

# Light-to-dark red ramp (24-bit ANSI background), readable with black text.
RAMP = ((255, 255, 255), (255, 230, 200), (255, 190, 140), (250, 140, 100), (230, 80, 70), (190, 30, 50))
RESET = "\x1b[0m"


def render_table(run, *, color: bool, signal: str = "surprisal") -> str:
    table = run.table
    values = table[signal] if signal in table else pd.Series([pd.NA] * len(table))
    top = _finite_max(values)
    lines = [f"{run.meta.get('model')}: {len(table)} tokens, color = {signal} (max {top:.2f})" if top else
             f"{run.meta.get('model')}: {len(table)} tokens"]
    lines += [sequence_line(run.meta)] if run.meta.get("sequence") else []
    strip = "".join(_paint(run.text[s:e], v, top, color) for s, e, v in zip(table["start"], table["end"], values))
    lines += [strip, ""]
    # The registered columns marked for the terminal (`Column.terminal`), in the table's order.
    columns = [c for c in table.columns if c in COLUMNS and COLUMNS[c].terminal]
    trailing = "experts (top-1 per MoE layer)" if "experts" in table else "alternatives"
    header = f"{'pos':>5}  {'token':<18}" + "".join(f"{COLUMNS[c].header:>11}" for c in columns) + f"  {trailing}"
    lines.append(header)
    for _, row in table.iterrows():
        cells = "".join(_cell(row[c], row.get(signal), top, color and c == signal) for c in columns)
        last = " ".join(map(str, row["experts"])) if "experts" in table else _alternatives(row)
        lines.append(f"{row['position']:>5}  {_short(repr(row['token']), 18):<18}{cells}  {last}")
    prediction = run.meta.get("next_token")
    if prediction:
        guesses = "  ".join(f"{token!r} {prob:.2f}" for token, prob in zip(prediction["topk_tokens"],
                                                                         prediction["topk_probs"]))
        lines.append(f"{'next':>5}  {'(after the text)':<18}  {guesses}")
    return "\n".join(lines) + "\n"


LENS_COLUMNS = 7  # layers shown by `render_lens`, evenly spaced from the embeddings to the last layer


def render_lens(run) -> str:
    """The logit lens as a table: for each token, its rank among the vocabulary when each of
    a few evenly spaced layers is read through the final norm and lm_head (0 = the lens's
    top guess), and the first layer from which it stays the top guess."""
    ranks = run.arrays["lens_rank"]  # [L+1, T], -1 where there is no target
    layers = sorted({round(i * (len(ranks) - 1) / (LENS_COLUMNS - 1)) for i in range(LENS_COLUMNS)})
    names = ["emb" if layer == 0 else f"L{layer}" for layer in layers]
    lines = ["", "logit lens: rank of each token at layer (0 = the layer's top guess); 'top from' = first layer "
             "from which it stays the top guess",
             f"{'pos':>5}  {'token':<18}" + "".join(f"{name:>7}" for name in names) + f"{'top from':>10}"]
    for t, (position, token) in enumerate(zip(run.table["position"], run.table["token"])):
        column = ranks[:, t]
        if column[-1] < 0:
            continue  # the first token: nothing predicts it
        settled = _settled_from(column)
        lines.append(f"{position:>5}  {_short(repr(token), 18):<18}" + "".join(f"{column[layer]:>7}" for layer in layers)
                     + f"{'-' if settled is None else ('emb' if settled == 0 else f'L{settled}'):>10}")
    return "\n".join(lines) + "\n"


def _settled_from(ranks) -> int | None:
    """The first layer from which every later rank is 0, or None when the last is not."""
    layer = None
    for index in range(len(ranks) - 1, -1, -1):
        if ranks[index] != 0:
            break
        layer = index
    return layer


def sequence_line(meta: dict) -> str:
    """The sequence's figures (`workbench.pipelines.analyze.sequence_figures`) as one line."""
    figures = meta["sequence"]
    if figures["perplexity"] is None:
        return f"no sequence figures: no finite surprisal over {figures['scored']}"
    return (f"log-probability {figures['total_logprob']:.2f} · mean surprisal {figures['mean_surprisal']:.3f} nats · "
            f"perplexity {figures['perplexity']:.2f} (over {figures['n_scored']} tokens: {figures['scored']})")


def _seed(meta: dict) -> str:
    return "no seed" if meta.get("seed") is None else f"seed {meta['seed']}"


def _finite_max(values) -> float | None:
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    return float(numbers.max()) if len(numbers) else None


def _background(value, top) -> str:
    if value is None or value is pd.NA or not top:
        return ""
    return _ramp_color(RAMP, max(0.0, float(value)), top)


def _ramp_color(ramp, magnitude: float, top: float) -> str:
    """The 24-bit background of `magnitude` in [0, top] on `ramp`, with black text."""
    r, g, b = ramp[min(len(ramp) - 1, int(len(ramp) * magnitude / (top * 1.0001)))]
    return f"\x1b[48;2;{r};{g};{b}m\x1b[38;2;0;0;0m"


def _paint(text: str, value, top, color: bool) -> str:
    return f"{_background(value, top)}{text}{RESET}" if color and text else text


def _cell(value, signal_value, top, color: bool) -> str:
    text = "-" if value is None or value is pd.NA else (f"{value:.3f}" if isinstance(value, float) else str(value))
    return _paint(f"{text:>11}", signal_value, top, color)


def _alternatives(row) -> str:
    tokens, probs = row.get("topk_tokens"), row.get("topk_probs")
    if tokens is None or probs is None:
        return ""
    return "  ".join(f"{t!r} {p:.2f}" for t, p in list(zip(tokens, probs))[:3])


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_generations(runs, *, color: bool) -> str:
    """One or more generations: for each sampler, the text with generated tokens colored by
    their pre-truncation entropy, then mean entropy, mean kept-set size and the step table."""
    blocks = []
    for name, run in runs:
        table = run.table
        generated = table[table["generated"]]
        top = _finite_max(generated["entropy"])
        strip = "".join(_paint(run.text[s:e], v if g else None, top, color)
                        for s, e, v, g in zip(table.start, table.end, table.entropy, table.generated))
        blocks.append(
            f"[{name}] {run.meta.get('sampler')} · {_seed(run.meta)} · {len(generated)} tokens "
            f"({run.meta.get('stop_reason')}) · mean entropy {generated.entropy.mean():.2f} · "
            f"mean kept {generated.kept.mean():.1f}\n{sequence_line(run.meta)}\n{_speculative_line(run.meta)}{strip}\n"
        )
        if len(runs) == 1:
            header = f"{'pos':>5}  {'token':<18}{'entropy':>9}{'kept':>6}{'kept H':>8}{'rank':>6}{'prob':>7}"
            rows = [header] + [
                f"{r.position:>5}  {_short(repr(r.token), 18):<18}{r.entropy:>9.3f}{r.kept:>6}{r.kept_entropy:>8.3f}"
                f"{r.rank:>6}{r.sample_prob:>7.3f}" for r in generated.itertuples()
            ]
            blocks.append("\n".join(rows) + "\n")
    return "\n".join(blocks)


def _speculative_line(meta: dict) -> str:
    """For a generation made with a draft: its measured tokens per step beside the expected ones."""
    info = meta.get("speculative")
    if not info:
        return ""
    return (f"speculative: draft {info['draft']}, gamma {info['gamma']} · {info['steps']} steps · accepted "
            f"{info['accepted']} of {info['drafted']} drafts · {info['tokens_per_step']:.2f} tokens per step (expected "
            f"{info['expected_tokens_given_drafts']:.2f} given the drafts, {info['expected_tokens_analytic']:.2f} from "
            f"the mean acceptance rate{_alpha(info['mean_alpha'])})\n")


def _alpha(mean_alpha) -> str:
    return "" if mean_alpha is None else f" {mean_alpha:.2f}"


# Diverging ramps for signed signals (THR): red below zero, blue above, white at zero.
NEGATIVE = ((255, 255, 255), (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43))
POSITIVE = ((255, 255, 255), (209, 229, 240), (146, 197, 222), (67, 147, 195), (33, 102, 172))


def _signed_background(value, top) -> str:
    if value is None or value is pd.NA or not top or value != value:
        return ""
    return _ramp_color(POSITIVE if value > 0 else NEGATIVE, abs(float(value)), top)


def render_group(group, *, color: bool, signal: str = "thr", top: int = 12) -> str:
    """A group of rollouts: one block per response (reward, advantage, length, why it
    stopped, its text with tokens colored by `signal`, red < 0 < blue), then the tokens with
    the largest |signal|."""
    table = group.table
    has_signal = signal in table
    scale = float(table[signal].abs().max()) if has_signal and len(table) else None
    stops = group.meta.get("stop_reasons", [None] * len(group))
    lines = [f"{group.meta.get('model')}: {len(group)} responses · mean reward {group.rewards.mean():.3f} · "
             f"{group.meta.get('sampler')} · {_seed(group.meta)}"
             + (f" · color = {signal} (max |{signal}| {scale:.3g})" if has_signal and scale else "")]
    if not group.advantages.any():
        lines.append("all rewards are equal: every advantage (and THR) is 0, GRPO learns nothing from this group")
    lines.append("")
    for i, text in enumerate(group.responses):
        rows = group.rows(i)
        lines.append(f"[{i}] reward {group.rewards[i]:g} · advantage {group.advantages[i]:+.3f} · "
                     f"{len(rows)} tokens ({stops[i]})")
        if color and has_signal:
            text = "".join(f"{_signed_background(v, scale)}{text[s:e]}{RESET}" if text[s:e] else ""
                           for s, e, v in zip(rows["start"], rows["end"], rows[signal]))
        lines += [text, ""]
    if has_signal and scale:
        strongest = table.reindex(table[signal].abs().sort_values(ascending=False).index).head(top)
        lines.append(f"tokens with the largest |{signal}|")
        lines.append(f"{'resp':>5}{'pos':>5}  {'token':<18}{'advantage':>10}{signal:>10}{'entropy':>9}")
        lines += [f"{r.response:>5}{r.position:>5}  {_short(repr(r.token), 18):<18}{r.advantage:>+10.3f}"
                  f"{getattr(r, signal):>+10.4f}{r.entropy:>9.3f}" for r in strongest.itertuples()]
    return "\n".join(lines) + "\n"
