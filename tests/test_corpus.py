"""wb.corpus / workbench corpus: batched scoring equals one-document analyze, aggregates equal
a pandas computation on the full token table, bad input is refused or counted, resuming after
SIGKILL gives the dataset of an uninterrupted run."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.routing_stats import specialization

DOCUMENTS = [
    "The cat sat on the mat.",
    "A much longer sentence, with commas, numbers 12345 and a few more words to make it long.",
    "Hi",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "the the the the the the",
    "Tokens that matter are the ones the model finds hard.",
    "x",
    "Short one.",
    "Another document about cats and mats and hats.",
]
SIGNAL_COLUMNS = ["entropy", "varentropy", "surprisal", "target_logprob", "margin", "rank"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def llama():
    return wb.load("tiny:llama")


@pytest.fixture(scope="module")
def qwen():
    return wb.load("tiny:qwen2")


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "docs.txt"
    path.write_text("\n".join(DOCUMENTS) + "\n")
    return path


@pytest.fixture(scope="module")
def scored(llama, qwen, text_file, tmp_path_factory):
    """The small corpus with a reference, in shards of 4 documents, batches of 3."""
    out = tmp_path_factory.mktemp("scored")
    return wb.corpus(llama, text_file, out=out, signals=["uncertainty"], reference=qwen, batch_size=3, shard_size=4,
                     progress=False)


def full_tokens(folder) -> pd.DataFrame:
    return folder.tokens().to_table().to_pandas()


def test_batched_rows_equal_one_document_analyze(llama, qwen, scored):
    tokens = full_tokens(scored)
    for doc_id, text in enumerate(DOCUMENTS):
        run = llama.analyze(text, signals=["uncertainty"], progress=False)
        rows = tokens[tokens["doc_id"] == doc_id].reset_index(drop=True)
        assert rows["token_id"].tolist() == run.table["token_id"].tolist()
        assert rows["position"].tolist() == list(range(len(run.table)))
        for column in SIGNAL_COLUMNS:
            # varentropy is E[(log p)^2] - H^2 in fp32 with H ~ log V ~ 6: its rounding is ~1e-4 absolute
            atol = 1e-4 if column == "varentropy" else 1e-5
            np.testing.assert_allclose(rows[column].astype(float).to_numpy(),
                                       run.table[column].astype(float).to_numpy(), rtol=1e-5, atol=atol,
                                       err_msg=column)
        reference = qwen.analyze(text, signals=["uncertainty"], progress=False).table
        np.testing.assert_allclose(rows["reference_surprisal"].astype(float), reference["surprisal"].astype(float),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rows["excess_loss"].astype(float),
                                   (run.table["surprisal"] - reference["surprisal"]).astype(float), rtol=1e-5, atol=1e-5)


def test_manifest_and_documents(scored):
    manifest = json.loads((scored.path / "manifest.json").read_text())
    assert manifest["complete"] and manifest["settings"]["model"]["name"] == "tiny:llama"
    assert manifest["settings"]["reference"]["name"] == "tiny:qwen2"
    assert manifest["counts"]["documents"] == len(DOCUMENTS) and manifest["counts"]["shards"] == 3
    assert manifest["counts"]["token_rows"] == len(full_tokens(scored))
    assert {"workbench", "torch", "transformers", "pyarrow"} <= set(manifest["versions"])
    documents = scored.documents()
    tokens = full_tokens(scored)
    scored_rows = tokens[tokens["surprisal"].notna()].astype({"surprisal": float})
    expected = scored_rows.groupby("doc_id")["surprisal"].agg(["mean", "max", "count"]).reindex(documents["doc_id"])
    assert expected["mean"].isna().sum() == 1  # "x" is one token: nothing predicted, no figures
    np.testing.assert_allclose(documents["mean_surprisal"].astype(float), expected["mean"], rtol=1e-12)
    np.testing.assert_allclose(documents["perplexity"].astype(float), np.exp(expected["mean"]), rtol=1e-12)
    np.testing.assert_allclose(documents["max_surprisal"].astype(float), expected["max"], rtol=1e-12)
    assert documents["n_scored"].tolist() == expected["count"].fillna(0).astype(int).tolist()


def test_token_id_stats_equal_pandas(scored):
    tokens = full_tokens(scored)
    stats = scored.token_stats(["surprisal", "entropy"], quantiles=(0.25, 0.5, 0.9))
    for signal in ("surprisal", "entropy"):
        values = tokens.astype({signal: float}).groupby("token_id")[signal]
        np.testing.assert_allclose(stats[f"{signal}_mean"], values.mean(), rtol=1e-12)
        np.testing.assert_allclose(stats[f"{signal}_q90"], values.quantile(0.9), rtol=1e-12)
        np.testing.assert_allclose(stats[f"{signal}_q25"], values.quantile(0.25), rtol=1e-12)
    assert stats["count"].tolist() == tokens.groupby("token_id").size().tolist()
    # several passes over the shards (token ids bucketed) give the same table
    from workbench.corpus.aggregates import token_id_stats

    pd.testing.assert_frame_equal(token_id_stats(scored.path, ["surprisal"], max_rows=40), scored.token_stats())


def test_rho1_selection_equals_pandas(scored):
    tokens = full_tokens(scored)
    excess = tokens.loc[tokens["excess_loss"].notna()].astype({"excess_loss": float})
    selection = scored.selection(0.2)
    k = math.ceil(0.2 * len(excess))
    threshold = np.sort(excess["excess_loss"].to_numpy())[::-1][k - 1]
    assert selection.threshold == threshold and selection.n_scored == len(excess)
    chosen = excess[excess["excess_loss"] >= threshold]
    assert selection.n_selected == len(chosen) >= k
    by_id = chosen.groupby("token_id").size().reindex(selection.by_token_id.index, fill_value=0)
    assert selection.by_token_id["selected"].tolist() == by_id.tolist()


def test_moe_expert_share_equals_specialization(tmp_path):
    moe = wb.load("workbench:tiny-moe")
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"body": text}) + "\n" for text in DOCUMENTS))
    folder = wb.corpus(moe, path, out=tmp_path / "out", signals="routing", text_field="body", batch_size=4,
                       shard_size=5, progress=False)
    tokens = full_tokens(folder)
    for doc_id in (1, 3):  # batched routing rows equal the document's own analyze
        run = moe.analyze(DOCUMENTS[doc_id], signals=["routing"], progress=False)
        rows = tokens[tokens["doc_id"] == doc_id]
        assert [list(e) for e in rows["experts"]] == run.table["experts"].tolist()
        np.testing.assert_allclose(rows["router_entropy"].astype(float), run.table["router_entropy"].astype(float),
                                   rtol=1e-5)
    n_experts = folder.manifest["settings"]["routing"]["n_experts"]
    top1 = np.array([e[-1] for e in tokens["experts"]])
    expected = specialization(tokens["token_id"].to_numpy(), top1, n_experts)
    share = folder.expert_share()
    np.testing.assert_allclose(share.to_numpy(float), expected.to_numpy(float))
    assert share.index.tolist() == expected.index.tolist()


def test_bad_input_counted_or_refused(llama, tmp_path):
    path = tmp_path / "docs.jsonl"
    long_text = "word " * 400
    records = [{"text": "fine"}, {"text": "   "}, {"text": long_text}, {"text": "also fine"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(WorkbenchError, match=r"document 2 is \d+ tokens, longer than 64.*--long"):
        wb.corpus(llama, path, out=tmp_path / "refused", max_tokens=64, progress=False)
    counts = {}
    for long in ("skip", "truncate", "split"):
        folder = wb.corpus(llama, path, out=tmp_path / long, max_tokens=64, long=long, progress=False)
        counts[long] = folder.manifest["counts"]
        documents = folder.documents().set_index("doc_id")
        assert documents.loc[1, "status"] == "empty"
        n_long = int(documents.loc[2, "n_tokens"])
        rows = full_tokens(folder)
        kept = rows[rows["doc_id"] == 2]
        assert len(kept) == {"skip": 0, "truncate": 64, "split": n_long}[long]
        if long == "split":  # each piece a fresh context: its first token has no prediction
            assert kept["surprisal"].isna().sum() == math.ceil(n_long / 64)
            assert kept["position"].tolist() == list(range(n_long))
    assert counts["skip"]["skipped"] == {"empty": 1, "too_long": 1}
    assert counts["truncate"]["skipped"] == {"empty": 1} and counts["truncate"]["by_status"]["truncated"] == 1
    assert counts["split"]["by_status"]["split"] == 1


def test_non_finite_signals_are_refused_not_stored_as_missing(text_file, tmp_path):
    """A NaN in a nullable column reads as <NA>, "no prediction here": the corpus refuses the
    batch instead, naming its documents, and keeps the shards finished before it."""
    broken = wb.load("tiny:llama")
    with torch.no_grad():
        broken.hf.lm_head.weight[3, 0] = float("nan")  # every prediction's logits hold a NaN
    with pytest.raises(WorkbenchError, match=r"non-finite values .* documents \[\d"):
        wb.corpus(broken, text_file, out=tmp_path / "broken", signals=["uncertainty"], progress=False)


def test_missing_text_field_and_sources(llama, tmp_path, monkeypatch):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no text"}) + "\n")
    with pytest.raises(WorkbenchError, match=r"document 1 has no 'text' field \(it has: body\)"):
        wb.corpus(llama, path, out=tmp_path / "a", progress=False)
    parquet = tmp_path / "docs.parquet"
    pd.DataFrame({"content": ["one", "two"]}).to_parquet(parquet)
    with pytest.raises(WorkbenchError, match=r"no column 'text' \(columns: content\)"):
        wb.corpus(llama, parquet, out=tmp_path / "b", progress=False)
    folder = wb.corpus(llama, parquet, out=tmp_path / "c", text_field="content", progress=False)
    assert folder.documents()["status"].tolist() == ["ok", "ok"]
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(WorkbenchError, match=r"needs the `datasets` package"):
        wb.corpus(llama, tmp_path / "c", out=tmp_path / "d", progress=False)


def test_chat_messages_have_roles(qwen, tmp_path):
    path = tmp_path / "chat.jsonl"
    messages = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]
    path.write_text(json.dumps({"messages": messages}) + "\n")
    folder = wb.corpus(qwen, path, out=tmp_path / "out", progress=False)
    run = qwen.analyze(messages=messages, progress=False)
    rows = full_tokens(folder)
    assert rows["role"].tolist() == run.table["role"].tolist()
    np.testing.assert_allclose(rows["surprisal"].astype(float), run.table["surprisal"].astype(float), rtol=1e-5)


def test_resume_refuses_other_settings(llama, scored, text_file):
    with pytest.raises(WorkbenchError, match=r"other settings \(.*signals"):
        wb.corpus(llama, text_file, out=scored.path, signals=["uncertainty", "logit_lens"], progress=False)


def _corpus_arguments(source, out) -> list[str]:
    return ["corpus", str(source), "--model", "tiny:llama", "--out", str(out), "--shard-size", "2", "--batch-size", "2"]


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, capsys):
    """The CLI in a subprocess, killed once its first shard is in place, then the same command
    again (in this process): the folder equals that of an uninterrupted run, file by file."""
    from workbench.cli.main import main

    source = tmp_path / "docs.txt"
    source.write_text("\n".join(f"{i}: {DOCUMENTS[i % len(DOCUMENTS)]} {'more ' * (i % 13)}" for i in range(60)))
    killed = tmp_path / "killed"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}  # a steady pace on a busy machine
    process = subprocess.Popen([sys.executable, "-m", "workbench", *_corpus_arguments(source, killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    first = killed / "documents" / "part-000000.parquet"
    deadline = time.monotonic() + 120
    while not first.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not json.loads((killed / "manifest.json").read_text())["complete"]  # it really was cut short
    finished = sorted(p.name for p in (killed / "documents").glob("part-*.parquet"))
    assert 1 <= len(finished) < 30
    for path in (killed / "tokens").glob("part-*.parquet"):
        pq.read_table(path)  # every shard in place is whole
    assert main(_corpus_arguments(source, killed)) == 0
    resumed_counts = json.loads(capsys.readouterr().out)
    assert main(_corpus_arguments(source, tmp_path / "whole")) == 0
    assert json.loads(capsys.readouterr().out) == resumed_counts
    for folder in ("tokens", "documents"):
        names = sorted(p.name for p in (tmp_path / "whole" / folder).iterdir())
        assert len(names) == 30 and names == sorted(p.name for p in (killed / folder).iterdir())
        for name in names:
            assert pq.read_table(tmp_path / "whole" / folder / name).equals(pq.read_table(killed / folder / name)), name


def test_a_token_file_without_its_documents_file_is_not_listed(tmp_path):
    """Killed between a shard's two renames: its token file is in place, its documents file is
    not. Readers see the finished shards only."""
    from workbench.corpus import shards

    rows = pd.DataFrame({"doc_id": [0, 0], "position": [0, 1]})
    shards.write(tmp_path, 0, rows, pd.DataFrame({"doc_id": [0]}))
    shards.write(tmp_path, 1, rows.assign(doc_id=1), pd.DataFrame({"doc_id": [1]}))
    (tmp_path / "documents" / "part-000001.parquet").unlink()
    assert [p.name for p in shards.files(tmp_path, "tokens")] == ["part-000000.parquet"]
    assert [p.name for p in shards.files(tmp_path, "documents")] == ["part-000000.parquet"]


def test_views_show_the_aggregates_and_open_a_document(llama, scored):
    from workbench.widgets.corpus import (CorpusOverview, distribution_chart, document_ranking_chart,
                                          selection_chart, token_ranking_chart)

    tokens = full_tokens(scored)
    surprisal = tokens["surprisal"].dropna().astype(float)
    histogram = distribution_chart(scored, "surprisal", bins=10).data[0]
    assert sum(histogram.y) == len(surprisal)
    assert np.histogram(surprisal, 10)[0].tolist() == list(histogram.y)
    ranking = token_ranking_chart(scored, "surprisal", min_count=2, tokenizer=llama.tokenizer).data[0]
    means = tokens.astype({"surprisal": float}).groupby("token_id")["surprisal"].agg(["mean", "size"])
    top = means[means["size"] >= 2].sort_values("mean", ascending=False).head(20)
    np.testing.assert_allclose(ranking.x, top["mean"], rtol=1e-12)
    assert ranking.y[0].endswith(f"#{top.index[0]}")
    documents = document_ranking_chart(scored, "perplexity").data[0]
    assert list(documents.customdata) == scored.documents().sort_values("perplexity", ascending=False)[
        "doc_id"].dropna().head(len(documents.customdata)).tolist()
    assert "of %d tokens" % scored.selection(0.1).n_scored in selection_chart(scored, 0.1).layout.title.text.replace(
        ",", "")
    overview = CorpusOverview(scored, llama)
    run = overview.open_document(3)
    rows = tokens[tokens["doc_id"] == 3]
    assert run.text == DOCUMENTS[3] and run.table["token_id"].tolist() == rows["token_id"].tolist()


def test_a_document_opens_from_its_rows_as_analyze_shows_it(llama, scored):
    """The dashboard's drill-down (no model run) gives the Run a direct analyze of the text gives."""
    from workbench.widgets.corpus import document_run

    for doc_id, text in enumerate(DOCUMENTS):
        run, direct = document_run(scored, doc_id, llama.tokenizer), llama.analyze(text, top_k=0, progress=False)
        assert run.text == direct.text
        for column in ("position", "token_id", "token", "start", "end", "role"):
            assert run.table[column].tolist() == direct.table[column].tolist(), column
        for column in SIGNAL_COLUMNS:
            np.testing.assert_allclose(run.table[column].astype(float), direct.table[column].astype(float), rtol=1e-5,
                                       atol=1e-4 if column == "varentropy" else 1e-5, err_msg=column)
    with pytest.raises(WorkbenchError, match="no document 99"):
        document_run(scored, 99, llama.tokenizer)


def test_the_dashboard_refuses_a_corpus_of_another_model(qwen, scored):
    from workbench.widgets.dashboard.modes.corpus import check_model

    with pytest.raises(WorkbenchError, match="scored by tiny:llama.*serve it with --model tiny:llama"):
        check_model(scored, qwen)


def test_a_first_shard_of_skipped_documents_only(llama, tmp_path):
    """Shard 0 holds only empty documents (no token rows, fewer columns): the dataset and the
    aggregates still see every column."""
    path = tmp_path / "docs.txt"
    path.write_text("\n   \nThe cat sat on the mat.\nthe the the the\n")
    folder = wb.corpus(llama, path, out=tmp_path / "out", shard_size=2, progress=False)
    assert folder.manifest["counts"]["skipped"] == {"empty": 2}
    tokens = full_tokens(folder)
    assert "surprisal" in tokens and set(tokens["doc_id"]) == {2, 3}
    stats = folder.token_stats()
    np.testing.assert_allclose(stats["surprisal_mean"],
                               tokens.astype({"surprisal": float}).groupby("token_id")["surprisal"].mean(), rtol=1e-12)


def test_ray_engine_without_ray_says_how_to_install(llama, text_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(WorkbenchError, match=r"engine='ray' needs Ray Data: pip install 'token-workbench\[ray\]'"):
        wb.corpus(llama, text_file, out=tmp_path / "out", engine="ray", progress=False)
    assert not (tmp_path / "out" / "tokens").exists()
