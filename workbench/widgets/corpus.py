"""Views of a corpus folder (`wb.corpus`): pure figure builders, CorpusFolder -> plotly Figure,
and `CorpusOverview`, a notebook view whose documents open the usual Run views.

    distribution_chart     how one signal is distributed over every token of the corpus
    token_ranking_chart    the token ids with the largest mean of a signal (seen >= min_count times)
    document_ranking_chart documents ranked by one of their figures (mean surprisal, perplexity, max)
    selection_chart        RHO-1's selection: overall share selected, and the token ids most often selected
    document_run           one document as a Run from its token rows in the dataset (no model run)

Every number is computed shard by shard (`corpus.aggregates`); nothing loads the token table
whole. Token ids are shown as text when a tokenizer (or a model) is given.
"""
from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from workbench.corpus.folder import CorpusFolder
from workbench.corpus.scoring import KEY_COLUMNS
from workbench.errors import WorkbenchError
from workbench.pipelines.analyze import token_table
from workbench.results.run import Run
from workbench.signals.uncertainty import decode_pieces
from workbench.tokens import Tokens, generated_spans

from .figures import figure_layout

RANKED = 20  # bars in a ranking
DOCUMENT_FIGURES = ("mean_surprisal", "perplexity", "max_surprisal", "mean_excess_loss")


def _labels(token_ids, tokenizer) -> list[str]:
    if tokenizer is None:
        return [f"#{int(i)}" for i in token_ids]
    return [f"{tokenizer.decode([int(i)])!r} #{int(i)}" for i in token_ids]


def distribution_chart(folder: CorpusFolder, signal: str = "surprisal", bins: int = 50) -> go.Figure:
    counts, edges = folder.histogram(signal, bins)
    centers = (edges[:-1] + edges[1:]) / 2
    figure = go.Figure(go.Bar(x=centers, y=counts, width=np.diff(edges), marker_color="#4C78A8",
                              hovertemplate=f"{signal} %{{x:.3g}}: %{{y}} tokens<extra></extra>"))
    figure.update_layout(figure_layout(f"{signal} over {int(counts.sum()):,} tokens"))
    figure.update_xaxes(title_text=signal)
    figure.update_yaxes(title_text="tokens")
    return figure


def token_ranking_chart(folder: CorpusFolder, signal: str = "surprisal", *, n: int = RANKED, min_count: int = 3,
                        tokenizer=None) -> go.Figure:
    stats = folder.token_stats([signal], quantiles=(0.5,))
    stats = stats[stats["count"] >= min_count].sort_values(f"{signal}_mean", ascending=False).head(n)
    figure = go.Figure(go.Bar(
        x=stats[f"{signal}_mean"], y=_labels(stats.index, tokenizer), orientation="h", customdata=stats["count"],
        marker_color="#E45756", hovertemplate=f"%{{y}}: mean {signal} %{{x:.3g}} over %{{customdata}}<extra></extra>"))
    figure.update_layout(figure_layout(f"token ids by mean {signal} (seen {min_count}+ times)",
                                       height=max(300, 22 * len(stats) + 80)))
    figure.update_yaxes(autorange="reversed")
    return figure


def document_ranking_chart(folder: CorpusFolder, by: str = "mean_surprisal", *, n: int = RANKED) -> go.Figure:
    documents = folder.documents()
    if by not in documents:
        raise WorkbenchError(f"the documents have no '{by}'; figures: "
                             f"{', '.join(c for c in DOCUMENT_FIGURES if c in documents)}")
    ranked = documents.dropna(subset=[by]).sort_values(by, ascending=False).head(n)
    figure = go.Figure(go.Bar(
        x=ranked[by].astype(float), y=[f"doc {int(i)}" for i in ranked["doc_id"]], orientation="h",
        customdata=ranked["doc_id"], marker_color="#72B7B2",
        hovertemplate=f"%{{y}}: {by} %{{x:.3g}} (click to open)<extra></extra>"))
    figure.update_layout(figure_layout(f"documents by {by}", height=max(300, 22 * len(ranked) + 80)))
    figure.update_yaxes(autorange="reversed")
    return figure


def selection_chart(folder: CorpusFolder, fraction: float = 0.1, *, n: int = RANKED, min_count: int = 3,
                    tokenizer=None) -> go.Figure:
    selection = folder.selection(fraction)
    table = selection.by_token_id
    table = table[table["count"] >= min_count].sort_values(["share", "count"], ascending=False).head(n)
    figure = go.Figure(go.Bar(
        x=table["share"], y=_labels(table.index, tokenizer), orientation="h",
        customdata=np.stack([table["selected"], table["count"]], axis=-1), marker_color="#F58518",
        hovertemplate="%{y}: %{customdata[0]} of %{customdata[1]} selected<extra></extra>"))
    title = (f"RHO-1 selection: {selection.n_selected:,} of {selection.n_scored:,} tokens "
             f"({selection.n_selected / selection.n_scored:.1%}), excess loss >= {selection.threshold:.3g}")
    figure.update_layout(figure_layout(title, height=max(300, 22 * len(table) + 80)))
    figure.update_xaxes(title_text="share of the token id's occurrences selected", range=[0, 1])
    figure.update_yaxes(autorange="reversed")
    return figure


def document_run(folder: CorpusFolder, doc_id: int, tokenizer) -> Run:
    """Document `doc_id` as a Run read from the corpus's token rows, no model run: the
    signal columns the corpus stored (the scalar ones, and topk_ids / topk_probs with their
    decoded tokens); the text is the decoded token ids, each token's span found by decoding
    prefixes (`tokens.generated_spans`). A split document's segments follow each other (each
    segment's first token has no prediction); a truncated one holds its first segment. Signals
    kept as arrays (logit lens, attention, routing) are not in the corpus: analyze the
    document to see those. `tokenizer` must be the corpus model's."""
    rows = folder.token_rows(doc_id)
    if rows.empty:
        documents = folder.documents()
        status = documents.loc[documents["doc_id"] == doc_id, "status"]
        said = f"it was skipped ({status.iloc[0]})" if len(status) else "the corpus has no such document"
        raise WorkbenchError(f"document {doc_id} has no token rows: {said}")
    ids = [int(i) for i in rows["token_id"]]
    text, starts, ends = generated_spans(tokenizer, ids, 0)
    table = token_table(Tokens(text, ids, starts, ends, list(rows["role"]), len(ids)), tokenizer)
    for column in rows.columns.difference(KEY_COLUMNS, sort=False):  # list columns as lists, as in analyze
        table[column] = ([None if row is None else row.tolist() for row in rows[column]] if rows[column].dtype == object
                         else rows[column].array)
    if "topk_ids" in rows:
        pieces = decode_pieces(tokenizer, [i for row in rows["topk_ids"] if row is not None for i in row])
        table.insert(table.columns.get_loc("topk_ids") + 1, "topk_tokens",  # (analyze's order)
                     [None if row is None else [pieces[int(i)] for i in row] for row in rows["topk_ids"]])
    settings = folder.manifest["settings"]
    meta = {"model": settings["model"]["name"], "revision": settings["model"]["revision"],
            "signals": settings["signals"], "params": {"top_k": settings["params"]["top_k"]}, "n_tokens": len(ids),
            "corpus": {"path": str(folder.path), "doc_id": doc_id, "segments": int(rows["segment"].max()) + 1}}
    return Run(text, table, {}, meta)


class CorpusOverview(widgets.VBox):
    """A corpus folder in a notebook: the signal's distribution, token ids and documents
    ranked, the RHO-1 selection (with a reference), and a drill-down: click a document bar (or
    pick it) and its usual Run views open below, `model.analyze` of the document."""

    def __init__(self, folder: CorpusFolder | str, model=None, signal: str = "surprisal"):
        super().__init__()
        self.folder = folder if isinstance(folder, CorpusFolder) else CorpusFolder(folder)
        self.model = model
        tokenizer = None if model is None else model.tokenizer
        figures = [distribution_chart(self.folder, signal), token_ranking_chart(self.folder, signal, tokenizer=tokenizer)]
        if "excess_loss" in self.folder.tokens().schema.names:
            figures.append(selection_chart(self.folder, tokenizer=tokenizer))
        self.documents_figure = go.FigureWidget(document_ranking_chart(self.folder))
        self.documents_figure.data[0].on_click(self._on_bar_click)
        ranked = list(self.documents_figure.data[0].customdata)
        self.picker = widgets.Dropdown(options=[(f"doc {int(i)}", int(i)) for i in ranked], value=None,
                                       description="open")
        self.picker.observe(lambda change: self.open_document(change.new), "value")
        self.detail = widgets.Output()
        self.run = None
        self.children = [widgets.HTML(f"<b>{html.escape(repr(self.folder))}</b>"),
                         *[go.FigureWidget(f) for f in figures], self.documents_figure, self.picker, self.detail]

    def _on_bar_click(self, trace, points, _state):
        if points.point_inds:
            self.picker.value = int(trace.customdata[points.point_inds[0]])

    def open_document(self, doc_id: int | None):
        """Analyze document `doc_id` with the model and show its Run views (the first context
        of a document that was truncated or split)."""
        if doc_id is None:
            return None
        if self.model is None:
            raise WorkbenchError("give CorpusOverview a model to open documents: CorpusOverview(folder, model)")
        document = self.folder.document(doc_id)
        source = {"text": document.text} if document.messages is None else {"messages": document.messages}
        self.run = self.model.analyze(**source, signals=self.folder.manifest["settings"]["signals"],
                                      truncate=True, progress=False)
        self.detail.clear_output()
        with self.detail:
            from IPython.display import display

            display(self.run.show())
        return self.run
