"""Whether two models can be compared token by token: the same tokenizer vocabulary."""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from ..errors import WorkbenchError

if TYPE_CHECKING:
    from .handle import Model


def check_same_vocabulary(a: "Model", b: "Model", what: str) -> int:
    """Two models compared token by token need the same tokenizer vocabulary (token text ->
    id). Returns the number of logits they share (lm_heads may be padded to different sizes
    beyond it). Comparing across tokenizers needs byte-level probabilities: not done here."""
    if a is not b and not _same_vocabulary(a.tokenizer, b.tokenizer):
        raise WorkbenchError(f"{what} needs two models with the same tokenizer vocabulary; {a.name} and {b.name} "
                             "differ (comparing across tokenizers needs byte-level probabilities, not supported)")
    return min(a.vocab_size, b.vocab_size)


_FOUND_EQUAL: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # tokenizer -> {(weak ref of the other, sizes)}


def _same_vocabulary(first, second) -> bool:
    """first.get_vocab() == second.get_vocab(), remembered for a pair found equal while neither
    changes size (building the two dicts of a 49,152-token vocabulary takes ~50 ms, as long as the
    rest of a short comparison's bookkeeping)."""
    try:  # a dead reference equals only itself: a new tokenizer at a freed address is not taken for it
        known = _FOUND_EQUAL.setdefault(first, set())
        key = (weakref.ref(second), len(first), len(second))
        if key in known:
            return True
    except TypeError:  # a tokenizer without a weak reference or a hash: compared every time
        known = key = None
    if first.get_vocab() != second.get_vocab():
        return False
    if known is not None:
        known.add(key)
    return True
