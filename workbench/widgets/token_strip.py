"""Token strip: the analyzed text token by token, each token's background colored by one
signal, with a hover tooltip (position, token, value, top-k alternatives) and click-to-select.

The HTML is self-contained and works offline: no external assets, one `<span>` per token,
colors as a few CSS classes (the colorscale quantized to `LEVELS` steps; the exact value is
in the tooltip), token details in data attributes rendered by CSS `attr()`, and small inline
handlers on the strip for selection: `onclick`, and `onkeydown` for the keyboard (the
tokens are a list box: Tab reaches the selected token, or the first; the arrow keys, Home
and End move the selection along the strip's page; each token's accessible name holds its
position, text and value). The visible text of the strip is
exactly `run.text`: markers for zero-width tokens and newlines, and the tooltips, are
CSS-generated content, not text nodes.

In a generated run (a boolean `generated` column, False for the prompt's tokens), the prompt
is told apart from the generation: prompt tokens are underlined (dotted), a dark bar stands
before the first generated token, and the legend says where the generation starts (on
every page of a long run, the bar being on one page only).
"""
from __future__ import annotations

import html
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workbench.errors import WorkbenchError
from workbench.results.run import Run

# Sequential colorscales, evenly spaced stops from the bottom (low values) to the top.
COLORSCALES: dict[str, tuple[str, ...]] = {
    "viridis": ("#440154", "#482878", "#3e4989", "#31688e", "#26828e",
                "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"),
    "reds": ("#ffffff", "#fcbba1", "#fb6a4a", "#cb181d", "#67000d"),
}
LEVELS = 65  # color steps; level 0 is the bottom stop, LEVELS - 1 the top stop; odd, so that the middle
# level is the scale's midpoint (zero on a diverging scale)
# Table columns that describe the token itself, not a signal.
TOKEN_COLUMNS = ("position", "token_id", "start", "end")
TOP_K_COLUMNS = ("topk_ids", "topk_tokens", "topk_probs")


@dataclass(frozen=True)
class TokenStrip:
    """A rendered strip: `html` is a fragment for notebooks and web pages; `save` writes a
    standalone HTML file."""

    html: str
    signal: str
    n_tokens: int

    def _repr_html_(self) -> str:
        return self.html

    def save(self, path: str | Path) -> Path:
        """Write a standalone HTML document (UTF-8, no external assets) to `path`."""
        return save_page(path, f"Token strip: {self.signal}", self.html)

    def __repr__(self) -> str:
        return f"TokenStrip(signal={self.signal!r}, tokens={self.n_tokens})"


def save_page(path: str | Path, title: str, fragment: str) -> Path:
    """Write `fragment` (self-contained HTML) to `path` as a standalone UTF-8 page titled `title`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title></head>\n<body>\n{fragment}\n</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path


def signal_columns(table: pd.DataFrame) -> list[str]:
    """The scalar numeric signal columns of a run table."""
    return [c for c in table.columns
            if c not in TOKEN_COLUMNS and pd.api.types.is_numeric_dtype(table[c])
            and not pd.api.types.is_bool_dtype(table[c])]


def token_strip(run: Run, signal: str = "surprisal", *, colorscale: str | Sequence[str] = "viridis",
                vmin: float | None = None, vmax: float | None = None,
                window: tuple[int, int] | None = None) -> TokenStrip:
    """Render `run` as a token strip colored by the `signal` column.

    colorscale: a name in `COLORSCALES` or a sequence of "#rrggbb" stops (low to high).
    vmin, vmax: the values mapped to the bottom and top colors (default: the signal's
    min and max over the whole run); values outside are clipped. Missing values (<NA>,
    e.g. the first token, which has no prediction) are drawn hatched grey.
    window: (start, stop) positions: render only those tokens (one page of a long run,
    see `strip_page`), with the colors of the whole run.
    Rank (0 = the most likely token, thousands for the worst) is colored on a log scale,
    log10(1 + rank), as the logit lens colors it; the legend and tooltips give ranks.
    """
    table = run.table
    available = signal_columns(table)
    if signal not in available:
        raise WorkbenchError(
            f"unknown signal '{signal}'; this run's signal columns are: {', '.join(available) or '(none)'}")
    stops = _stops(colorscale)
    values = [None if pd.isna(v) else float(v) for v in table[signal]]
    present = [v for v in values if v is not None]
    lo = vmin if vmin is not None else (min(present) if present else 0.0)
    hi = vmax if vmax is not None else (max(present) if present else 1.0)
    scale = _log_rank if signal == "rank" else float

    start, stop = _window(window, len(table))
    values = values[start:stop]
    levels = [None if v is None else _level(scale(v), scale(lo), scale(hi)) for v in values]
    integer = pd.api.types.is_integer_dtype(table[signal])
    generated = _generated(table)
    spans = _token_spans(run, table.iloc[start:stop], values, levels, integer=integer, generated=generated,
                         signal=signal)
    strip_id = f"tw-{uuid.uuid4().hex[:12]}"
    parts = [
        f'<div class="tw-strip" id="{strip_id}" data-signal="{html.escape(signal)}" '
        f'data-first="{start}" data-stop="{stop}" onclick="{_ONCLICK}" onkeydown="{_ONKEYDOWN}" '
        f'onmouseover="{_ONPOINT}" onfocusin="{_ONPOINT}">',
        f"<style>{_css(strip_id, signal, stops, sorted({level for level in levels if level is not None}))}</style>",
        _legend(signal + (" (0 = the most likely; log scale)" if signal == "rank" else ""), stops, lo, hi,
                has_missing=len(present) < len(values), model=run.meta.get("model"),
                generation_start=None if generated is None else generated.index(True)),
        f'<div class="tw-text" role="listbox" aria-label="tokens, colored by {html.escape(signal)}">'
        f'{"".join(spans)}</div>',
        '<div class="tw-info">click a token to select it</div>',
        "</div>",
    ]
    return TokenStrip("\n".join(parts), signal, stop - start)


# ----- pages of long runs --------------------------------------------------------------------
PAGE_TOKENS = 400  # tokens per page of the strip in the explorer and the dashboard


def page_count(n_tokens: int, page_tokens: int = PAGE_TOKENS) -> int:
    return max(1, -(-n_tokens // page_tokens))


def page_of(position: int, page_tokens: int = PAGE_TOKENS) -> int:
    return position // page_tokens


def page_window(page: int, n_tokens: int, page_tokens: int = PAGE_TOKENS) -> tuple[int, int]:
    """(start, stop) positions of `page` (0-based)."""
    start = min(max(page, 0), page_count(n_tokens, page_tokens) - 1) * page_tokens
    return start, min(start + page_tokens, n_tokens)


def strip_page(run: Run, signal: str, page: int, page_tokens: int = PAGE_TOKENS, **colors) -> TokenStrip:
    """One page of `run`'s strip: a long run's DOM stays small (a few hundred spans), the
    colors stay those of the whole run (or `colors`: `token_strip`'s colorscale, vmin, vmax)."""
    return token_strip(run, signal, window=page_window(page, len(run.table), page_tokens), **colors)


def _window(window: tuple[int, int] | None, n_tokens: int) -> tuple[int, int]:
    if window is None:
        return 0, n_tokens
    start, stop = (int(v) for v in window)
    if not 0 <= start <= stop <= n_tokens:
        raise WorkbenchError(f"window {window} is not within the run's {n_tokens} tokens")
    return start, stop


# ----- colors ------------------------------------------------------------------------------
def _stops(colorscale: str | Sequence[str]) -> list[tuple[int, int, int]]:
    if isinstance(colorscale, str):
        if colorscale not in COLORSCALES:
            raise WorkbenchError(f"unknown colorscale '{colorscale}'; use one of {', '.join(COLORSCALES)} "
                                 "or a list of '#rrggbb' colors")
        colorscale = COLORSCALES[colorscale]
    if len(colorscale) < 2:
        raise WorkbenchError("a colorscale needs at least two colors")
    try:
        return [_rgb(c) for c in colorscale]
    except ValueError:
        raise WorkbenchError(f"colorscale colors must be '#rrggbb' strings, got {list(colorscale)}") from None


def _rgb(color: str) -> tuple[int, int, int]:
    if len(color) != 7 or color[0] != "#":
        raise ValueError(color)
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _log_rank(rank: float) -> float:
    """The value a rank is colored by: log10(1 + rank), as in the logit lens."""
    return math.log10(1 + max(rank, 0.0))


def _level(value: float, lo: float, hi: float) -> int:
    """value -> color level in [0, LEVELS - 1], linear between lo and hi, clipped."""
    t = 0.0 if hi <= lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)
    return round(t * (LEVELS - 1))


def _level_color(stops: Sequence[tuple[int, int, int]], level: int) -> str:
    """The '#rrggbb' color of `level`: piecewise-linear interpolation between the stops."""
    x = level / (LEVELS - 1) * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    f = x - i
    rgb = (round(a + (b - a) * f) for a, b in zip(stops[i], stops[i + 1]))
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _is_dark(color: str) -> bool:
    """WCAG relative luminance below the point where white text reads better than black."""
    def linear(c: int) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in _rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.18


# ----- HTML --------------------------------------------------------------------------------
def _generated(table: pd.DataFrame) -> list[bool] | None:
    """Whether each token of the run was generated, when the run holds both prompt and
    generated tokens (its `generated` column); None otherwise (nothing to tell apart)."""
    if "generated" not in table.columns:
        return None
    flags = table["generated"].fillna(False).astype(bool).tolist()
    return flags if any(flags) and not all(flags) else None


def _token_spans(run: Run, table: pd.DataFrame, values, levels, *, integer: bool,
                 generated: list[bool] | None, signal: str) -> list[str]:
    """One span per token of `table` (the run's table, or a window of it); text not covered
    by a token span is emitted as plain text (before the run's first token and after its
    last one only on the windows that hold them). `generated` (per token of the run, see
    `_generated`) marks prompt tokens (class p) and the first token after a prompt (g0).
    Each span is an option of the strip's list box (named "tokens, colored by <signal>"),
    named by its position, text and value; Tab reaches the first until another is selected
    (the selected one then; a span gets its tabindex when selected)."""
    text, spans, n_tokens = run.text, [], len(run.table)
    first = len(table) == 0 or table["position"].iloc[0] == 0
    last = len(table) == 0 or table["position"].iloc[-1] == n_tokens - 1
    cursor = 0 if first else int(table["start"].iloc[0])
    top_k = all(c in table.columns for c in TOP_K_COLUMNS)
    roles = table["role"] if "role" in table.columns else [None] * len(table)
    for number, (row, value, level, role) in enumerate(zip(table.itertuples(index=False), values, levels, roles)):
        start, end = int(row.start), int(row.end)
        if start > cursor:
            spans.append(html.escape(text[cursor:start]))
        piece = text[start:end]
        classes = ["t", "na" if level is None else f"l{level}"]
        if generated is not None:
            position = int(row.position)
            if not generated[position]:
                classes.append("p")
            elif position > 0 and not generated[position - 1]:
                classes.append("g0")
        attrs = {"data-i": str(row.position), "data-r": repr(row.token)}
        if role not in (None, "text"):
            attrs["data-role"] = role
        attrs["data-v"] = "n/a" if value is None else str(int(value)) if integer else f"{value:.4g}"
        attrs.update({"role": "option", "aria-label": f"#{row.position} {row.token!r}: {attrs['data-v']}"})
        if number == 0:
            attrs["tabindex"] = "0"
        if top_k and row.topk_tokens is not None:
            attrs["data-k"] = _top_k(row.topk_ids, row.topk_tokens, row.topk_probs, row.token_id)
        if not piece:
            classes.append("z")
            attrs["data-z"] = row.token
        elif "\n" in piece and not piece.strip():
            classes.append("nl")
        attributes = "".join(f' {k}="{_attr(v)}"' for k, v in attrs.items())
        spans.append(f'<span class="{" ".join(classes)}"{attributes}>{html.escape(piece)}</span>')
        cursor = max(cursor, end)
    if cursor < len(text) and last:
        spans.append(html.escape(text[cursor:]))
    return spans


def _attr(value: str) -> str:
    """Escape for a double-quoted attribute (quotes other than `"` stay as they are)."""
    return html.escape(value, quote=False).replace('"', "&quot;")


def _top_k(ids, tokens, probs, actual_id) -> str:
    """Tooltip lines for the top-k alternatives; the token that actually came is marked."""
    return "\n".join(f"{'✓' if i == actual_id else ' '} {p:7.2%}  {t!r}" for i, t, p in zip(ids, tokens, probs))


def _legend(signal: str, stops, lo: float, hi: float, *, has_missing: bool, model,
            generation_start: int | None) -> str:
    """The strip's header: the signal, its color bar, the missing-value swatch, where the
    generation starts (position `generation_start`, None: not a generated run), the model."""
    gradient = ", ".join(_level_color(stops, round(i * (LEVELS - 1) / 8)) for i in range(9))
    missing = '<span class="tw-sw na"></span> no value' if has_missing else ""
    split = ("" if generation_start is None else
             f'<span class="tw-split"><span class="tw-prompt">prompt</span>'
             f'<span class="tw-gen">generated from #{generation_start}</span></span>')
    model_name = f'<span class="tw-model">{html.escape(str(model))}</span>' if model else ""
    return (f'<div class="tw-legend"><b>{html.escape(signal)}</b> <span>{lo:.4g}</span>'
            f'<span class="tw-bar" style="background:linear-gradient(to right, {gradient})"></span>'
            f"<span>{hi:.4g}</span>{missing}{split}{model_name}</div>")


def _css(strip_id: str, signal: str, stops, used_levels: list[int]) -> str:
    """Style rules scoped to one strip; one rule per color level actually used."""
    s = f"#{strip_id}"
    rules = [
        f"{s}{{font:14px/1.5 system-ui,sans-serif;color:#222;margin:4px 0}}",
        f"{s} .tw-legend{{display:flex;align-items:center;gap:6px;font-size:12px;margin-bottom:6px}}",
        f"{s} .tw-bar{{display:inline-block;width:140px;height:10px;border:1px solid #999}}",
        f"{s} .tw-sw{{display:inline-block;width:14px;height:10px;border:1px solid #999;margin-left:10px}}",
        f"{s} .tw-model{{margin-left:auto;color:#595959}}",  # 7:1 on white
        f"{s} .tw-split{{margin-left:10px;display:inline-flex;gap:8px}}",
        f"{s} .tw-prompt,{s} .t.p{{text-decoration:underline dotted;text-underline-offset:4px}}",
        f"{s} .tw-gen,{s} .t.g0{{border-left:3px solid #111;padding-left:2px;margin-left:3px}}",
        f"{s} .t.g0{{box-shadow:inset 2px 0 #fff,inset -1px 0 rgba(255,255,255,.55)}}",  # the bar clear of the color
        f"{s} .tw-text{{white-space:pre-wrap;overflow-wrap:anywhere;"
        "font:15px/1.9 ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono',monospace}",
        f"{s} .t{{position:relative;cursor:pointer;border-radius:2px;padding:1px 0;"
        "box-shadow:inset -1px 0 rgba(255,255,255,.55);-webkit-box-decoration-break:clone;box-decoration-break:clone}",
        f"{s} .t.na{{background:repeating-linear-gradient(45deg,#e4e4e4 0 3px,#f7f7f7 3px 6px);color:#555}}",
        f"{s} .tw-sw.na{{background:repeating-linear-gradient(45deg,#e4e4e4 0 3px,#f7f7f7 3px 6px)}}",
        f"{s} .t.z::before{{content:attr(data-z);font-size:10px;color:#777;border:1px dashed #aaa;"
        "border-radius:3px;padding:0 2px;margin:0 1px;vertical-align:1px}",
        f"{s} .t.nl::before{{content:'\\21B5';color:#999;font-size:11px}}",
        f"{s} .t:hover{{outline:1px solid #333}}",
        f"{s} .t.sel{{outline:2px solid #e4572e;outline-offset:1px}}",
        f"{s} .t:focus-visible{{outline:3px solid #1a4fd6;outline-offset:2px}}",
        f"{s} .t:focus-visible::after,{s} .t:hover::after{{content:'#' attr(data-i) '  ' attr(data-r) "
        "'  ' attr(data-role) "
        f"'\\A {_css_string(signal)} = ' attr(data-v) '\\A ' attr(data-k);"
        "position:absolute;left:0;top:100%;z-index:20;margin-top:4px;padding:4px 8px;white-space:pre;"
        "font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;background:#222;color:#eee;border-radius:4px;"
        "box-shadow:0 2px 6px rgba(0,0,0,.3);pointer-events:none}",
        f"{s} .t.r::after{{left:auto;right:0}}",  # a token in the right half: its tooltip opens leftwards
        f"{s} .tw-info{{font-size:12px;color:#555;margin-top:6px;white-space:pre-wrap;min-height:1.5em}}",
    ]
    for level in used_levels:
        color = _level_color(stops, level)
        text_color = "#fff" if _is_dark(color) else "#111"
        rules.append(f"{s} .l{level}{{background:{color};color:{text_color}}}")
    return "\n".join(rules)


def _css_string(value: str) -> str:
    """`value` for use inside a CSS string: every non-alphanumeric character hex-escaped."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\{ord(c):06x}" for c in value)


# Selection: toggle the `sel` class on the clicked token (and the list box's aria-selected and
# roving tabindex: Tab reaches the selected token), record its position on the strip
# (data-selected), describe it in the info line and emit a bubbling `tw-select` event.
# `this` is the strip element, so this works inside Jupyter outputs and shadow DOM alike.
_ONCLICK = html.escape(
    "var t=event.target.closest('.t');if(!t||!this.contains(t))return;"
    "var old=this.querySelector('.t.sel'),info=this.querySelector('.tw-info'),d=t.dataset;"
    "if(old){old.classList.remove('sel');old.setAttribute('aria-selected','false');}"
    "this.querySelectorAll('.t[tabindex]').forEach(function(e){e.removeAttribute('tabindex');});"
    "if(old===t){delete this.dataset.selected;info.textContent='click a token to select it';"
    "this.querySelector('.t').tabIndex=0;}"
    "else{t.classList.add('sel');t.setAttribute('aria-selected','true');t.tabIndex=0;this.dataset.selected=d.i;"
    "info.textContent='selected #'+d.i+'  '+d.r+'  '+this.dataset.signal+' = '+d.v"
    "+(d.k?'\\ntop-k:\\n'+d.k:'');}"
    "this.dispatchEvent(new CustomEvent('tw-select',{bubbles:true,detail:{position:old===t?null:+d.i}}));"
)
# Keyboard: on a focused token, the arrow keys select (as a click does) and focus the previous
# or next token of the page, Home and End the first and last; Enter and Space select it.
_ONKEYDOWN = html.escape(
    "var t=event.target.closest('.t');if(!t||!this.contains(t))return;"
    "var all=Array.prototype.slice.call(this.querySelectorAll('.t')),i=all.indexOf(t),k=event.key;"
    "var next={ArrowRight:i+1,ArrowDown:i+1,ArrowLeft:i-1,ArrowUp:i-1,Home:0,End:all.length-1}[k];"
    "if(k==='Enter'||k===' '){event.preventDefault();if(!t.classList.contains('sel'))t.click();return;}"
    "if(next===undefined||next<0||next>=all.length)return;"
    "event.preventDefault();if(!all[next].classList.contains('sel'))all[next].click();all[next].focus();"
)
# Pointing at a token (or focusing it): in the right half of the strip, its tooltip opens
# leftwards (class r), so that it stays on the page instead of widening it.
_ONPOINT = html.escape(
    "var t=event.target.closest('.t');if(!t||!this.contains(t))return;"
    "var b=t.getBoundingClientRect(),s=this.getBoundingClientRect();t.classList.toggle('r',b.left-s.left>s.width/2);"
)
