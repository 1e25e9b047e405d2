"""The signal registry: each signal is a small function registered with what it needs
from the forward pass and what it provides (LM-Polygraph's calculators, Inseq's
registered functions). New signals are added by registering a function; the columns it
provides are registered with it (`Column`: display label, unit, whether the terminal table shows it), and whatever shows a
column reads them here (`COLUMNS`): the CLI's help and terminal table, the charts' axis units.
(A saved run's list columns are found from the values read back: `results.run`.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import SignalUnavailable, WorkbenchError

if TYPE_CHECKING:
    from ..forward.capture import Capture
    from ..model.handle import Model

# What a signal can ask the forward pass for.
NEEDS = {
    "final_hidden": "final-normed hidden states [T, d] (logits are made from them chunk by chunk)",
    "layer_hidden": "every layer's residual stream [L+1, T, d] (embeddings first)",
    "routing": "each MoE layer's router call: logits [T, E], top-k expert ids and weights, shared-expert weight",
    "attention": "each attention layer's entropy, sink mass and received attention [H, T], streamed from Q and K "
                 "(no T x T kept; exact rows [T, T] for short inputs)",
    "keyformer": "each attention layer's Keyformer scores [H, T] (received Gumbel-softmax attention), streamed from Q and K",
}


@dataclass(frozen=True)
class Column:
    """A table column a signal provides. A plain name registers `Column(name)`."""

    name: str
    label: str = ""  # a short header (the terminal table's cells are 11 wide); "" : the name
    unit: str = ""  # of its values ("nats", ...); "": none (a count, a probability, a score)
    terminal: bool = False  # shown in the CLI's terminal table

    @property
    def header(self) -> str:
        return self.label or self.name


COLUMNS: dict[str, Column] = {}  # every registered signal's columns, by name


@dataclass
class SignalOutput:
    columns: dict[str, object] = field(default_factory=dict)  # name -> [T] values (pandas-ready)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Signal:
    name: str
    description: str
    needs: tuple[str, ...]
    columns: tuple[str, ...]  # names; their `Column`s are in `COLUMNS`
    arrays: tuple[str, ...]
    compute: Callable[["Capture", dict], SignalOutput]
    unavailable: Callable[["Model"], str | None]  # why not, for this model; None when available
    memory_bytes: Callable[["Model", int], int]  # transient memory for an input of n tokens, for estimates


SIGNALS: dict[str, Signal] = {}


def register(name: str, *, description: str, needs: tuple[str, ...], columns=(), arrays=(),
             unavailable=None, memory_bytes=None):
    """Decorator: `@register("uncertainty", needs=("final_hidden",), ...)` on
    `compute(capture, params) -> SignalOutput`. `columns`: `Column`s or plain names."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"signal {name}: unknown needs {unknown}; known: {list(NEEDS)}")
    specs = [column if isinstance(column, Column) else Column(column) for column in columns]

    def decorate(compute):
        COLUMNS.update((column.name, column) for column in specs)
        SIGNALS[name] = Signal(
            name, description, tuple(needs), tuple(column.name for column in specs), tuple(arrays), compute,
            unavailable or (lambda model: None), memory_bytes or (lambda model, n_tokens: 0),
        )
        return compute

    return decorate


def signals_help() -> str:
    """The registered signals, one line each: name and description (the CLI's help)."""
    return "; ".join(f"{name}: {signal.description}" for name, signal in SIGNALS.items())


def resolve(names, model: "Model") -> list[Signal]:
    """Signals by name, in order, without repeats; clear errors for unknown names and for
    signals this model cannot provide."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise WorkbenchError(f"no signals requested; available: {', '.join(SIGNALS)}")
    chosen = []
    for name in names:
        if name not in SIGNALS:
            raise WorkbenchError(f"unknown signal '{name}'; available: {', '.join(SIGNALS)}")
        reason = SIGNALS[name].unavailable(model)
        if reason:
            raise SignalUnavailable(f"{name}: {reason}")
        if SIGNALS[name] not in chosen:
            chosen.append(SIGNALS[name])
    return chosen
