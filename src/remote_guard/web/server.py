"""Serving an app with uvicorn: in a background thread (the web app in the demo and tests, the
change-notification receiver) or in the foreground."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

START_TIMEOUT_SECONDS = 15.0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port), bound before the app is built
    so that its address (and so the sign-in return address) is known.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Without it Nagle's algorithm and delayed ACKs add ~40 ms to small responses.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host.strip("[]"), port))
    return sock


def _config(app: Starlette, **options: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        # Leave logging to the host process: uvicorn's default dictConfig would disable every
        # logger that exists already.
        log_config=None,
        lifespan="off",
        timeout_graceful_shutdown=1,
        **options,  # type: ignore[arg-type]
    )


class WebServer:
    """``app`` served from ``sock`` in a daemon thread (named ``name``) until :meth:`stop`;
    ``options`` go to uvicorn (e.g. ``ssl_certfile``)."""

    def __init__(
        self, app: Starlette, sock: socket.socket, *, name: str = "web", **options: object
    ) -> None:
        self.app = app
        self.name = name
        self._sock = sock
        self._server = uvicorn.Server(_config(app, **options))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        """Serve in a thread and wait until it accepts connections.

        Raises:
            RuntimeError: already started, or the server did not start in time.
        """
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} server is already started")
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name=self.name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.name} server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Ask the server to finish and wait for its thread (idempotent)."""
        self._server.should_exit = True
        # Browsers keep connections open; waiting for them would add seconds to every stop.
        self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        self._sock.close()

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(app: Starlette, sock: socket.socket) -> None:
    """Serve in the foreground until Ctrl-C. Behind a reverse proxy on this machine that
    terminates TLS, uvicorn trusts its X-Forwarded-* headers (``proxy_headers``)."""
    uvicorn.Server(_config(app, proxy_headers=True)).run(sockets=[sock])
