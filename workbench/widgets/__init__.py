"""Views of `Run` objects: figure builders and the panel registry, the token strip, the
notebook explorer and the Panel dashboard.

    token_strip(run, "entropy")     # offline HTML strip (run.strip)
    Explorer(run)                   # linked views in a notebook (run.show)
    explore(model)                  # text box + Analyze + linked views, in a notebook
    serve(model)                    # the dashboard behind `workbench serve`

`Explorer`, `explore` and `serve` are imported lazily, so `import workbench.widgets` does
not import ipywidgets, anywidget or Panel.
"""
from .token_strip import TokenStrip, token_strip

__all__ = ["Explorer", "TokenStrip", "explore", "serve", "token_strip"]

_LAZY = {"Explorer": ".explorer", "explore": ".explorer", "serve": ".dashboard"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
