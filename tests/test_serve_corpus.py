"""Corpus mode in a real browser: a small corpus scored by tiny:llama against tiny:qwen2 (a
reference, so the RHO-1 selection is there), served by `workbench serve --corpus DIR` as a user
starts it. The overview's numbers equal pandas' on the whole token table (a direct computation,
not the shard-by-shard aggregates that drew them); a clicked document bar opens that document's
tokens, whose strip, signal chart and selected token's next-token chart hold its rows in the
dataset, as does a document typed by its id; a missing folder and an unfinished run are one clear line each."""
from __future__ import annotations

import json
import math
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from pages import FIND, MARKED, PLOT_POINT, VIEW, WORKBENCH_SERVE, click_point, fill, served, wait_until, watched_page
from workbench.widgets.dashboard.modes.corpus import FOLDER_LABEL

TEXTS = [f"Note {i}: the river {'market ' * (i % 4)}grew into a town{' and a city' * (i % 3)}." for i in range(24)]
# The screen point of the middle of the `k`-th bar of the documents ranking.
DOCUMENT_BAR = f"""
(k) => {{
  const plot = ({VIEW})('documents by');
  return ({PLOT_POINT})(plot, plot.data[0].x[k] / 2, k);
}}
"""
# Whether the strip and the document's signal chart show `position` selected (the overview's charts
# are the corpus's, not the document's).
DOCUMENT_MARKED = f"""
(position) => {{
  const strip = ({FIND})().strips[0], chart = ({VIEW})('surprisal per token');
  return strip.dataset.selected === String(position) && !!chart && ({MARKED})(chart, position);
}}
"""


def write_corpus(scratch):
    """The corpus folder of TEXTS, scored by tiny:llama against tiny:qwen2 on one torch thread."""
    (scratch / "docs.txt").write_text("\n".join(TEXTS) + "\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wb.corpus(wb.load("tiny:llama"), scratch / "docs.txt", out=scratch / "corpus", reference=wb.load("tiny:qwen2"),
                  top_k=3, shard_size=8, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory):
    """(base URL, corpus folder): the corpus is written while the server starts (the page reads
    the folder only when asked to open it)."""
    scratch = tmp_path_factory.mktemp("serve-corpus")
    with ThreadPoolExecutor(1) as pool:
        written = pool.submit(write_corpus, scratch)
        command = WORKBENCH_SERVE[:2] + ["--model", "tiny:llama", "--corpus", str(scratch / "corpus"), "--port"]
        with served(scratch / "server.log", command) as url:
            written.result()
            yield url, scratch / "corpus"


def plot(page, title: str):
    return page.evaluate(f"() => {{ const p = ({VIEW})({json.dumps(title)}); return {{x: p.data[0].x, "
                         "y: p.data[0].y, customdata: p.data[0].customdata, title: p.layout.title.text}; }")


def status(page, pattern: str):
    page.locator(".tw-status", has_text=re.compile(pattern)).wait_for(timeout=30_000)
    return page.locator(".tw-status").inner_text()


@pytest.mark.slow
def test_corpus_mode_in_a_browser(corpus_server, browser):
    url, corpus_folder = corpus_server
    rows = pd.read_parquet(corpus_folder / "tokens")  # the whole table: the reference computation
    scored = rows.dropna(subset=["surprisal"])
    with watched_page(browser, url, viewport={"width": 1280, "height": 1000}) as page:
        said = status(page, "Corpus of")  # the page starts in corpus mode and opens the folder
        assert f"Corpus of {len(TEXTS)} documents (0 skipped), {len(rows):,} token rows by tiny:llama" in said
        page.wait_for_function(f"() => ({FIND})().plots.length === 4", timeout=20_000)

        # The surprisal distribution: 50 equal bins between the smallest and largest value.
        counts, _ = np.histogram(scored["surprisal"], bins=50)
        assert plot(page, "surprisal over")["y"] == counts.tolist()
        # Token ids by mean surprisal, seen 3+ times.
        by_id = scored.groupby("token_id")["surprisal"].agg(["mean", "count"])
        top = by_id[by_id["count"] >= 3].sort_values("mean", ascending=False).head(20)
        shown = plot(page, "token ids by mean surprisal")
        assert [int(label.rsplit("#", 1)[1]) for label in shown["y"]] == top.index.tolist()
        np.testing.assert_allclose(shown["x"], top["mean"], rtol=1e-12)
        # Documents by mean surprisal.
        by_document = scored.groupby("doc_id")["surprisal"].mean().sort_values(ascending=False).head(20)
        documents = plot(page, "documents by")
        assert documents["customdata"] == by_document.index.tolist()
        np.testing.assert_allclose(documents["x"], by_document, rtol=1e-12)
        # RHO-1: the top 10% of excess losses (ties with the threshold included).
        excess = rows["excess_loss"].dropna().to_numpy(np.float64)
        threshold = np.sort(excess)[::-1][math.ceil(0.1 * len(excess)) - 1]
        selected = int((excess >= threshold).sum())
        assert f"RHO-1 selection: {selected:,} of {len(excess):,} tokens" in plot(page, "RHO-1 selection")["title"]

        # A document's bar opens its tokens, as the dataset holds them.
        doc_id = documents["customdata"][2]
        click_point(page, DOCUMENT_BAR, 2)
        said = status(page, f"Document {doc_id}:")
        document = rows[rows["doc_id"] == doc_id].sort_values("position")
        assert f"{len(document)} tokens" in said
        strip = page.locator(".tw-text .t")
        assert strip.count() == len(document)
        tokenizer = wb.load("tiny:llama").tokenizer
        assert "".join(strip.all_inner_texts()) == tokenizer.decode(document["token_id"].tolist())
        shown = plot(page, "surprisal per token")
        np.testing.assert_allclose(np.array(shown["y"], dtype=float), document["surprisal"].astype(float), rtol=1e-12)

        # A selected token's values are its row's.
        position = 5
        page.locator(f'.tw-text .t[data-i="{position}"]').click()
        wait_until(page, DOCUMENT_MARKED, position, f"clicking token {position} did not select it")
        page.wait_for_function(f"() => !!({VIEW})('Prediction of token #{position} ')", timeout=10_000)
        row = document.iloc[position]
        probabilities = plot(page, f"Prediction of token #{position} ")["x"]  # the top 3, then the actual token's
        np.testing.assert_allclose(probabilities[:3], row["topk_probs"], rtol=1e-12)
        np.testing.assert_allclose(probabilities[3:], [math.exp(-row["surprisal"])] * (len(probabilities) - 3), rtol=1e-9)
        assert page.locator(f'.tw-text .t[data-i="{position}"]').get_attribute("data-v") == f"{row['surprisal']:.4g}"

        # Any document by its id (one the ranking leaves out), and an id out of range is one line.
        unranked = sorted(set(range(len(TEXTS))) - set(documents["customdata"]))[0]
        fill(page, "Document id", unranked)
        said = status(page, f"Document {unranked}:")
        assert f"{(rows['doc_id'] == unranked).sum()} tokens" in said
        fill(page, "Document id", len(TEXTS))
        status(page, f"Error: Document id must be .*{len(TEXTS) - 1}")

        # Another signal draws the overview again.
        page.get_by_label("Overview signal").select_option("entropy")
        page.wait_for_function(f"() => !!({VIEW})('entropy over')", timeout=20_000)
        assert plot(page, "entropy over")["y"] == np.histogram(scored["entropy"], bins=50)[0].tolist()

        # A missing folder and an unfinished run: one line each.
        fill(page, FOLDER_LABEL, str(corpus_folder.parent / "missing"))
        page.get_by_role("button", name="Open corpus").click()
        status(page, "Error: corpus folder not found")
        unfinished = corpus_folder.parent / "unfinished"
        shutil.copytree(corpus_folder, unfinished)
        manifest = json.loads((unfinished / "manifest.json").read_text())
        (unfinished / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
        fill(page, FOLDER_LABEL, str(unfinished))
        page.get_by_role("button", name="Open corpus").click()
        status(page, "Error: .* holds an unfinished corpus run .* run the same workbench corpus command again")
