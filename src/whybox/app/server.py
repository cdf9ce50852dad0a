"""Run an app with uvicorn on a thread: a free port by default, loopback by default.

The socket is bound here, before uvicorn starts, so the port is known (and reserved) when
:meth:`AppServer.start` returns; there is no window in which another process could take
a port picked as "free".
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

__all__ = ["AppServer", "LOOPBACK"]

LOOPBACK = "127.0.0.1"


class AppServer:
    """An ASGI app served by uvicorn on a background thread.

    Parameters
    ----------
    app : ASGI application
        E.g. from :func:`whybox.app.create_app`.
    host : str
        ``"127.0.0.1"`` (default: reachable from this machine only) or ``"0.0.0.0"``.
    port : int, optional
        ``None`` or 0 picks a free port.
    log_level : str
        uvicorn's log level; access logs only at ``"debug"``.

    Examples
    --------
    >>> with AppServer(create_app(workspace)) as server:
    ...     print(server.url)
    """

    def __init__(
        self, app: Any, *, host: str = LOOPBACK, port: int | None = None, log_level: str = "warning"
    ) -> None:
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536
        ):
            raise ValueError(
                f"The 'port' parameter must be an int in [0, 65535] or None. Got {port!r}."
            )
        self.app = app
        self.host = host
        self.requested_port = port or 0
        self.log_level = log_level
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """``http://host:port/`` (``127.0.0.1`` shown for a server bound to all interfaces)."""
        host = LOOPBACK if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, timeout: float = 20.0) -> int:
        """Bind, start serving on a thread, wait until it accepts connections; the port."""
        import uvicorn

        if self.running:
            return int(self.port or 0)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
        except OSError as error:
            sock.close()
            raise OSError(
                f"Cannot listen on {self.host}:{self.requested_port}: {error.strerror or error}. "
                "Pass port=None for a free port."
            ) from error
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level=self.log_level,
            access_log=self.log_level == "debug",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._error = None

        def serve() -> None:
            try:
                self._server.run(sockets=[sock])
            except BaseException as error:  # reported by start() / stop()
                self._error = error

        self._thread = threading.Thread(target=serve, name=f"whybox-app-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The app server did not start: {self._error!r}")
            time.sleep(0.01)
        return int(self.port)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop serving and release the port (a no-op when not running)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._thread = None
        self._socket = None

    def wait(self) -> None:
        """Block until the server stops; Ctrl-C stops it."""
        try:
            while self.running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> AppServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
