"""whybox's local web app (Captum Insights' successor): browse examples, explain them.

:func:`create_app` builds a FastAPI application over one or more :class:`Workspace`
objects (models, class names, features, a dataset read lazily); :class:`AppServer` runs
it with uvicorn on a thread, on 127.0.0.1 and a free port by default; :func:`serve` does
both; :func:`serve_demo` serves built-in models (what ``whybox serve --demo`` runs).
Attributions are computed on demand by a worker thread through ``whybox.explain``.

The Captum-compatible front door is :mod:`whybox.insights` (``AttributionVisualizer``).
The server pieces import FastAPI and uvicorn (the ``app`` extra) only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .catalog import Limits, RequestError
from .workspace import DatasetError, Feature, Workspace

if TYPE_CHECKING:  # pragma: no cover
    from .api import create_app
    from .demo import demo_workspaces, serve_demo
    from .server import AppServer

__all__ = [
    "AppServer",
    "DatasetError",
    "Feature",
    "Limits",
    "RequestError",
    "Workspace",
    "create_app",
    "demo_workspaces",
    "serve",
    "serve_demo",
]

_LAZY = {
    "create_app": ".api",
    "AppServer": ".server",
    "serve_demo": ".demo",
    "demo_workspaces": ".demo",
}


def __getattr__(name: str) -> Any:
    # FastAPI / uvicorn load on first use: building a Workspace (or an
    # AttributionVisualizer) needs neither
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name], __name__)
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"whybox.app.{name} needs FastAPI and uvicorn: pip install 'whybox[app]' ({error})"
            ) from error
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def serve(
    workspaces: Any,
    *,
    port: int | None = None,
    bind_all: bool = False,
    blocking: bool = False,
    limits: Limits | None = None,
    debug: bool = False,
    quiet: bool = False,
) -> Any:
    """Serve ``workspaces`` (a :class:`Workspace` or ``{id: Workspace}``).

    Parameters
    ----------
    workspaces : Workspace or mapping of str to Workspace
    port : int, optional
        ``None`` picks a free port.
    bind_all : bool
        Listen on all interfaces instead of 127.0.0.1 only.
    blocking : bool
        Serve until Ctrl-C, or return at once with the server running.
    limits : Limits, optional
        Bounds on the work per request.
    debug : bool
        uvicorn debug logging.
    quiet : bool
        Do not print the URL.

    Returns
    -------
    AppServer
        The server (stopped already when ``blocking``).
    """
    from .api import create_app
    from .server import LOOPBACK, AppServer

    app = create_app(
        workspaces,
        limits=limits,
        allowed_hosts=None if bind_all else [LOOPBACK, "localhost"],
    )
    server = AppServer(
        app,
        host="0.0.0.0" if bind_all else LOOPBACK,
        port=port,
        log_level="debug" if debug else "warning",
    )
    server.start()
    if not quiet:
        print(f"whybox Insights: {server.url}", flush=True)
    if blocking:
        server.wait()
    return server
