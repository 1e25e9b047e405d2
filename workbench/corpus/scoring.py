"""Token rows for a set of segments: batched forwards, the registered signals, the reference.

Segments are sorted by length and grouped into batches of at most `batch_size` sequences
and `max_batch_tokens` padded tokens (batch x longest), each checked against the memory
estimate before it runs (`forward.memory.check_batch_fits`). One forward per batch
(`forward.capture.run_forward_batch`: right padding with an attention mask) gives each
segment its own `Capture`; the batch's captures are packed end to end
(`forward.capture.pack_captures`) and each requested signal computes its columns once for the
batch, as in `analyze` (one lm_head pass per batch, not per document). The columns are cut
back into segments; a column with no value at the first position (a prediction of the token
from the ones before it) gets none at each segment's first position either, where the packed
rows would hold the previous segment's last prediction. Signals that stream attention
statistics run one segment per forward, unpacked.

Token rows: doc_id, segment, position (in the document), token_id, role, then the signals'
columns (their scalar columns, and list columns of numbers such as `experts`; the decoded
`topk_tokens` are left out: `topk_ids` holds the same). With a reference model:
    reference_surprisal  -log q(y_t | y_<t) under the reference
    excess_loss          surprisal - reference_surprisal, RHO-1's score (Lin et al. 2024,
                         "Not All Tokens Are What You Need"): tokens the model finds much harder
                         than a reference trained on clean data are the ones worth training on.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ..errors import WorkbenchError
from ..finite import table_finite
from ..forward import memory
from ..forward.capture import pack_captures, run_forward_batch
from ..signals import SIGNALS, Signal
from .segments import Segment

ATTENTION_NEEDS = {"attention", "keyformer"}
LEFT_OUT = ("topk_tokens",)
KEY_COLUMNS = ("doc_id", "segment", "position", "token_id", "role")
BATCH_ADVICE = "lower batch_size or max_batch_tokens (CLI: --batch-size, --max-batch-tokens)"


def batches(segments: Sequence[Segment], batch_size: int, max_batch_tokens: int) -> Iterator[list[Segment]]:
    """Segments longest first, in batches of at most batch_size and max_batch_tokens padded
    tokens (a segment longer than max_batch_tokens goes alone)."""
    ordered = sorted(segments, key=lambda s: (-len(s.ids), s.doc_id, s.segment))
    batch: list[Segment] = []
    for segment in ordered:
        width = len(batch[0].ids) if batch else len(segment.ids)  # the first is the longest
        if batch and (len(batch) == batch_size or (len(batch) + 1) * width > max_batch_tokens):
            yield batch
            batch = []
        batch.append(segment)
    if batch:
        yield batch


def score(model, segments: Sequence[Segment], specs: Sequence[Signal], params: dict, reference=None) -> pd.DataFrame:
    """Token rows of `segments` (see the module docstring), sorted by doc_id and position.
    params: top_k, batch_size, max_batch_tokens."""
    needs = {need for spec in specs for need in spec.needs}
    batch_size = 1 if needs & ATTENTION_NEEDS else params["batch_size"]
    parts = []
    for batch in batches(segments, batch_size, params["max_batch_tokens"]):
        parts.append(_score_batch(model, batch, specs, needs, params["top_k"], reference))
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype="int64") for name in KEY_COLUMNS[:-1]} | {"role": pd.Series(dtype=str)})
    return pd.concat(parts, ignore_index=True).sort_values(["doc_id", "position"], ignore_index=True)


def _score_batch(model, batch: list[Segment], specs, needs, top_k: int, reference) -> pd.DataFrame:
    ids = [segment.ids for segment in batch]
    memory.check_batch_fits(model, len(batch), len(ids[0]), specs, BATCH_ADVICE)
    capture = pack_captures(run_forward_batch(model, ids, needs))
    lengths = [len(segment_ids) for segment_ids in ids]
    table = pd.DataFrame({
        "doc_id": pd.array([s.doc_id for s in batch for _ in s.ids], dtype="int64"),
        "segment": pd.array([s.segment for s in batch for _ in s.ids], dtype="int64"),
        "position": pd.array([s.offset + i for s in batch for i in range(len(s.ids))], dtype="int64"),
        "token_id": pd.array([i for s in batch for i in s.ids], dtype="int64"),
        "role": [role for s in batch for role in s.roles],
    })
    for spec in specs:
        output = spec.compute(capture, {"top_k": top_k, "progress": False})
        for name, values in output.columns.items():
            if name not in LEFT_OUT and not (top_k == 0 and name.startswith("topk_")):
                table[name] = _unpacked(values, lengths)
    if reference is not None:
        table["reference_surprisal"] = _reference_surprisal(reference, ids, lengths)
        table["excess_loss"] = table["surprisal"] - table["reference_surprisal"]
    predicted = np.concatenate([np.arange(n) > 0 for n in lengths])  # a segment's first token has no prediction
    if not table_finite(table, predicted):  # a NaN would be stored as <NA>, "no prediction here"
        raise WorkbenchError(f"non-finite values (NaN or infinite) in the signals of documents "
                             f"{sorted({s.doc_id for s in batch})}: the model (or the reference) overflowed or its "
                             "weights are damaged (try dtype='float32'); the shards finished so far are kept")
    return table


def _unpacked(values, lengths: list[int]):
    """A packed column: when its first value is missing (a prediction from the tokens before),
    each segment's first value is made missing too."""
    first = values[0]
    if not (first is None or first is pd.NA):
        return values
    values = values.copy()
    for start in np.cumsum([0, *lengths[:-1]]):
        values[int(start)] = first
    return values


def _reference_surprisal(reference, ids: list[list[int]], lengths: list[int]):
    """-log q(y_t | y_<t) of each sequence under the reference, packed: the uncertainty
    signal's surprisal column from one batched forward of the reference."""
    uncertainty = SIGNALS["uncertainty"]
    memory.check_batch_fits(reference, len(ids), len(ids[0]), [uncertainty], BATCH_ADVICE)
    capture = pack_captures(run_forward_batch(reference, ids, set(uncertainty.needs)))
    return _unpacked(uncertainty.compute(capture, {"top_k": 0, "progress": False}).columns["surprisal"], lengths)
