"""Verifiable rewards: a response's text -> a number (1.0 right, 0.0 wrong for the checks here).

    wb.rewards.exact_answer("56")          # the final answer, normalized, equals "56"
    wb.rewards.numeric_answer(56, tol=0.01) # the final answer is a number within tol of 56
    wb.rewards.regex(r"\\b56\\b")            # the pattern occurs in the response
    lambda text: float(len(text) < 200)    # any Python callable text -> number (or bool)

The final answer of a response (`final_answer`) is, in order of preference:
1. the content of the last `\\boxed{...}`;
2. the marked segment: what follows the last answer marker (`####`, "answer is", "answer:",
   "answer =", with any ':' / '=' / whitespace after it), up to the end of that sentence
   (. ! or ? before a space or the end) or line. The answer is the last number of the
   segment's first clause that states a result (clauses end at ", " and "; "; a clause whose
   last number is an operand, as "7 * 8", states none), else the segment's text:
       "The answer is 7 * 8 = 56."    -> "56"      "answer = 2 + 3 = 5"       -> "5"
       "the answer: 7 × 8 = 56"       -> "56"      "The answer is 56, not 57" -> "56"
       "The answer is 7 * 8, which is 56." -> "56"  "The answer is: fifty-six" -> "fifty-six"
   A marker with nothing after it (a response cut off at "the answer is") marks nothing;
3. else, when the response contains a number, its last number;
4. else its last non-empty line.
Numbers are read with thousands separators removed ("1,024" -> 1024), and "56.0" equals "56".

`arithmetic_problems()` is a small set of arithmetic word problems with their answers,
written for this project and shipped with it, for tutorials and tests.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import Callable

from .errors import WorkbenchError

NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")
BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
MARKER = re.compile(r"(?:####|\banswer\s*(?:is\b|[:=]))[\s:=]*", re.IGNORECASE)
SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n")
CLAUSE_BREAK = re.compile(r"[,;]\s")
OPERATOR_BEFORE = re.compile(r"(?:[-+*/×÷^]|\b(?:x|times|plus|minus|divided by))\s*$")  # "7 *" ahead of an operand


@dataclass(frozen=True)
class Reward:
    """A named reward function: `reward(text) -> float`."""

    fn: Callable[[str], float]
    name: str

    def __call__(self, text: str) -> float:
        value = self.fn(text)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise WorkbenchError(f"reward {self.name} returned {value!r}; a reward must return a number or a bool") from None
        if math.isnan(value):
            raise WorkbenchError(f"reward {self.name} returned NaN for {text[:60]!r}")
        return value

    def __repr__(self) -> str:
        return f"Reward({self.name})"


def final_answer(text: str) -> str:
    """The part of `text` that states its final answer (see the module docstring)."""
    boxed = BOXED.findall(text)
    if boxed:
        return boxed[-1].strip()
    segment = _marked_segment(text)
    if segment:
        return _segment_answer(segment)
    numbers = NUMBER.findall(text)
    if numbers:
        return numbers[-1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _marked_segment(text: str) -> str:
    """What follows the last answer marker, to the end of its sentence or line ("" when
    there is no marker): "So the answer is: 7 * 8 = 56. Done." -> "7 * 8 = 56"."""
    markers = list(MARKER.finditer(text))
    if not markers:
        return ""
    return SENTENCE_END.split(text[markers[-1].end():], maxsplit=1)[0].strip()


def _segment_answer(segment: str) -> str:
    """The last number of the first clause of `segment` that states a result ("7 * 8 = 56, not
    57" -> "56"; "7 * 8, which is 56" -> "56": "7 * 8" ends with an operand), else the first
    clause's last number ("2 + 3"), else the whole segment ("fifty-six")."""
    operand = None
    for clause in CLAUSE_BREAK.split(segment):
        numbers = list(NUMBER.finditer(clause))
        if not numbers:
            continue
        last = numbers[-1]
        if not OPERATOR_BEFORE.search(clause[:last.start()]):
            return last.group()
        operand = operand or last.group()
    return operand or segment


def parse_number(text: str) -> float | None:
    """"1,024" -> 1024.0, "-3.5" -> -3.5, "3/4" -> 0.75; None when `text` is not one number."""
    text = text.strip().rstrip(".")
    if not NUMBER.fullmatch(text):
        return None
    numerator, _, denominator = text.replace(",", "").partition("/")
    if denominator:
        return float(numerator) / float(denominator) if float(denominator) else None
    return float(numerator)


def _normalize(text: str) -> str:
    return " ".join(text.strip().strip(".!?,;:\"'`$").lower().split())


def exact_answer(answer) -> Reward:
    """1.0 when the response's final answer equals `answer` (numbers compared as numbers,
    other text after lower-casing and trimming punctuation and whitespace), else 0.0."""
    expected = str(answer)
    expected_number = parse_number(expected)

    def check(text: str) -> float:
        given = final_answer(text)
        if expected_number is not None:
            number = parse_number(given)
            return float(number is not None and number == expected_number)
        return float(_normalize(given) == _normalize(expected))

    return Reward(check, f"exact_answer({expected!r})")


def numeric_answer(value: float, tol: float = 1e-6) -> Reward:
    """1.0 when the response's final answer is a number within `tol` of `value`, else 0.0."""
    value = float(value)

    def check(text: str) -> float:
        number = parse_number(final_answer(text))
        return float(number is not None and abs(number - value) <= tol)

    return Reward(check, f"numeric_answer({value:g}, tol={tol:g})")


def regex(pattern: str, flags: int = 0) -> Reward:
    """1.0 when `pattern` occurs anywhere in the response (re.search), else 0.0."""
    try:
        compiled = re.compile(pattern, flags)
    except re.error as error:
        raise WorkbenchError(f"invalid regex {pattern!r}: {error}") from None
    return Reward(lambda text: float(compiled.search(text) is not None), f"regex({pattern!r})")


def as_reward(reward) -> Reward:
    """A `Reward`, any callable text -> number, or an expected answer (str or number, meaning
    `exact_answer`)."""
    if isinstance(reward, Reward):
        return reward
    if isinstance(reward, (str, int, float)) and not isinstance(reward, bool):
        return exact_answer(reward)
    if callable(reward):
        return Reward(reward, getattr(reward, "__name__", type(reward).__name__))
    raise WorkbenchError(f"reward must be a callable text -> number or an expected answer, got {type(reward).__name__}")


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # the expected final answer, e.g. "56"

    def reward(self) -> Reward:
        return exact_answer(self.answer)


def arithmetic_problems() -> list[Problem]:
    """The shipped arithmetic word problems (workbench/data/arithmetic.jsonl): short
    questions whose answer is one whole number."""
    source = resources.files("workbench") / "data" / "arithmetic.jsonl"
    lines = source.read_text(encoding="utf-8").splitlines()
    return [Problem(**{k: str(v) for k, v in json.loads(line).items() if k in ("question", "answer")})
            for line in lines if line.strip()]


__all__ = ["Problem", "Reward", "arithmetic_problems", "as_reward", "exact_answer", "final_answer",
           "numeric_answer", "parse_number", "regex"]
