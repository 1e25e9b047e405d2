"""Views of mixture-of-experts routing: pure figure builders, (run, selected position) ->
plotly Figure, for runs analyzed with the `routing` signal. Registered as panels in the
"routing" section (see panels.py); the statistics come from `workbench.routing_stats`.

    expert_map        [MoE layer x position] heatmap colored by the top-1 expert; hover: the
                      k experts and their weights, router entropy (and shared-expert weight)
    load_bars         per layer, the fraction of tokens routed to each expert, with its
                      load imbalance (max / mean); the selected token's experts outlined
    expert_paths      Sankey of the top-1 expert paths across layers, for chosen positions
                      (default: the selected token, or every token when none is selected)
    affinity_heatmap  P(expert at layer l+1 | expert at layer l), one layer pair at a time
    specialization_table  OpenMoE's token-id specialization at the last MoE layer

As in figures.py, the expert map says that its x axis holds token positions (clicking a
cell selects that token) and every figure marks the selection with a shape named
"selection" where it can, so that moving the selection only moves a shape.
"""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale

from workbench import routing_stats as rs
from workbench.errors import WorkbenchError
from workbench.results.run import Run

from .figures import SELECTED_COLOR, figure_layout, selection_box
from .panels import Panel, register_panel

PALETTE = qualitative.Light24  # categorical expert colors up to 24 experts; a continuous scale beyond
MAX_HOVER_CELLS = 20_000  # expert-map cells with a full hover text; bigger maps hover the top-1 only
MAX_BAR_LAYERS, MAX_BAR_EXPERTS = 8, 32  # larger load charts are heatmaps


def has_routing(run: Run) -> bool:
    return "routing_expert_ids" in run.arrays


def _layer_names(run: Run) -> list[str]:
    return [f"layer {index}" for index in run.arrays["routing_layers"].tolist()]


def expert_colors(n_experts: int) -> list[str]:
    if n_experts <= len(PALETTE):
        return list(PALETTE[:n_experts])
    return sample_colorscale("Turbo", [e / max(1, n_experts - 1) for e in range(n_experts)])


def _discrete_colorscale(colors: list[str]) -> list:
    """Stepped colorscale: values in [e - 0.5, e + 0.5] get colors[e] (zmin -0.5, zmax E - 0.5)."""
    n = len(colors)
    return [stop for e, color in enumerate(colors) for stop in ([e / n, color], [(e + 1) / n, color])]


def expert_map(run: Run, selected: int | None = None) -> go.Figure:
    """Heatmap [MoE layer, position] of the top-1 expert; hover lists the k experts with
    their weights, the router entropy and the shared-expert weight where there is one."""
    ids, weights = run.arrays["routing_expert_ids"], run.arrays["routing_weights"]  # [m, T, k]
    entropy, shared = run.arrays["routing_entropy"], run.arrays.get("routing_shared_weight")  # [m, T]
    m, n = ids.shape[:2]
    n_experts, layers = rs.n_experts(run), _layer_names(run)
    tokens = [html.escape(repr(t)) for t in run.table["token"]]
    heatmap = dict(z=ids[:, :, 0], x=np.arange(n), y=layers, zmin=-0.5, zmax=n_experts - 0.5,
                   colorscale=_discrete_colorscale(expert_colors(n_experts)), xgap=1 if n <= 200 else 0, ygap=1,
                   colorbar=dict(title=dict(text="top-1 expert", side="right"), thickness=12,
                                 tickvals=list(range(n_experts)) if n_experts <= 24 else None))
    if m * n <= MAX_HOVER_CELLS:
        heatmap["text"] = [[
            f"#{t} {tokens[t]}  {layers[l]}<br>experts: "
            + ", ".join(f"{e} ({w:.2f})" for e, w in zip(ids[l, t], weights[l, t]))
            + f"<br>router entropy {entropy[l, t]:.2f} nats"
            + ("" if shared is None else f"<br>shared expert weight {shared[l, t]:.2f}")
            for t in range(n)] for l in range(m)]
        heatmap["hovertemplate"] = "%{text}<extra></extra>"
    else:
        heatmap["hovertemplate"] = "#%{x}  %{y}: expert %{z}<extra></extra>"
    layout = figure_layout("Top-1 expert of each token at each MoE layer", "x", height=120 + 26 * m,
                           xaxis=dict(title="position", range=[-0.5, n - 0.5]), yaxis=dict(autorange="reversed"))
    if selected is not None and 0 <= selected < n:
        layout["shapes"] = [selection_box(selected - 0.5, selected + 0.5)]
    return go.Figure(go.Heatmap(**heatmap), layout=layout)


def load_bars(run: Run, selected: int | None = None) -> go.Figure:
    """Per MoE layer, the fraction of tokens routed to each expert (in any of the k
    slots), with the load imbalance max / mean in the legend; the dashed line is a balanced
    load (k / E). The selected token's experts are outlined. Beyond `MAX_BAR_LAYERS` layers
    (or `MAX_BAR_EXPERTS` experts) the same loads are drawn as a [layer, expert] heatmap."""
    ids = run.arrays["routing_expert_ids"]
    n_experts, k = rs.n_experts(run), ids.shape[-1]
    load = rs.expert_load(ids, n_experts)  # [m, E]
    imbalance = rs.load_imbalance(load)
    names = _layer_names(run)
    title = "Expert load per layer (outlined: the selected token's experts)"
    if len(names) > MAX_BAR_LAYERS or n_experts > MAX_BAR_EXPERTS:
        labels = [f"{name} ({value:.2f})" for name, value in zip(names, imbalance)]
        heatmap = go.Heatmap(z=load, x=np.arange(n_experts), y=labels, colorscale="Viridis", zmin=0,
                             colorbar=dict(title=dict(text="fraction of tokens", side="right"), thickness=12),
                             hovertemplate="%{y}<br>expert %{x}: %{z:.1%} of tokens<extra></extra>")
        layout = figure_layout("Expert load per layer (imbalance max/mean); boxed: the selected token's experts",
                               height=120 + 18 * len(names), xaxis=dict(title="expert"),
                               yaxis=dict(autorange="reversed", automargin=True))  # long labels
        if selected is not None:
            layout["shapes"] = [selection_box(e - 0.5, e + 0.5, m - 0.5, m + 0.5, yref="y")
                                for m in range(len(names)) for e in ids[m, selected]]
        return go.Figure(heatmap, layout=layout)
    colors = sample_colorscale("Viridis", [0.85 * m / max(1, len(names) - 1) for m in range(len(names))])
    traces = []
    for m, name in enumerate(names):
        outline = [2 if selected is not None and e in ids[m, selected] else 0 for e in range(n_experts)]
        traces.append(go.Bar(x=np.arange(n_experts), y=load[m], name=f"{name} (imbalance {imbalance[m]:.2f})",
                             marker=dict(color=colors[m], line=dict(width=outline, color=SELECTED_COLOR)),
                             hovertemplate=f"{name}<br>expert %{{x}}: %{{y:.1%}} of tokens<extra></extra>"))
    layout = figure_layout(title, height=320, barmode="group", showlegend=True,
                           xaxis=dict(title="expert", dtick=1), yaxis=dict(title="fraction of tokens", tickformat=".0%"))
    layout["shapes"] = [dict(type="line", xref="paper", x0=0, x1=1, y0=k / n_experts, y1=k / n_experts,
                             line=dict(color="gray", dash="dash", width=1))]
    return go.Figure(traces, layout=layout)


def expert_paths(run: Run, selected: int | None = None, positions=None) -> go.Figure:
    """Sankey of top-1 experts across consecutive MoE layers for `positions` (default:
    the selected token, or every token when none is selected); link hover names the tokens."""
    trace = rs.trace(run)  # [T, m]
    if positions is None:
        positions = range(len(trace)) if selected is None else [selected]
    positions = [int(p) for p in positions]
    if not positions or not all(0 <= p < len(trace) for p in positions):
        raise WorkbenchError(f"positions must be a non-empty list of token positions in [0, {len(trace)})")
    n_experts, layers = rs.n_experts(run), _layer_names(run)
    m = trace.shape[1]
    tokens = run.table["token"].tolist()
    links: dict[tuple[int, int], list[int]] = {}  # (node, node) -> positions; node = layer * E + expert
    for p in positions:
        for layer in range(m - 1):
            pair = (layer * n_experts + int(trace[p, layer]), (layer + 1) * n_experts + int(trace[p, layer + 1]))
            links.setdefault(pair, []).append(p)
    used = sorted({layer * n_experts + int(trace[p, layer]) for p in positions for layer in range(m)})
    index = {node: i for i, node in enumerate(used)}  # only experts on some path get a node
    colors = expert_colors(n_experts)
    names = [html.escape(", ".join(f"#{p} {tokens[p]!r}" for p in group[:12]) + (" …" if len(group) > 12 else ""))
             for group in links.values()]
    sankey = go.Sankey(
        arrangement="snap",
        node=dict(label=[f"{layers[n // n_experts]} · expert {n % n_experts}" for n in used],
                  color=[colors[n % n_experts] for n in used], pad=8, thickness=14),
        link=dict(source=[index[a] for a, _ in links], target=[index[b] for _, b in links],
                  value=[len(group) for group in links.values()], customdata=names,
                  hovertemplate="%{value} token(s): %{customdata}<extra></extra>"),
    )
    what = f"token #{positions[0]} {tokens[positions[0]]!r}" if len(positions) == 1 else f"{len(positions)} tokens"
    return go.Figure(sankey, layout=figure_layout(f"Top-1 expert paths across layers: {html.escape(what)}", height=380))


def affinity_heatmap(run: Run, selected: int | None = None, pair: int = 0) -> go.Figure:
    """P(expert e' at MoE layer l+1 | expert e at layer l), counted over this run's top-1
    trace (ExFlow's inter-layer affinity), for layer pair `pair`, with a menu to switch
    pairs. Rows of experts no token chose are blank; the selected token's transition is
    boxed."""
    trace = rs.trace(run)
    n_experts, layers = rs.n_experts(run), _layer_names(run)
    if trace.shape[1] < 2:
        return go.Figure(go.Heatmap(z=[[np.nan]]), layout=figure_layout("Affinity needs two MoE layers or more", height=200))
    affinity = rs.affinity(trace, n_experts)  # [m-1, E, E]
    titles = [f"Affinity {layers[p]} → {layers[p + 1]}" for p in range(len(affinity))]
    heatmap = go.Heatmap(
        z=affinity[pair], x=np.arange(n_experts), y=np.arange(n_experts), zmin=0, zmax=1, colorscale="Blues",
        colorbar=dict(title=dict(text="P(e' | e)", side="right"), thickness=12),
        hovertemplate="expert %{y} → expert %{x}: %{z:.2f}<extra></extra>",
    )
    ticks = dict(dtick=1) if n_experts <= 24 else {}
    layout = figure_layout(titles[pair], height=380, xaxis=dict(title="expert at the next layer", **ticks),
                           yaxis=dict(title="expert at this layer", autorange="reversed", **ticks))
    if len(affinity) > 1:
        layout["updatemenus"] = [dict(
            type="dropdown", x=1.0, y=1.12, xanchor="right", active=pair,
            buttons=[dict(label=title[len("Affinity "):], method="update",
                          args=[{"z": [affinity[p]]}, {"title.text": title}]) for p, title in enumerate(titles)])]
    if selected is not None and 0 <= selected < len(trace):
        e, f = int(trace[selected, pair]), int(trace[selected, pair + 1])
        layout["shapes"] = [selection_box(f - 0.5, f + 0.5, e - 0.5, e + 0.5, yref="y")]
    return go.Figure(heatmap, layout=layout)


def specialization_table(run: Run, selected: int | None = None, moe_layer: int = -1, min_count: int = 2) -> go.Figure:
    """Token-id specialization (OpenMoE) at one MoE layer: for each token id seen at least
    `min_count` times, its count, top expert, the share routed there and the std of its
    shares over experts (0 = spread evenly, high = always the same expert), most frequent
    first, the selected token's row highlighted; the title compares the mean std with the
    same measure over bins of 8 positions."""
    table = rs.specialization_by(run, by="token_id", moe_layer=moe_layer, min_count=min_count)
    table = table.sort_values(["count", "std"], ascending=False)
    contrast = rs.specialization_contrast(run, moe_layer=moe_layer, min_count=min_count, position_bin=8)
    highlight = None if selected is None else int(run.table["token_id"].iloc[selected])
    fill = ["#fde2d9" if token_id == highlight else "white" for token_id in table.index]
    cells = [[repr(t) for t in table["token"]], table.index.tolist(), table["count"].tolist(),
             table["top_expert"].tolist(), [f"{v:.0%}" for v in table["top_share"]], [f"{v:.3f}" for v in table["std"]]]
    figure = go.Figure(go.Table(
        header=dict(values=["token", "id", "count", "top expert", "top share", "std"], fill_color="#eee", align="left"),
        cells=dict(values=cells, fill_color=[fill] * len(cells), align="left"),
    ))
    by_token, by_position = contrast["token_id"]["mean_std"], contrast["position"]["mean_std"]
    title = (f"Token-id specialization at {_layer_names(run)[moe_layer]} (tokens seen {min_count}+ times): "
             f"mean std {by_token:.3f} by token id, {by_position:.3f} by position")
    figure.update_layout(**figure_layout(title, height=140 + 24 * min(len(table), 12)))
    return figure


for _name, _title, _figure in (
    ("routing.expert_map", "Experts per token and layer", expert_map),
    ("routing.load", "Expert load per layer", load_bars),
    ("routing.paths", "Expert paths across layers", expert_paths),
    ("routing.affinity", "Inter-layer expert affinity", affinity_heatmap),
    ("routing.specialization", "Token-id specialization", specialization_table),
):
    register_panel(Panel(_name, _title, applies=has_routing, figure=_figure))
