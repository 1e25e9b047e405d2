"""A minimal Panel page: type a text, analyze it, see its token strip.

`serve` gives each browser session its own page (`make_app` is called per session); the
one model is shared read-only and every call into it is made under a single lock. Bokeh
and Panel JS/CSS are served by this server (resources mode "server"), never from a CDN.
"""
from __future__ import annotations

import asyncio
import html
import logging
import threading
import warnings

from workbench.errors import WorkbenchError

from .token_strip import token_strip

DEFAULT_TEXT = "The capital of France is Paris."
SIGNALS = ("surprisal", "entropy", "varentropy", "rank", "margin")
LOCAL_HOSTS = ("127.0.0.1", "localhost")
log = logging.getLogger(__name__)


def make_app(model, lock: threading.Lock):
    """One session's page. `model.analyze` is only ever called while holding `lock`."""
    import panel as pn

    text = pn.widgets.TextAreaInput(name="Text", value=DEFAULT_TEXT, rows=5, sizing_mode="stretch_width")
    signal = pn.widgets.Select(name="Signal", options=list(SIGNALS), value=SIGNALS[0], width=160)
    button = pn.widgets.Button(name="Analyze", button_type="primary", width=120, align="end")
    status = pn.pane.HTML("", sizing_mode="stretch_width")
    strip = pn.pane.HTML("", sizing_mode="stretch_width")
    last_run = {}  # this session's latest Run, re-rendered when the signal changes

    def say(message: str, *, error: bool = False) -> None:
        style = f"color:{'#b00020' if error else '#555'};white-space:pre-wrap"
        status.object = f'<div class="tw-status" style="{style}">{html.escape(message)}</div>'

    def render() -> None:
        try:
            strip.object = token_strip(last_run["run"], signal.value).html
        except WorkbenchError as error:
            say(str(error), error=True)

    def analyze(value: str):
        with lock:
            return model.analyze(value)

    async def on_analyze(_event) -> None:
        button.disabled = True
        say("Analyzing…")
        try:
            last_run["run"] = await asyncio.to_thread(analyze, text.value)
        except WorkbenchError as error:
            say(f"Error: {error}", error=True)
        except Exception as error:  # a bug: keep the page usable, log the traceback server-side
            log.exception("analysis failed")
            say(f"Unexpected error ({type(error).__name__}: {error}); details are in the server log.", error=True)
        else:
            say(f"{len(last_run['run'])} tokens analyzed with {model.name}. Hover a token for details.")
            render()
        finally:
            button.disabled = False

    def on_signal(_event) -> None:
        if "run" in last_run:
            render()

    button.on_click(on_analyze)
    signal.param.watch(on_signal, "value")
    return pn.Column(
        pn.pane.HTML(f"<h1>Token Workbench</h1><p>Model: <code>{html.escape(model.name)}</code></p>"),
        text,
        pn.Row(signal, button),
        status,
        strip,
        sizing_mode="stretch_width",
        margin=(10, 20),
    )


def serve(model, *, host: str = "127.0.0.1", port: int = 5006, show: bool = False) -> None:
    """Serve the page at http://host:port/ until interrupted (blocks).

    Binds 127.0.0.1 by default; any other host exposes the model to the network, so a
    warning is emitted. Assets are served locally, so the page works with no network.
    """
    import panel as pn
    from bokeh.settings import settings

    settings.resources.set_value("server")  # Bokeh/Panel JS and CSS from this server, not a CDN

    if host not in LOCAL_HOSTS:
        warnings.warn(f"serving on {host}: the dashboard is reachable from other machines; "
                      "use host='127.0.0.1' to keep it local", stacklevel=2)
    lock = threading.Lock()
    origins = sorted({f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"})
    print(f"Token Workbench: serving {model.name} at http://{host}:{port}/", flush=True)
    pn.serve(lambda: make_app(model, lock), address=host, port=port, show=show,
             websocket_origin=origins, title="Token Workbench", verbose=False)
