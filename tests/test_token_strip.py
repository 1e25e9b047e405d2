"""Token strip HTML: exact text, colors, missing values, tooltips, escaping, offline.

Runs are built by hand (no model). Colors are checked against colorscale endpoints and a
hand-computed midpoint, read back from the strip's own CSS rules.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from workbench.errors import WorkbenchError
from workbench.results.run import Run
from workbench.widgets import TokenStrip, token_strip
from workbench.widgets.token_strip import LEVELS, page_count, page_of, page_window, strip_page

VIRIDIS_BOTTOM, VIRIDIS_TOP = "#440154", "#fde725"  # matplotlib's viridis at 0 and 1

# (token string, text piece): a special token and a partial-byte token have no text.
PIECES = [
    ("<|im_start|>", ""),
    ("  <", "  <"), ("script", "script"), (">", ">"), ("alert", "alert"), ("(1)", "(1)"),
    ("</script>", "</script>"), (" &", " &"), (" caf", " caf"), ("é", "é"), ("\n", "\n"),
    ("日本", "日本"), ("語", "語"), (" ", " "), ("\ufffd", ""), ("🙂", "🙂"), ("\n\n", "\n\n"),
    ("   end", "   end"), (" &amp;", " &amp;"), (' "q\'', ' "q\''),
]
TEXT = "".join(piece for _, piece in PIECES)


def make_run(pieces=PIECES) -> Run:
    """A run over `pieces` with deterministic signals; the first token has no prediction."""
    starts, offset = [], 0
    for _, piece in pieces:
        starts.append(offset)
        offset += len(piece)
    n = len(pieces)
    surprisal = [None] + [float((7 * i) % 11) + 0.25 * i for i in range(1, n)]
    topk = [None] + [[f" alt{i}", "&<b>", tok] for i, (tok, _) in enumerate(pieces) if i > 0]
    table = pd.DataFrame({
        "position": range(n),
        "token_id": [100 + i for i in range(n)],
        "token": [tok for tok, _ in pieces],
        "start": starts,
        "end": [s + len(piece) for s, (_, piece) in zip(starts, pieces)],
        "role": ["template"] + ["text"] * (n - 1),
        "surprisal": pd.array(surprisal, dtype="Float64"),
        "entropy": pd.array([None] + [1.0 + i for i in range(1, n)], dtype="Float64"),
        "rank": pd.array([None] + [i % 4 for i in range(1, n)], dtype="Int64"),
        "topk_ids": [None] + [[1, 2, 100 + i] for i in range(1, n)],
        "topk_tokens": topk,
        "topk_probs": [None] + [[0.5, 0.25, 0.125] for _ in range(1, n)],
    })
    return Run("".join(piece for _, piece in pieces), table, {}, {"model": "x"})


class StripParser(HTMLParser):
    """Collects the strip's visible text, its token spans (attributes) and its CSS."""

    def __init__(self):
        super().__init__()
        self.text, self.tokens, self.css, self.depth, self.in_style = [], [], [], 0, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.depth:
            self.depth += 1
            if tag == "span":
                self.tokens.append(attrs)
        elif "tw-text" in (attrs.get("class") or "").split():
            self.depth = 1
        self.in_style = tag == "style"

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1
        self.in_style = False

    def handle_data(self, data):
        if self.depth:
            self.text.append(data)
        elif self.in_style:
            self.css.append(data)

    def backgrounds(self) -> dict[str, str]:
        """color-level class -> background color, from the strip's CSS."""
        return dict(re.findall(r"\.(l\d+)\{background:(#[0-9a-f]{6});", "".join(self.css)))


def parse(strip: TokenStrip) -> StripParser:
    parser = StripParser()
    parser.feed(strip.html)
    parser.close()
    return parser


def level_class(span: dict) -> str | None:
    return next((c for c in span["class"].split() if re.fullmatch(r"l\d+", c)), None)


def rgb(color: str) -> tuple[int, ...]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def test_visible_text_is_the_run_text_exactly():
    run = make_run()
    parsed = parse(token_strip(run))
    assert "".join(parsed.text) == run.text == TEXT
    assert len(parsed.tokens) == len(run.table)  # one span per token
    assert "white-space:pre-wrap" in "".join(parsed.css)


def test_zero_width_tokens_are_markers_with_their_token_string():
    parsed = parse(token_strip(make_run()))
    zero = [span for span in parsed.tokens if "z" in span["class"].split()]
    assert [span["data-z"] for span in zero] == ["<|im_start|>", "\ufffd"]
    assert ".t.z::before{content:attr(data-z)" in "".join(parsed.css)


def test_max_and_min_get_the_colorscale_ends():
    run = make_run()
    values = run.table["surprisal"]
    imax, imin = int(values.idxmax()), int(values.idxmin())
    for colorscale, bottom, top in (("viridis", VIRIDIS_BOTTOM, VIRIDIS_TOP),
                                    (["#ffffff", "#ff0000"], "#ffffff", "#ff0000")):
        parsed = parse(token_strip(run, colorscale=colorscale))
        colors = parsed.backgrounds()
        assert colors[level_class(parsed.tokens[imax])] == top
        assert colors[level_class(parsed.tokens[imin])] == bottom


def test_midpoint_color_and_clipping_with_explicit_range():
    run = make_run()
    # white -> red over [0, 10]: value 5 is halfway, (255, 127.5, 127.5) up to quantization.
    table = run.table.assign(surprisal=pd.array([None] + [5.0] + [20.0] * (len(run.table) - 2), dtype="Float64"))
    parsed = parse(token_strip(Run(run.text, table, {}, run.meta), colorscale=["#ffffff", "#ff0000"], vmin=0, vmax=10))
    colors = parsed.backgrounds()
    mid = rgb(colors[level_class(parsed.tokens[1])])
    assert mid[0] == 255 and abs(mid[1] - 127.5) <= 3 and abs(mid[2] - 127.5) <= 3
    assert colors[level_class(parsed.tokens[2])] == "#ff0000"  # 20 is clipped to the top


def test_dark_backgrounds_get_light_text():
    css = "".join(parse(token_strip(make_run())).css)
    rules = dict(re.findall(r"\{background:(#[0-9a-f]{6});color:(#[0-9a-f]{3,6})\}", css))
    assert rules[VIRIDIS_BOTTOM] == "#fff" and rules[VIRIDIS_TOP] == "#111"


def test_missing_values_get_the_na_style():
    run = make_run()
    parsed = parse(token_strip(run))
    first = parsed.tokens[0]
    assert "na" in first["class"].split() and level_class(first) is None and first["data-v"] == "n/a"
    assert all(level_class(span) for span in parsed.tokens[1:])
    assert re.search(r"\.t\.na\{background:repeating-linear-gradient", "".join(parsed.css))


def test_tooltip_lists_position_token_value_and_top_k():
    run = make_run()
    parsed = parse(token_strip(run))
    row, span = run.table.iloc[9], parsed.tokens[9]  # the token "é"
    assert span["data-i"] == "9" and span["data-r"] == repr("é")
    assert float(span["data-v"]) == pytest.approx(row["surprisal"], rel=1e-3)
    lines = span["data-k"].split("\n")
    assert len(lines) == 3 and all(line.endswith(repr(t)) for line, t in zip(lines, [" alt9", "&<b>", "é"]))
    assert "50.00%" in lines[0] and "25.00%" in lines[1]
    assert lines[2].startswith("✓")  # the token that actually came
    assert parsed.tokens[0]["data-role"] == "template"
    css = "".join(parsed.css)
    assert ":hover::after{content:" in css and "attr(data-k)" in css and "attr(data-v)" in css


def test_integer_signal_and_other_columns():
    parsed = parse(token_strip(make_run(), "rank"))
    assert [span["data-v"] for span in parsed.tokens[1:5]] == ["1", "2", "3", "0"]


def test_everything_is_escaped_and_offline():
    strip = token_strip(make_run())
    lowered = strip.html.lower()
    assert "<script" not in lowered and "</script>" not in lowered
    assert "&amp;amp;" in strip.html  # the text "&amp;" is shown literally
    for needle in ("http://", "https://", "cdn", "//unpkg", "@import"):
        assert needle not in lowered


def test_unknown_signal_names_the_available_columns():
    with pytest.raises(WorkbenchError, match="surprisal, entropy, rank"):
        token_strip(make_run(), "attention")


def test_strips_have_unique_ids_and_save_a_standalone_file(tmp_path):
    run = make_run()
    first, second = token_strip(run), token_strip(run)
    ids = [re.search(r'id="(tw-[0-9a-f]+)"', s.html).group(1) for s in (first, second)]
    assert ids[0] != ids[1]
    path = first.save(tmp_path / "out" / "strip.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page and first.html in page
    assert run.strip()._repr_html_().startswith('<div class="tw-strip"')
    assert run.show()._repr_html_().startswith('<div class="tw-strip"')  # outside a notebook kernel


def test_long_runs_stay_lean():
    pieces = [(f" w{i}", f" w{i}") for i in range(5000)]
    strip = token_strip(make_run(pieces))
    assert strip.html.count('<span class="t ') == 5000
    # bytes per token: three top-k alternatives and an accessible name ("#4999 ' w4999': 0.1234") each
    assert len(strip.html.encode()) / 5000 < 240


def test_pages_split_the_strip_exactly():
    run = make_run()
    whole = parse(token_strip(run))
    pages = [parse(strip_page(run, "surprisal", page, page_tokens=6)) for page in range(page_count(len(run.table), 6))]
    assert len(pages) == 4 and page_window(3, len(run.table), 6) == (18, 20)
    assert "".join("".join(page.text) for page in pages) == run.text  # nothing lost or repeated
    spans = [span for page in pages for span in page.tokens]
    assert [span["data-i"] for span in spans] == [span["data-i"] for span in whole.tokens]
    colors = whole.backgrounds()  # the colors of the whole run on every page
    for page in pages:
        for span in page.tokens:
            level = level_class(span)
            assert level is None or page.backgrounds()[level] == colors[level_class(whole.tokens[int(span["data-i"])])]
    assert page_of(13, 6) == 2


def test_windows_outside_the_run_are_refused():
    with pytest.raises(WorkbenchError, match="not within the run's 20 tokens"):
        token_strip(make_run(), window=(5, 21))


def test_click_selects_a_token_in_a_saved_file(tmp_path, browser):
    run = make_run()
    first, second = token_strip(run), token_strip(run, "entropy")
    path = tmp_path / "two.html"
    TokenStrip(first.html + second.html, "two", len(run)).save(path)
    page = browser.new_page()
    page.goto(path.as_uri())
    strips = page.locator(".tw-strip")
    assert strips.nth(0).locator(".tw-text").inner_text() == run.text
    strips.nth(1).locator(".t").nth(9).click()
    assert strips.nth(1).get_attribute("data-selected") == "9"
    assert strips.nth(0).get_attribute("data-selected") is None  # the other strip is untouched
    assert "selected #9" in strips.nth(1).locator(".tw-info").inner_text()
    strips.nth(1).locator(".t").nth(9).click()  # a second click deselects
    assert strips.nth(1).get_attribute("data-selected") is None


def generated_run(first_generated: int = 8) -> Run:
    """make_run as a generation: the tokens from `first_generated` on were generated."""
    run = make_run()
    table = run.table.assign(generated=[i >= first_generated for i in range(len(run.table))])
    return Run(run.text, table, {}, run.meta)


def test_a_generated_run_marks_where_the_prompt_ends():
    """Prompt tokens are styled apart (class p), the first generated token carries the
    separator (g0), and the legend says where the generation starts, on every page; the
    visible text is still the run's text. A run with nothing generated is unmarked."""
    run = generated_run(8)
    parsed = parse(token_strip(run))
    assert "".join(parsed.text) == run.text
    marks = [{"p", "g0"} & set(span["class"].split()) for span in parsed.tokens]
    assert marks == [{"p"}] * 8 + [{"g0"}] + [set()] * 11
    css = "".join(parsed.css)
    assert re.search(r"\.t\.p\{[^}]*text-decoration:underline dotted", css)
    assert re.search(r"\.t\.g0\{[^}]*border-left:3px solid", css)
    pages = [strip_page(run, "surprisal", page, page_tokens=6).html for page in range(4)]
    assert all("generated from #8" in page for page in pages)  # the note on every page
    separator = [bool(re.search(r'class="t [^"]*\bg0\b', page)) for page in pages]
    assert separator == [False, True, False, False]  # on the page that holds #8 only
    for unmarked in (make_run(), generated_run(0), generated_run(len(run.table))):  # no column; all generated; none
        html = token_strip(unmarked).html
        assert "generated from" not in html and not re.search(r'class="t [^"]*\b(p|g0)\b', html)


def test_the_prompt_and_the_generation_look_apart_in_a_browser(tmp_path, browser):
    """The styles apply in a page: a 3px dark bar before the first generated token, prompt
    tokens underlined (dotted), generated tokens not."""
    path = token_strip(generated_run(8)).save(tmp_path / "generated.html")
    page = browser.new_page()
    page.goto(path.as_uri())
    tokens = page.locator(".tw-text .t")

    def style(i: int, prop: str) -> str:
        return tokens.nth(i).evaluate(f"t => getComputedStyle(t).{prop}")

    assert style(8, "borderLeftWidth") == "3px" and style(8, "borderLeftStyle") == "solid"
    assert style(7, "borderLeftWidth") == style(9, "borderLeftWidth") == "0px"
    assert style(3, "textDecorationStyle") == "dotted" and style(3, "textDecorationLine") == "underline"
    assert style(9, "textDecorationLine") == "none"
    assert page.locator(".tw-legend").inner_text().count("generated from #8") == 1


def test_rank_is_colored_on_a_log_scale():
    """Issue 15, item 7: ranks 0, 9, 99 and 999 (log10(1 + rank) = 0, 1, 2, 3) take evenly
    spaced color levels, as in the logit lens; the tooltip and the legend give the ranks
    themselves, 0 being the most likely token."""
    run = make_run()
    run.table["rank"] = pd.array([None, 0, 9, 99, 999] + [0] * (len(run.table) - 5), dtype="Int64")
    strip = token_strip(run, "rank")
    spans = parse(strip).tokens
    levels = [int(level_class(span)[1:]) for span in spans[1:5]]
    assert levels == [0, round((LEVELS - 1) / 3), round(2 * (LEVELS - 1) / 3), LEVELS - 1]
    assert [span["data-v"] for span in spans[1:5]] == ["0", "9", "99", "999"]
    assert "rank (0 = the most likely; log scale)" in strip.html and "<span>999</span>" in strip.html
