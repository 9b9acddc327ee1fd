"""A tiny HTTP server for a poll-only host: ``remote-guard poll --health-port PORT``.

It serves the same ``/healthz``, ``/readyz`` and ``/metrics`` as the web app, from the poller's
own process (its Graph client, its poll durations), in a daemon thread beside the scheduler.
Nothing else is served; every other path is 404.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from remote_guard.ops import metrics
from remote_guard.ops.health import TokenProbe, readiness
from remote_guard.poll.service import Poller

log = structlog.get_logger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer._Http

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(HTTPStatus.OK, json.dumps({"status": "ok"}), "application/json")
        elif path == "/readyz":
            report = owner.readiness()
            status = HTTPStatus.OK if report.ready else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, json.dumps(report.as_json()), "application/json")
        elif path == "/metrics":
            allowed = metrics.metrics_allowed(
                authorization=self.headers.get("Authorization"),
                client_host=self.client_address[0],
                token=owner.poller.settings.ops.metrics_token,
            )
            if not allowed:
                self._send(
                    HTTPStatus.FORBIDDEN,
                    "metrics need the bearer token of [ops] metrics_token, or a request from "
                    "this machine when none is set\n",
                    "text/plain; charset=utf-8",
                )
                return
            self._send(HTTPStatus.OK, owner.metrics(), metrics.CONTENT_TYPE)
        else:
            self._send(HTTPStatus.NOT_FOUND, "not found\n", "text/plain; charset=utf-8")

    def _send(self, status: HTTPStatus, body: str, content_type: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        # Probes every few seconds would flood the log; failures show in /readyz instead.
        return


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` for ``poller``, on ``host``:``port``."""

    class _Http(ThreadingHTTPServer):
        daemon_threads = True
        owner: HealthServer

    def __init__(self, poller: Poller, *, host: str, port: int, since: datetime) -> None:
        """Bind the port (not serving yet).

        Raises:
            OSError: the address is in use or cannot be bound.
        """
        self.poller = poller
        self.since = since
        self.probe = TokenProbe(poller.graph.tokens, clock=poller.clock)
        self._http = HealthServer._Http((host, port), _Handler)
        self._http.owner = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    def readiness(self) -> Any:
        return readiness(
            self.poller.db,
            self.poller.settings,
            self.probe,
            now=self.poller.clock(),
            since=self.since,
        )

    def metrics(self) -> str:
        return metrics.render(
            self.poller.db, graph={"poller": self.poller.graph.stats}, now=self.poller.clock()
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._http.serve_forever, name="health", daemon=True)
        self._thread.start()
        log.info("ops.health_server_started", port=self.port)

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent; fine if never started)."""
        if self._thread is not None:
            # shutdown() waits for serve_forever to return, so only when it is running.
            self._http.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._http.server_close()
