"""The Ray Data engine: the same scoring on a pool of Ray actors, one model per actor.

The driver reads and tokenizes the documents (`corpus.segments`), as the local engine does,
and sends the segments of a window of shards through
    ray.data.from_items(segments) -> map_batches(SegmentScorer, compute=ActorPoolStrategy(size=actors),
                                                 num_gpus=gpus_per_actor) -> token rows
Each actor loads the model (and reference) by name once (`workbench.load`: the embedded,
tiny, local or Hub model the driver named, same revision and dtype) and runs
`corpus.scoring.score` on its batches. The driver writes each shard's rows whole
(`corpus.shards`), so resuming, the manifest and the files are those of the local engine.
Ray is optional: `pip install 'token-workbench[ray]'`.
"""
from __future__ import annotations

import itertools

import pandas as pd

from ..errors import WorkbenchError
from .scoring import score
from .shards import rows_of
from .segments import Segment

WINDOW_SHARDS = 8  # shards sent to the actor pool at once (the pool starts once per window)


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise WorkbenchError("engine='ray' needs Ray Data: pip install 'token-workbench[ray]' "
                             "(or pip install 'ray[data]')") from None
    return ray


class SegmentScorer:
    """A Ray actor's callable: holds the model(s), scores a pandas batch of segments."""

    def __init__(self, model: dict, reference: dict | None, signals: list[str], params: dict, device: str):
        from ..model.handle import load
        from ..signals import resolve

        self.model = load(model["name"], dtype=model["dtype"], device=device, revision=model["revision"])
        self.reference = None if reference is None else load(
            reference["name"], dtype=reference["dtype"], device=device, revision=reference["revision"])
        self.specs = resolve(signals, self.model)
        self.params = params

    def __call__(self, batch: pd.DataFrame):
        """segments [n rows: doc_id, segment, offset, ids, roles] -> token rows as an Arrow
        table (Arrow keeps the nullable integer and float columns as the local engine writes them)."""
        import pyarrow as pa

        segments = [Segment(int(row.doc_id), int(row.segment), int(row.offset), [int(i) for i in row.ids],
                            [str(r) for r in row.roles]) for row in batch.itertuples()]
        return pa.Table.from_pandas(score(self.model, segments, self.specs, self.params, self.reference),
                                    preserve_index=False)


class RayScorer:
    """Scores shards on Ray Data; `score_shards` yields (index, prepared, token rows) in order."""

    def __init__(self, model, reference, settings: dict, actors: int, gpus_per_actor: float, address: str | None):
        if not isinstance(actors, int) or actors < 1:
            raise WorkbenchError(f"actors must be a positive integer, got {actors!r}")
        if gpus_per_actor < 0:
            raise WorkbenchError(f"gpus_per_actor must be >= 0, got {gpus_per_actor}")
        self.ray = require_ray()
        if not self.ray.is_initialized():
            self.ray.init(address=address, log_to_driver=False)
        self.settings, self.actors, self.gpus = settings, actors, gpus_per_actor
        self.device = "cuda" if gpus_per_actor > 0 else "cpu"

    def score_shards(self, pending):
        while True:
            window = list(itertools.islice(pending, WINDOW_SHARDS))
            if not window:
                return
            rows = self._score_window([segment for _, prepared in window for p in prepared for segment in p.segments])
            for index, prepared in window:
                ids = [p.doc_id for p in prepared]
                mine = rows[rows["doc_id"].between(ids[0], ids[-1])] if len(rows) else rows
                yield index, prepared, mine.sort_values(["doc_id", "position"], ignore_index=True)

    def _score_window(self, segments: list[Segment]) -> pd.DataFrame:
        settings = self.settings
        if not segments:
            return pd.DataFrame({"doc_id": pd.Series(dtype="int64")})
        items = [{"doc_id": s.doc_id, "segment": s.segment, "offset": s.offset, "ids": s.ids, "roles": s.roles}
                 for s in segments]
        dataset = self.ray.data.from_items(items).map_batches(
            SegmentScorer,
            fn_constructor_kwargs={"model": settings["model"], "reference": settings["reference"],
                                   "signals": settings["signals"], "params": settings["params"],
                                   "device": self.device},
            batch_size=settings["params"]["batch_size"], batch_format="pandas",
            compute=self.ray.data.ActorPoolStrategy(size=self.actors),  # a fixed pool (`concurrency=` is deprecated)
            num_gpus=self.gpus,
        )
        import pyarrow as pa

        tables = [batch for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None)]
        return rows_of(pa.concat_tables(tables, promote_options="default"))
