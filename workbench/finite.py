"""Non-finite results: a run whose numbers are NaN or infinite says so instead of showing them.

Damaged weights (a GGUF file with broken tensor data) or an overflow (float16 activations
beyond 65504) turn a model's hidden states and logits into NaN or infinity, and every signal
computed from them is meaningless; some even look like numbers (the entropy of an all-NaN
distribution comes out as -0.0). `analyze`, `generate` and `rollouts` therefore check what the
model produced (final hidden states, logits, the signal values that need a number) and, when
something is not finite, record a sentence in `meta["non_finite"]` and warn with
`NonFiniteWarning`; the CLI refuses to print such a run. The sentence names the first weight
that holds a non-finite value, in the order the model's parameters are registered (the
embeddings, then layer by layer), or, when every weight is finite, the first layer whose
output is not (one more forward): work done only when a check failed.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from .errors import NonFiniteWarning


def all_finite(values: torch.Tensor) -> bool:
    """Whether every element of a tensor (hidden states, weights) is a finite number."""
    return bool(torch.isfinite(values).all())


def logits_valid(logits: torch.Tensor) -> bool:
    """Whether logits [..., V] define distributions: no NaN and no +inf. A logit of -inf is a
    probability of 0, which some models give tokens they never emit."""
    return not bool((torch.isnan(logits) | torch.isposinf(logits)).any())


def table_finite(table: pd.DataFrame, rows) -> bool:
    """Whether every float column of `table` holds a finite number on `rows` (a boolean mask):
    the rows where each of them has a value by definition. A computed NaN shows as a missing
    value there (nullable columns store NaN as <NA>)."""
    floats = [name for name, dtype in table.dtypes.items() if pd.api.types.is_float_dtype(dtype)]
    values = table.loc[rows, floats].astype("float64").to_numpy(na_value=np.nan)
    return bool(np.isfinite(values).all())


def arrays_finite(arrays: dict[str, np.ndarray]) -> bool:
    """Whether every float array is finite. The one exemption is the fill of "no prediction": an
    array [..., T] whose first position is NaN throughout (the logit lens of token 0) is checked
    at the other positions. Arrays whose last axis is not the position ([layer, head],
    [layer, position, expert]) have no such all-NaN first slice unless they are damaged
    throughout, which their other entries show."""
    for values in arrays.values():
        if not np.issubdtype(values.dtype, np.floating) or values.size == 0:
            continue
        first_is_fill = values.ndim >= 1 and bool(np.isnan(values[..., 0]).all())
        if not np.isfinite(values[..., 1:] if first_is_fill else values).all():
            return False
    return True


def first_non_finite_weight(model) -> str | None:
    """The name of the first parameter holding a NaN or an infinity, or None."""
    for name, parameter in model.hf.named_parameters():
        if not all_finite(parameter):
            return name
    return None


def first_non_finite_layer(model, ids: list[int]) -> int | None:
    """Run the backbone once more on `ids` with a hook on each layer: the index of the first
    layer whose output holds a NaN or an infinity, or None (only the final norm or the output
    layer went wrong)."""
    found = []

    def watch(index: int):
        def hook(module, args, output):
            hidden = output if isinstance(output, torch.Tensor) else output[0]
            if not found and not all_finite(hidden):
                found.append(index)

        return hook

    hooks = [layer.register_forward_hook(watch(index)) for index, layer in enumerate(model.adapter.layers(model.hf))]
    try:
        with torch.inference_mode():
            model.adapter.backbone(model.hf)(input_ids=torch.tensor([ids], device=model.device), use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    return found[0] if found else None


def flag(meta: dict, model, what: str, ids: list[int]) -> None:
    """Record in `meta["non_finite"]` that `what` (e.g. "the analysis") of the tokens `ids`
    produced non-finite values, with the likely cause (`non_finite_cause`), and warn with
    `NonFiniteWarning`."""
    meta["non_finite"] = f"{what} produced NaN or infinite values: {non_finite_cause(model, ids)}"
    warnings.warn(meta["non_finite"], NonFiniteWarning, stacklevel=3)


def non_finite_cause(model, ids: list[int]) -> str:
    """The likely cause of non-finite values of `model` on the tokens `ids`: the first weight
    that is not finite; when every weight is, the first layer (1 = the first block) whose output
    is not, found by one more forward; when none is, a token of probability 0 or an overflowing
    signal."""
    weight = first_non_finite_weight(model)
    if weight is not None:
        return (f"the model's weights are damaged: {weight} is the first to hold NaN or infinity (a truncated or "
                "corrupted weights file?)")
    if (layer := first_non_finite_layer(model, ids)) is not None:
        dtype = str(model.dtype).replace("torch.", "")
        wider = " (try dtype float32)" if model.dtype in (torch.float16, torch.bfloat16) else ""
        return (f"the weights are finite, but the hidden states overflow from layer {layer + 1} of {model.n_layers} "
                f"on in {dtype}{wider}")
    return ("the weights and hidden states are finite: a token of the text has probability 0 under the model "
            "(a logit of -inf, an infinite surprisal), or a signal's value overflowed")
