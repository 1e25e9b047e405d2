"""Per-token signals, each a registered function (see registry.py)."""
from . import attention, logit_lens, routing, uncertainty  # noqa: F401  (registration)
from .registry import SIGNALS, Signal, SignalOutput, register, resolve

__all__ = ["SIGNALS", "Signal", "SignalOutput", "register", "resolve"]
