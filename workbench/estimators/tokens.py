"""The tokens an estimator scores: one sequence's surprisal, entropy and text spans.

Of a `Run` from `generate`, the generated tokens (column `generated`); of an analyzed chat, the
response's tokens (role "response"); of an analyzed text, every token that has a prediction
(positions 1..T-1). Of one response of a `Group`, that response's tokens (surprisal = -logprob).
`text` is the scored tokens' own text and `starts` / `ends` their character spans in it, so that
"the text without token i" is text[:starts[i]] + text[ends[i]:] (SAR's relevance).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import WorkbenchError

if TYPE_CHECKING:
    from ..results.group import Group
    from ..results.run import Run


@dataclass(frozen=True)
class ScoredTokens:
    positions: np.ndarray  # [N] int64: rows of the run's table (token positions), or of the response
    tokens: list[str]  # [N] token texts
    surprisal: np.ndarray  # [N] float64: -log p(y_t | y_<t), nats
    entropy: np.ndarray  # [N] float64: H(p_t), nats
    text: str  # the scored tokens' text
    starts: np.ndarray  # [N] int64: character span of each token in `text`
    ends: np.ndarray  # [N] int64
    offset: int = 0  # positions + offset index the whole sequence (a response's prompt comes first)

    def __len__(self) -> int:
        return len(self.positions)

    def without(self, i: int) -> str:
        """The text with token i's characters removed."""
        return self.text[:self.starts[i]] + self.text[self.ends[i]:]


def scored_rows(run: "Run") -> np.ndarray:
    """Which rows of `run.table` an estimator scores [T] bool (see the module docstring)."""
    table = run.table
    if "surprisal" not in table:
        raise WorkbenchError("estimators need the 'uncertainty' signal: analyze with signals=['uncertainty']")
    if "generated" in table:
        rows = table["generated"].to_numpy(dtype=bool)
    elif (table["role"] == "response").any():
        rows = (table["role"] == "response").to_numpy()
    else:
        rows = table["surprisal"].notna().to_numpy()
    if not rows.any():
        raise WorkbenchError("this run has no token to score (a one-token text has no prediction)")
    return rows


def from_run(run: "Run") -> ScoredTokens:
    table = run.table[scored_rows(run)]
    start = int(table["start"].iloc[0])
    return ScoredTokens(
        positions=table["position"].to_numpy(np.int64), tokens=table["token"].tolist(),
        surprisal=table["surprisal"].to_numpy(np.float64, na_value=np.nan),
        entropy=table["entropy"].to_numpy(np.float64, na_value=np.nan),
        text=run.text[start:int(table["end"].iloc[-1])],
        starts=table["start"].to_numpy(np.int64) - start, ends=table["end"].to_numpy(np.int64) - start,
    )


def from_response(group: "Group", response: int) -> ScoredTokens:
    rows = group.rows(response)
    if rows.empty:
        raise WorkbenchError(f"response {response} of this group has no token to score")
    return ScoredTokens(
        positions=rows["position"].to_numpy(np.int64), tokens=rows["token"].tolist(),
        surprisal=-rows["logprob"].to_numpy(np.float64, na_value=np.nan),
        entropy=rows["entropy"].to_numpy(np.float64, na_value=np.nan),
        text=group.responses[response], starts=rows["start"].to_numpy(np.int64), ends=rows["end"].to_numpy(np.int64),
        offset=len(group.prompt_ids),
    )
