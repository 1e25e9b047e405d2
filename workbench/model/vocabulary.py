"""Whether two models can be compared token by token: the same tokenizer vocabulary."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import WorkbenchError

if TYPE_CHECKING:
    from .handle import Model


def check_same_vocabulary(a: "Model", b: "Model", what: str) -> int:
    """Two models compared token by token need the same tokenizer vocabulary (token text ->
    id). Returns the number of logits they share (lm_heads may be padded to different sizes
    beyond it). Comparing across tokenizers needs byte-level probabilities: not done here."""
    if a is not b and a.tokenizer.get_vocab() != b.tokenizer.get_vocab():
        raise WorkbenchError(f"{what} needs two models with the same tokenizer vocabulary; {a.name} and {b.name} "
                             "differ (comparing across tokenizers needs byte-level probabilities, not supported)")
    return min(a.vocab_size, b.vocab_size)
