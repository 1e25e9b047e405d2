"""`workbench serve`: one `Dashboard` per browser session, served by Panel on this machine.

Binds 127.0.0.1 by default. A page closed or reloaded ends its session `UNUSED_SESSION_MS`
later, which cancels its work. Bokeh, Panel and plotly.js are served by this server, never
from a CDN: the page works with no network.
"""
from __future__ import annotations

import threading
import warnings

from .layout import Dashboard

LOCAL_HOSTS = ("127.0.0.1", "localhost")
UNUSED_SESSION_MS = 10_000  # a page gone this long ends its session (and its work); Bokeh's default: 15 s,
CHECK_SESSIONS_MS = 2_000  # checked every 2 s (Bokeh's: 17 s)


def make_app(model, lock: threading.Lock, reference=None, draft=None, corpus=None):
    """One session's page; its work is cancelled when the session ends (its page gone). With a
    `corpus`, the page opens it once loaded."""
    import panel as pn

    dashboard = Dashboard(model, lock, reference, draft, corpus)
    pn.state.on_session_destroyed(lambda _context: dashboard.worker.cancel.set())
    if corpus is not None:
        pn.state.onload(dashboard.go)
    return dashboard.layout


def serve(model, *, reference=None, draft=None, corpus=None, host: str = "127.0.0.1", port: int = 5006,
          show: bool = False) -> None:
    """Serve the dashboard at http://host:port/ until interrupted (blocks). `reference`: a second
    model with the same vocabulary, offered by the compare mode (which also compares one model
    under two contexts without it). `draft`: a model sharing the vocabulary (and head size),
    offered by the generate mode for speculative sampling with its trace. `corpus`: a folder
    written by `workbench corpus`, which each page opens in its corpus mode once loaded.

    Binds 127.0.0.1 by default; any other host exposes the model to the network, so a
    warning is emitted. Assets are served locally, so the page works with no network.
    """
    import panel as pn
    from bokeh.settings import settings

    settings.resources.set_value("server")  # Bokeh/Panel/plotly JS and CSS from this server, not a CDN
    pn.extension("plotly")

    if host not in LOCAL_HOSTS:
        warnings.warn(f"serving on {host}: the dashboard is reachable from other machines; "
                      "use host='127.0.0.1' to keep it local", stacklevel=2)
    lock = threading.Lock()
    port = port or _free_port(host)  # 0: a free port, named here and in the allowed origins
    origins = sorted({f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"})
    beside = {"compare mode's reference": reference, "generate mode's draft": draft}
    said = "; ".join(f"{role}: {other.name}" for role, other in beside.items() if other is not None)
    opens = "" if corpus is None else f", corpus mode on {corpus}"
    print(f"Token Workbench: serving {model.name}{f' ({said})' if said else ''}{opens} at http://{host}:{port}/",
          flush=True)
    _quiet_closed_pages()
    pn.serve(lambda: make_app(model, lock, reference, draft, corpus), address=host, port=port, show=show,
             websocket_origin=origins, title="Token Workbench", verbose=False,
             unused_session_lifetime_milliseconds=UNUSED_SESSION_MS,
             check_unused_sessions_milliseconds=CHECK_SESSIONS_MS)


def _free_port(host: str) -> int:
    """A port nothing listens on at `host`, as the system picks one for port 0."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _quiet_closed_pages() -> None:
    """A page closed while the server writes to it leaves Tornado's write future holding a
    WebSocketClosedError that nobody retrieves, and asyncio prints it as a traceback ("Task
    exception was never retrieved"); Bokeh has already logged the closed connection. The
    server's event loop drops exactly those and reports every other exception as before."""
    import asyncio

    from tornado.iostream import StreamClosedError
    from tornado.websocket import WebSocketClosedError

    def handle(loop, context):
        if not isinstance(context.get("exception"), (WebSocketClosedError, StreamClosedError)):
            loop.default_exception_handler(context)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(handle)
