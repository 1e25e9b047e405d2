"""Corpus mode: a finished corpus folder (written by `workbench corpus`; `workbench serve --corpus
DIR` fills its field, starts the page in this mode and opens it) as the overview of `widgets.corpus`: how a signal is
distributed over every token, the token ids with the largest mean, the documents ranked by mean
surprisal, and RHO-1's selected share when the corpus has a reference's excess loss. Clicking a
document bar (or typing its id) opens its tokens as a run with the usual views, read from
the corpus's token rows (`widgets.corpus.document_run`: no model run; its signals are those the
corpus stored). Every figure is computed shard by shard and a document's rows are read from its
shard alone: the token table is never loaded whole. The mode takes no text."""
from __future__ import annotations

from dataclasses import dataclass

from workbench.corpus.folder import CorpusFolder
from workbench.corpus.scoring import KEY_COLUMNS
from workbench.errors import WorkbenchError
from workbench.sampler_parameters import Range

from ...corpus import distribution_chart, document_ranking_chart, document_run, selection_chart, token_ranking_chart
from ...panels import clicked_index
from ..controls import field_value
from . import Mode, register, seconds_said

FOLDER_LABEL = "Corpus folder (written by workbench corpus)"
DEFAULT_SIGNAL = "surprisal"
SELECTED_FRACTION = 0.1  # RHO-1's share of tokens kept, as its paper's default (top 10% by excess loss)


@dataclass
class Overview:
    folder: CorpusFolder
    signal: str  # the signal the distribution and the token ranking show
    figures: dict  # name -> plotly Figure, in the order shown
    signals: list[str]  # the token table's numeric signal columns


class CorpusControls:
    """The folder, the signal of the overview, the document on show; and the overview's charts,
    shown under the status line (`below`)."""

    def __init__(self, page):
        import panel as pn

        from ..components import number_field_class

        self.folder = pn.widgets.TextInput(label=FOLDER_LABEL, value=str(page.corpus or ""), width=420)
        self.signal = pn.widgets.Select(label="Overview signal", options=[DEFAULT_SIGNAL], value=DEFAULT_SIGNAL,
                                        width=170, disabled=True)
        self.document = number_field_class()(label="Document id", value=None, width=120, disabled=True)
        self.row = pn.Row(self.folder, self.signal, self.document, visible=False)
        self.below = pn.FlexBox(sizing_mode="stretch_width", visible=False)
        self.overview: Overview | None = None

        async def signal_changed(event):  # the overview drawn again for the new signal
            if self.overview is not None and event.new != self.overview.signal:
                await page.go()

        self.signal.param.watch(signal_changed, "value")
        async def document_changed(_event):
            await self.open_document(page)

        self.document.param.watch(document_changed, "value")

    def show(self, overview: Overview) -> None:
        from ..components import VIEW_HEIGHT, plotly_pane

        self.overview = overview
        panes = []
        for name, figure in overview.figures.items():
            on_click = self._on_document_click if name == "documents" else lambda _event: None
            pane = plotly_pane(on_click, f"corpus.{name}")
            pane.param.update(object=figure, height=int(figure.layout.height or VIEW_HEIGHT))
            panes.append(pane)
        self.below.objects = panes
        self.document.disabled = False
        self.signal.param.update(options=overview.signals, value=overview.signal, disabled=False)

    def _on_document_click(self, event) -> None:
        points = (event.new or {}).get("points") or []
        if points:
            self.document.value = clicked_index(points[0].get("customdata"))

    async def open_document(self, page) -> None:
        """Show the document whose id the field holds as a run (its rows from the corpus) with the
        usual views; a bad id is one line. Read in a worker thread (finding a long document's token
        spans takes seconds), so other sessions' pages keep answering meanwhile."""
        if self.overview is None or self.document.value in (None, ""):
            return
        folder = self.overview.folder

        def read(doc_id: int):
            page.worker.stage = f"reading document {doc_id} from the corpus"
            return document_run(folder, doc_id, page.model.tokenizer)

        try:
            doc_id = field_value(self.document, Range(0, folder.manifest["counts"]["documents"] - 1, whole=True))
            run = await page.worker.in_background(lambda: read(doc_id), page.say)
        except WorkbenchError as error:
            page.say(f"Error: {error}", error=True)
            return
        page.show_run(run)
        page.say(f"Document {doc_id}: {len(run)} tokens, their signals as the corpus stored them (no model run). "
                 "Click a token (or a point in a chart) to select it in every view.")


def check_model(folder: CorpusFolder, model) -> None:
    """The corpus's token ids are its model's: the served model must be that one to show them."""
    made_with = folder.manifest["settings"]["model"]["name"]
    if made_with != model.name:
        raise WorkbenchError(f"this corpus was scored by {made_with} (its token ids are that model's) and this server "
                             f"serves {model.name}; serve it with --model {made_with}")


def signal_columns(folder: CorpusFolder) -> list[str]:
    """The token table's numeric signal columns, from its files' schemas."""
    import pyarrow as pa

    return [field.name for field in folder.tokens().schema if field.name not in KEY_COLUMNS
            and (pa.types.is_floating(field.type) or pa.types.is_integer(field.type))]


async def open_corpus(page):
    controls = page.controls["corpus"]
    path, signal = controls.folder.value.strip(), controls.signal.value
    if not path:
        raise WorkbenchError("give the folder a workbench corpus run wrote (or start the server with --corpus DIR)")

    def work():
        folder = CorpusFolder(path).require_complete()
        check_model(folder, page.model)
        signals = signal_columns(folder)
        shown = signal if signal in signals else DEFAULT_SIGNAL
        if shown not in signals:
            raise WorkbenchError(f"this corpus has no {DEFAULT_SIGNAL} (signals: {', '.join(folder.manifest['settings']['signals'])}); "
                                 "the overview needs the uncertainty signal")
        tokenizer = page.model.tokenizer
        figures = {"distribution": distribution_chart(folder, shown),
                   "tokens": token_ranking_chart(folder, shown, tokenizer=tokenizer),
                   "documents": document_ranking_chart(folder)}
        if "excess_loss" in signals:
            figures["selection"] = selection_chart(folder, SELECTED_FRACTION, tokenizer=tokenizer)
        return Overview(folder, shown, figures, signals)

    return await page.worker.in_background(work, page.say)


def show(page, overview: Overview, seconds: float) -> None:
    page.controls["corpus"].show(overview)
    counts = overview.folder.manifest["counts"]
    skipped = sum(counts["skipped"].values())
    page.say(f"Corpus of {counts['documents']:,} documents ({skipped:,} skipped), {counts['token_rows']:,} token rows "
             f"by {overview.folder.manifest['settings']['model']['name']}, read in {seconds_said(seconds)}. "
             "Click a document's bar (or type its id) to open its tokens.")


register(Mode(name="corpus", button="Open corpus", compute=open_corpus, show=show, controls=CorpusControls,
              takes_text=False))
