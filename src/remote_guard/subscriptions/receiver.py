"""The endpoint Microsoft Graph posts change notifications to.

It answers Graph's validation handshake (a POST with ``?validationToken=...``: 200, text/plain,
the decoded token, at once), checks each notification's ``clientState`` against the secret in
constant time (a mismatch is ignored, logged and counted, never processed), hands what passed to
the worker's queue and answers ``202 Accepted`` straight away: Graph wants an answer within
3 s and throttles endpoints that are slow, so nothing is read or written here. A body that is
not a notification collection gets ``400`` (and is logged); a full queue gets ``503`` so Graph
delivers again later.

The same routes serve change notifications (``{path}``) and lifecycle notifications
(``{path}/lifecycle``); an item is treated by what it says (``lifecycleEvent``), not by where it
arrived. :func:`receiver_routes` gives plain Starlette routes, so the web app can carry them
without its sign-in and CSRF checks (Graph signs in to nothing); :func:`receiver_app` serves
them alone, next to the poller.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from remote_guard.clock import Clock

log = structlog.get_logger(__name__)

# Graph batches notifications; a body larger than this is not one Graph would send.
MAX_BODY_BYTES = 1_000_000
MAX_VALIDATION_TOKEN = 1024
# How many items one body may carry (Graph sends far fewer at once).
MAX_ITEMS = 1000


@dataclass(frozen=True)
class Received:
    """One notification item as it arrived. ``trusted`` is False when its clientState did not
    match: such an item is only recorded (audit), never acted on."""

    kind: Literal["change", "lifecycle"]
    item: dict[str, Any]
    received_at: datetime
    trusted: bool


@dataclass
class ReceiverStats:
    """What the receiver has seen since it started (for logs, tests and operations)."""

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self.counts[name]


Sink = Callable[[Received], bool]  # False: no room; the item was not taken


class Receiver:
    """Checks notifications and passes them on; ``sink`` is the worker's queue."""

    def __init__(self, *, client_state: str, sink: Sink, clock: Clock) -> None:
        self._secret = client_state.encode("utf-8")
        self._sink = sink
        self._clock = clock
        self.stats = ReceiverStats()

    def trusted(self, item: dict[str, Any]) -> bool:
        """Whether the item carries our clientState (compared in constant time)."""
        given = item.get("clientState")
        if not isinstance(given, str):
            return False
        return hmac.compare_digest(given.encode("utf-8"), self._secret)

    def accept(self, body: bytes) -> int:
        """Take one POSTed body; return the HTTP status to answer (202, 400 or 503)."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self.stats.add("malformed")
            log.warning("notifications.malformed_body", reason="not JSON", size=len(body))
            return 400
        items = data.get("value") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) > MAX_ITEMS:
            self.stats.add("malformed")
            log.warning("notifications.malformed_body", reason="no value list")
            return 400
        now = self._clock()
        full = False
        for raw in items:
            if not isinstance(raw, dict) or not isinstance(raw.get("subscriptionId"), str):
                self.stats.add("malformed_items")
                log.warning("notifications.malformed_item")
                continue
            kind: Literal["change", "lifecycle"] = (
                "lifecycle" if isinstance(raw.get("lifecycleEvent"), str) else "change"
            )
            trusted = self.trusted(raw)
            self.stats.add("received")
            if not trusted:
                self.stats.add("client_state_mismatch")
                # Never the clientState itself: it may be a near-miss of the secret.
                log.warning(
                    "notifications.client_state_mismatch",
                    subscription_id=str(raw.get("subscriptionId"))[:64],
                    kind=kind,
                )
            else:
                self.stats.add("accepted")
            if not self._sink(Received(kind=kind, item=raw, received_at=now, trusted=trusted)):
                self.stats.add("queue_full")
                # Only a genuine notification is worth Graph sending again.
                full = full or trusted
        if full:
            log.warning("notifications.queue_full")
            return 503
        return 202

    # --- HTTP -----------------------------------------------------------------------------------

    async def endpoint(self, request: Request) -> Response:
        """Graph's POST: the validation handshake, or a collection of notifications."""
        token = request.query_params.get("validationToken")
        if token is not None:
            # Starlette has already URL-decoded the query; Graph wants the token back as is.
            self.stats.add("validations")
            if len(token) > MAX_VALIDATION_TOKEN:
                return Response(status_code=400)
            return PlainTextResponse(token, status_code=200)
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            self.stats.add("malformed")
            return Response(status_code=413)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                self.stats.add("malformed")
                return Response(status_code=413)
        return Response(status_code=self.accept(bytes(body)))


def receiver_routes(receiver: Receiver, path: str) -> list[Route]:
    """The receiver's routes at ``path`` (change notifications) and ``path``/lifecycle."""
    base = "/" + path.strip("/")
    return [
        Route(base, receiver.endpoint, methods=["POST"], name="graph_notifications"),
        Route(
            f"{base}/lifecycle",
            receiver.endpoint,
            methods=["POST"],
            name="graph_lifecycle_notifications",
        ),
    ]


def receiver_app(receiver: Receiver, path: str) -> Starlette:
    """The receiver on its own (next to the poller)."""
    return Starlette(routes=receiver_routes(receiver, path))
