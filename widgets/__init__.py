"""Views of `Run` objects: the token strip (notebooks, exported HTML) and the Panel app.

`serve` is imported lazily so that `import workbench.widgets` does not import Panel.
"""
from .token_strip import TokenStrip, token_strip

__all__ = ["TokenStrip", "serve", "token_strip"]


def __getattr__(name: str):
    if name == "serve":
        from .app import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
