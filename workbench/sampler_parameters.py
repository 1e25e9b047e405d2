"""The named samplers ("top-p", "min-p", ...) and their own parameters: name, default value and
allowed values, in one table that `workbench.samplers.from_spec`, the CLI's sampler flags and
the dashboard's sampler fields all read. Free of torch, so the CLI builds its parser without
importing it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Allowed values of a number: at least `low` (greater than it when `above`), at most
    `high` (None: no upper bound), a whole number when `whole`."""

    low: float
    high: float | None = None
    above: bool = False
    whole: bool = False

    def __contains__(self, value: float) -> bool:
        return ((value > self.low if self.above else value >= self.low)
                and (self.high is None or value <= self.high) and (not self.whole or value == int(value)))

    def words(self) -> str:
        """E.g. "greater than 0 and at most 1", "at least 1, a whole number"."""
        text = f"{'greater than' if self.above else 'at least'} {self.low:g}"
        text += "" if self.high is None else f" and at most {self.high:g}"
        return text + (", a whole number" if self.whole else "")

    def interval(self) -> str:
        """E.g. "in (0, 1]"; "at least 1" without an upper bound."""
        if self.high is None:
            return f"{'greater than' if self.above else 'at least'} {self.low:g}"
        return f"in {'(' if self.above else '['}{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Parameter:
    """A named sampler's own parameter: its name (TopP's p), the `Sampler` field it sets
    (top_p), its default value and the values that keep its rule on."""

    name: str
    rule: str
    default: float
    allowed: Range


# Sampler name -> its own parameter (None: greedy has none). At the neutral value of a rule
# (top-k 0, min-p 0, top-H alpha 0) the rule is off, so the allowed values exclude it; a
# temperature of 0 is greedy, a sampler of its own.
BY_NAME: dict[str, Parameter | None] = {
    "greedy": None,
    "temperature": Parameter("temperature", "temperature", 1.0, Range(0, above=True)),
    "gumbel": Parameter("temperature", "temperature", 1.0, Range(0, above=True)),
    "top-k": Parameter("k", "top_k", 50, Range(1, whole=True)),
    "top-p": Parameter("p", "top_p", 0.9, Range(0, 1, above=True)),
    "min-p": Parameter("m", "min_p", 0.1, Range(0, 1, above=True)),
    "top-h": Parameter("alpha", "top_h", 0.4, Range(0, 1, above=True)),
}

# The sampler each command uses when none is given, at its value in `BY_NAME`: the same in
# the CLI, the Python API (`workbench.pipelines.generate.default_sampler`) and the dashboard.
DEFAULT_SAMPLER = {"generate": "top-p", "rollouts": "temperature"}
