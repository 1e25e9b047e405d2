"""The dashboard's downloads: the table as Parquet or CSV, each view's figure as shown, as
standalone HTML (plotly.js inlined: it opens with no network) and PNG when kaleido and a
Chromium are installed (each chart's camera button makes a PNG in the browser anyway)."""
from __future__ import annotations

import io

from workbench.errors import WorkbenchError

from ..figures import figure_html, figure_png, require_png_export
from .components import download


def table_bytes(table, kind: str) -> io.BytesIO:
    """`table` (a DataFrame) as a file: `kind` "parquet" or "csv"."""
    buffer = io.BytesIO()
    if kind == "parquet":
        table.to_parquet(buffer, index=False)
    else:
        buffer.write(table.to_csv(index=False).encode("utf-8"))
    buffer.seek(0)
    return buffer


def figure_buttons(view, figure, png: bool):
    """The export buttons of `view`: what `figure()` returns (the figure as shown) as HTML,
    and as PNG when `png`."""
    import panel as pn

    def page():
        return io.BytesIO(figure_html(figure()).encode("utf-8"))

    name = view.name.replace(".", "-")
    small = dict(width=70, height=28, margin=(0, 5))
    buttons = [download("HTML", f"{name}.html", page, **small)]
    if png:
        buttons.append(download("PNG", f"{name}.png", lambda: io.BytesIO(figure_png(figure())), **small))
    return pn.Row(*buttons, align="end")


def png_export_available() -> bool:
    """Server-side PNG needs kaleido and a Chromium (the charts' camera button makes PNGs in
    the browser anyway)."""
    try:
        require_png_export()
    except WorkbenchError:
        return False
    return True
