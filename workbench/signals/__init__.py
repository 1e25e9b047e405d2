"""Per-token signals: the registry (registry.py) and one module per signal that registers itself
there with its columns (`Column`: label, unit, shown in the terminal). Every module of this folder is
imported here, so a new signal is one new file."""
import pkgutil
from importlib import import_module

from .registry import COLUMNS, SIGNALS, Column, Signal, SignalOutput, register, resolve

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        import_module(f".{_module.name}", __name__)

__all__ = ["COLUMNS", "SIGNALS", "Column", "Signal", "SignalOutput", "register", "resolve"]
