"""`corpus`: signals over every document of a dataset, shard by shard, resumable.

The plan: open the source (`corpus.sources`), settle the settings and check them against a
folder being resumed (`corpus.manifest`), then for each shard of `shard_size` documents not
yet finished: tokenize and cut the documents (`corpus.segments`), score their tokens in
batched forwards (`corpus.scoring`, in this process, or on Ray Data actors with
`engine="ray"`: `corpus.ray_engine`), and write the shard's token and document rows whole
(`corpus.shards`). Running the same call again on the same folder continues after the last
finished shard: nothing is computed twice, nothing is lost.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Iterator, Sequence

from tqdm.auto import tqdm

from ..corpus import manifest, shards
from ..corpus.documents import document_rows
from ..corpus.manifest import model_record
from ..corpus.folder import CorpusFolder
from ..corpus.scoring import score
from ..corpus.segments import SKIPPED, Prepared, check_long_policy, prepare
from ..corpus.sources import Source, open_source
from ..errors import WorkbenchError
from ..model.handle import Model
from ..model.vocabulary import check_same_vocabulary
from ..signals import SIGNALS, resolve
from .analyze import MAX_TOP_K

ENGINES = ("local", "ray")
DEFAULT_MAX_TOKENS = 4096  # for models whose config names no context length


def corpus(
    model: Model,
    source,
    *,
    out,
    signals: Sequence[str] | str = ("uncertainty",),
    reference: Model | None = None,
    text_field: str = "text",
    top_k: int = 0,
    batch_size: int = 16,
    max_batch_tokens: int = 8192,
    shard_size: int = 256,
    max_tokens: int | None = None,
    long: str = "error",
    engine: str = "local",
    actors: int = 1,
    gpus_per_actor: float = 0.0,
    ray_address: str | None = None,
    progress: bool = True,
) -> CorpusFolder:
    """Per-token signals of every document of `source` into the folder `out`.

    source: a text file (one document a line), JSONL (`text_field`, or chat "messages"),
    Parquet (the `text_field` column), or a `datasets.Dataset` / a folder it saved.
    signals: as for `analyze`. reference: a second model with the same tokenizer; adds
    reference_surprisal and excess_loss (RHO-1) to the token rows. top_k: alternatives kept
    per token (0: none). batch_size, max_batch_tokens: at most this many documents and
    padded tokens per forward. shard_size: documents per shard (the unit of resuming).
    max_tokens: longest segment (default: the model's context); long: what to do with a
    longer document, "error", "truncate", "split" or "skip". engine: "local" (this process)
    or "ray" (Ray Data, `actors` actors holding one model each, `gpus_per_actor` GPUs each,
    on the cluster at `ray_address` or a local Ray). Returns the `CorpusFolder`.
    """
    settings, specs = _settings(model, source, signals, reference, text_field, top_k, batch_size, max_batch_tokens,
                                shard_size, max_tokens, long, engine)
    opened = open_source(source, text_field)
    settings["source"] = opened.identity
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    manifest.check_resumable(out, settings)
    shards.clear_unfinished(out)
    if engine == "ray":
        from ..corpus.ray_engine import RayScorer

        scorer = RayScorer(model, reference, settings, actors, gpus_per_actor, ray_address)
    else:
        scorer = _LocalScorer(model, reference, specs, settings["params"])
    record = {"settings": settings, "versions": manifest.versions(), "engine": engine, "device": str(model.device),
              "complete": False, "counts": None}
    manifest.write(out, record)
    done = shards.finished(out)
    total = opened.count()
    with tqdm(total=total, unit="doc", desc="corpus", disable=not progress, dynamic_ncols=True) as bar:
        tokens_done, started = 0, time.perf_counter()
        pending = _pending_shards(opened, model.tokenizer, settings["params"], done, bar)
        for index, prepared, tokens in scorer.score_shards(pending):
            shards.write(out, index, tokens, document_rows(prepared, tokens))
            tokens_done += len(tokens)
            bar.update(len(prepared))
            bar.set_postfix_str(f"{tokens_done / max(time.perf_counter() - started, 1e-9):,.0f} tok/s")
    record.update(complete=True, counts=_counts(out))
    record["versions"] = manifest.versions()
    manifest.write(out, record)
    return CorpusFolder(out)


def _settings(model, source, signals, reference, text_field, top_k, batch_size, max_batch_tokens, shard_size,
              max_tokens, long, engine) -> tuple[dict, list]:
    """Check every option before anything is read or written; the settings the manifest
    records and a resumed run must repeat."""
    if engine not in ENGINES:
        raise WorkbenchError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    check_long_policy(long)
    if not isinstance(top_k, int) or not 0 <= top_k <= MAX_TOP_K:
        raise WorkbenchError(f"top_k must be an integer in [0, {MAX_TOP_K}], got {top_k!r}")
    for name, value in (("batch_size", batch_size), ("max_batch_tokens", max_batch_tokens),
                        ("shard_size", shard_size)):
        if not isinstance(value, int) or value < 1:
            raise WorkbenchError(f"{name} must be a positive integer, got {value!r}")
    context = model.context_length
    max_tokens = max_tokens or context or DEFAULT_MAX_TOKENS
    if context is not None and max_tokens > context:
        raise WorkbenchError(f"max_tokens {max_tokens} is more than {model.name}'s context of {context} tokens")
    specs = resolve(signals, model)
    if reference is not None:
        check_same_vocabulary(model, reference, "excess loss against a reference")
        if SIGNALS["uncertainty"] not in specs:
            specs.append(SIGNALS["uncertainty"])  # excess loss is the model's surprisal minus the reference's
    routers = model.adapter.routers(model.hf)
    routing = {"layers": [index for index, _ in routers], "n_experts": int(routers[0][1].weight.shape[0])} \
        if "routing" in [spec.name for spec in specs] else None
    settings = {
        "model": model_record(model),
        "reference": None if reference is None else model_record(reference),
        "signals": [spec.name for spec in specs],
        "params": {"text_field": text_field, "top_k": top_k, "batch_size": batch_size,
                   "max_batch_tokens": max_batch_tokens, "shard_size": shard_size, "max_tokens": max_tokens,
                   "long": long},
        "routing": routing,
    }
    return settings, specs


def _pending_shards(source: Source, tokenizer, params: dict, done: set[int], bar) -> Iterator[tuple[int, list[Prepared]]]:
    """(shard index, its prepared documents) for every shard not in `done`, in order."""
    size = params["shard_size"]
    for index, documents in itertools.groupby(source.documents(), key=lambda d: d.doc_id // size):
        if index in done:
            bar.update(sum(1 for _ in documents))
            continue
        yield index, [prepare(tokenizer, d, params["max_tokens"], params["long"]) for d in documents]


class _LocalScorer:
    """Scores shards in this process with the given model(s)."""

    def __init__(self, model, reference, specs, params):
        self.model, self.reference, self.specs, self.params = model, reference, specs, params

    def score_shards(self, pending):
        for index, prepared in pending:
            segments = [segment for p in prepared for segment in p.segments]
            yield index, prepared, score(self.model, segments, self.specs, self.params, self.reference)


def _counts(out: Path) -> dict:
    """Counts for the manifest, from the documents files (a column at a time)."""
    import pyarrow.parquet as pq

    by_status: dict[str, int] = {}
    n_tokens = 0
    files = shards.files(out, shards.DOCUMENTS)
    for path in files:
        table = pq.read_table(path, columns=["status", "n_tokens", "n_segments"]).to_pandas()
        for status, count in table["status"].value_counts().items():
            by_status[status] = by_status.get(status, 0) + int(count)
        n_tokens += int(table.loc[table["n_segments"] > 0, "n_tokens"].sum())
    n_documents = sum(by_status.values())
    skipped = {status: by_status[status] for status in SKIPPED if status in by_status}
    return {"documents": n_documents, "documents_with_rows": n_documents - sum(skipped.values()),
            "skipped": skipped, "by_status": by_status, "tokens_in_documents": n_tokens,
            "token_rows": sum(_rows(path) for path in shards.files(out, shards.TOKENS)), "shards": len(files)}


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
