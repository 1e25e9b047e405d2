"""Attributions of a Run summed into words or sentences."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ..errors import WorkbenchError
from .spans import LEVELS, aggregate as sum_spans, groups, labels

if TYPE_CHECKING:
    from ..results.run import Run


def attribution_name(run: "Run") -> str:
    """The name of the run's attribution array ("attr_<method>")."""
    method = run.meta.get("attribution", {}).get("method")
    if method is None or f"attr_{method}" not in run.arrays:
        raise WorkbenchError("this run has no attribution; make one with model.attribute(...)")
    return f"attr_{method}"


def aggregate(run: "Run", level: str = "word") -> pd.DataFrame:
    """The run's [target, source] attribution with the sources summed into `level` spans
    ("token", "word" or "sentence"): rows "position:token" of each target, columns
    "index:text" of each span; NaN where no token of the span comes before the target."""
    if level not in LEVELS:
        raise WorkbenchError(f"unknown level '{level}'; use one of {', '.join(LEVELS)}")
    values = run.arrays[attribution_name(run)]
    table = run.table
    group_of = groups(run.text, table["start"].to_numpy(), table["end"].to_numpy(), level)
    names = labels(run.text, table["start"].to_numpy(), table["end"].to_numpy(), group_of)
    targets = run.arrays["attr_targets"]
    rows = [f"{p}:{table['token'][p]!r}" for p in targets]
    return pd.DataFrame(sum_spans(values, group_of), index=rows, columns=[f"{i}:{n!r}" for i, n in enumerate(names)])
