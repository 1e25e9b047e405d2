"""Views of sequence-level uncertainty estimates (`workbench.estimators`), for a run that
carries them (`workbench.estimators.annotate`: columns contrib_<name>, meta["estimators"]).

- `contribution_strip`: the token strip colored by one estimator's per-token contributions.
- `sequence_scores`: the sequence-score panel: one line per estimator, its score in the
  legend, its per-token contributions along the positions, each line scaled to its own
  largest contribution (the estimators' scores have different units); the selected token is
  marked and its share of each score named in the hover. Registered as the panel
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

from .figures import BAR_COLOR, HEIGHT, LINE_COLOR, figure_layout, selection_line
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
    positions = run.table["position"].to_numpy()
    traces = []
    for name in names:
        contributions = run.table[CONTRIBUTION_PREFIX + name].to_numpy(np.float64, na_value=np.nan)  # [T]
        scale = np.nanmax(np.abs(contributions)) if np.isfinite(contributions).any() else 0.0
        traces.append(go.Scatter(
            x=positions, y=contributions / (scale if scale > 0 else 1.0), mode="lines+markers", marker=dict(size=5),
            name=f"{name} = {_number(records[name]['score'])}", customdata=np.stack(
                [contributions, _shares(contributions, records[name]["combine"])], axis=-1),
            hovertemplate=f"#%{{x}}  {name}<br>contribution %{{customdata[0]:.4g}}<br>%{{customdata[1]}}<extra></extra>",
        ))
    layout = figure_layout("Sequence scores: each token's contribution (scaled to each estimator's largest)", "x",
                           xaxis=dict(title="position"), yaxis=dict(title="contribution / largest"), showlegend=True,
                           legend=dict(orientation="h", y=-0.25), height=HEIGHT + 40)
    if selected is not None and 0 <= selected < len(positions):
        layout["shapes"] = [selection_line(selected)]
    return go.Figure(traces, layout=layout)


def _number(value) -> str:
    return "not finite" if value is None else f"{value:.4g}"


def _shares(contributions: np.ndarray, rule: str) -> np.ndarray:
    """Hover text [T]: each token's share of a score its contributions sum to, or the rule by
    which they give it."""
    total = np.nansum(contributions)
    return np.array(["not scored" if np.isnan(value) else f"{value / total:.1%} of the score (sum)"
                     if rule == "sum" and total else f"score = {rule} of the contributions" for value in contributions],
                    dtype=object)


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
