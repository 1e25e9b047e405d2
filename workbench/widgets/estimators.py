"""Views of sequence-level uncertainty estimates (`workbench.estimators`), for a run that
carries them (`workbench.estimators.annotate`: columns contrib_<name>, meta["estimators"]).

- `contribution_strip`: the token strip colored by one estimator's per-token contributions.
- `sequence_scores`: the sequence-score panel: one row per estimator, its score in the row's
  label, and its per-token contributions along the positions, each row scaled to its own
  largest contribution (the estimators' scores have different units); the selected token is
  boxed and its share of each score named in the hover. Registered as the panel
  "estimators.scores", linked to the selected token like every view.
- `evaluation_bars`: AUROC and prediction-rejection ratio per estimator (which one predicts
  errors), from `workbench.pipelines.error_prediction.evaluation_table`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from workbench.errors import WorkbenchError
from workbench.estimators import CONTRIBUTION_PREFIX
from workbench.results.run import Run

from .figures import BAR_COLOR, LINE_COLOR, figure_layout, selection_box
from .panels import Panel, register_panel
from .token_strip import TokenStrip, token_strip


def estimator_names(run: Run) -> list[str]:
    """The estimators whose contributions `run` carries, in the order they were added."""
    return [name for name in run.meta.get("estimators", {}) if CONTRIBUTION_PREFIX + name in run.table]


def contribution_strip(run: Run, estimator: str) -> TokenStrip:
    """The token strip colored by `estimator`'s per-token contributions (tokens it does not
    score are uncolored)."""
    names = estimator_names(run)
    if estimator not in names:
        raise WorkbenchError(f"this run carries no '{estimator}' estimate; it has: {', '.join(names) or '(none)'} "
                             "(add them with workbench.estimators.annotate(run, workbench.estimators.estimate(run)))")
    return token_strip(run, CONTRIBUTION_PREFIX + estimator)


def sequence_scores(run: Run, selected: int | None = None) -> go.Figure:
    """The sequence-score panel (see the module docstring)."""
    names = estimator_names(run)
    records = run.meta["estimators"]
    contributions = np.stack([run.table[CONTRIBUTION_PREFIX + n].to_numpy(np.float64, na_value=np.nan)
                              for n in names])  # [estimators, T]
    scale = np.nanmax(np.abs(contributions), axis=1, keepdims=True)
    scaled = contributions / np.where(scale > 0, scale, 1.0)
    labels = [f"{n} = {_number(records[n]['score'])}" for n in names]
    share = _shares(contributions, names, records)
    trace = go.Heatmap(
        z=scaled, x=np.arange(contributions.shape[1]), y=labels, colorscale="Viridis", zmin=0, zmax=1,
        customdata=np.dstack([contributions, share]), showscale=False, xgap=1, ygap=2,
        hovertemplate="#%{x}  %{y}<br>contribution %{customdata[0]:.4g}<br>%{customdata[1]}<extra></extra>",
    )
    layout = figure_layout("Sequence scores and each token's contribution", "x", xaxis=dict(title="position"),
                           yaxis=dict(autorange="reversed"), height=max(200, 60 + 26 * len(names)))
    if selected is not None and 0 <= selected < contributions.shape[1]:
        layout["shapes"] = [selection_box(selected - 0.5, selected + 0.5)]
    return go.Figure(trace, layout=layout)


def _number(value) -> str:
    return "not finite" if value is None else f"{value:.4g}"


def _shares(contributions: np.ndarray, names: list[str], records: dict) -> np.ndarray:
    """Hover text [estimators, T]: the token's share of a score that its contributions sum to,
    or the rule by which they give it."""
    out = np.full(contributions.shape, "", dtype=object)
    for row, name in enumerate(names):
        rule, total = records[name]["combine"], np.nansum(contributions[row])
        for t, value in enumerate(contributions[row]):
            if np.isnan(value):
                out[row, t] = "not scored"
            elif rule == "sum" and total:
                out[row, t] = f"{value / total:.1%} of the score (sum)"
            else:
                out[row, t] = f"score = {rule} of the contributions"
    return out


def evaluation_bars(table: pd.DataFrame) -> go.Figure:
    """AUROC and PRR per estimator (rows of `evaluation_table`), best AUROC first; the dotted
    line at 0.5 is chance for AUROC (0 is chance for PRR)."""
    figure = go.Figure([
        go.Bar(name="AUROC", x=table["estimator"], y=table["auroc"], marker_color=LINE_COLOR),
        go.Bar(name="PRR", x=table["estimator"], y=table["prr"], marker_color=BAR_COLOR),
    ], layout=figure_layout("Which estimator predicts errors: AUROC and prediction-rejection ratio", None,
                            barmode="group", showlegend=True, yaxis=dict(title="higher is better", range=[-1, 1])))
    figure.add_hline(y=0.5, line=dict(dash="dot", color="#999"))
    return figure


register_panel(Panel("estimators.scores", "Sequence scores", applies=lambda run: bool(estimator_names(run)),
                     figure=sequence_scores))
