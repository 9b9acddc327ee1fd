"""Graph-like throttling: the published service limits, answered with 429 as Graph answers.

Microsoft publishes per-service limits (``concepts/throttling-limits.md``, summarised in the
project's Graph facts, section 2). With :attr:`Throttling.enabled` the fake tenant enforces
them on every request and on every item of a ``$batch`` (an item over a limit gets its own 429
with its own ``Retry-After``, the others succeed):

=========================  ==========================================  ===============================
Service                    Limit                                       Scope
=========================  ==========================================  ===============================
Outlook (calendar, mail)   4 concurrent requests                       app + mailbox (or app, see
                                                                       :attr:`outlook_concurrency_scope`)
Outlook                    10,000 requests per 10 minutes              app + mailbox
Call records               1,500 requests per 20 s                     app + tenant
Call records               10 per 20 s (first page), 50 per 5 min       app + call record
                           (later pages)
Teams                      GET chat or channel message: 20 rps;        app + tenant
                           GET /teams/{id}: 30 rps; GET channels:
                           60 rps; other GET and any other call: 30 rps
Teams                      4 rps on any one team or channel            app + team
Identity (users, groups)   8,000 resource units per 10 s (over 500     app + tenant
                           users; 5,000 / 3,500 for smaller tenants);
                           GET users costs 2, members 3,
                           transitiveMembers 5, others 1; $select -1,
                           $expand +1, $top under 20 -1 (at least 1)
Any                        2,000 requests per second                   app
=========================  ==========================================  ===============================

Online meetings, attendance reports, recordings and transcripts have no published rate limit
and are not throttled here. Rate limits are sliding windows over real (monotonic) time, not the
tenant's clock; a throttled request does not count against them.

Outlook's concurrency is the number of requests in flight: counted by :class:`ThrottleMiddleware`
from arrival to answer (the fake's latency included). An Outlook item of a ``$batch`` is refused
when its mailbox already has 4 requests in flight elsewhere; Outlook itself runs a batch's items
at most 4 at a time, so they never exceed the limit among themselves.

Latency of a ``$batch`` (with ``faults.latency_ms`` above 0): the envelope costs one round trip
like any request, and its items then run :attr:`Throttling.batch_parallelism` (4) at a time, each
wave costing :attr:`Throttling.batch_item_latency_ms` (by default the same as one request): a
batch of 20 items costs 1 + 5 latencies, against 20 sent one by one.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from remote_guard.fakegraph._errors import GraphError, graph_error_body

if TYPE_CHECKING:
    from remote_guard.fakegraph.tenant import TenantState

# Retry-After for a request refused for concurrency: one of the requests in flight will have
# finished by then (Exchange answers such refusals with a short wait).
CONCURRENCY_RETRY_AFTER_SECONDS = 1.0
OUTLOOK_CONCURRENCY = 4


@dataclass(frozen=True)
class Limit:
    """At most ``requests`` (cost units) in any ``window_seconds`` for one scope."""

    name: str
    requests: float
    window_seconds: float


GLOBAL = Limit("global: 2,000 requests per second per app", 2000, 1)
OUTLOOK_MAILBOX = Limit("outlook: 10,000 requests per 10 minutes per app and mailbox", 10_000, 600)
CALL_RECORDS = Limit("callRecords: 1,500 requests per 20 s per app and tenant", 1500, 20)
CALL_RECORD_FIRST_PAGE = Limit("callRecords: 10 first-page requests per 20 s per record", 10, 20)
CALL_RECORD_NEXT_PAGES = Limit("callRecords: 50 later-page requests per 5 min per record", 50, 300)
TEAMS_MESSAGES = Limit("teams: GET chat or channel message, 20 rps per app and tenant", 20, 1)
TEAMS_TEAM = Limit("teams: GET /teams/{id}, 30 rps per app and tenant", 30, 1)
TEAMS_CHANNELS = Limit("teams: GET /teams/{id}/channels, 60 rps per app and tenant", 60, 1)
TEAMS_OTHER = Limit("teams: other calls, 30 rps per app and tenant", 30, 1)
TEAMS_PER_TEAM = Limit("teams: 4 rps per app on one team or channel", 4, 1)
OUTLOOK_CONCURRENT = "outlook: 4 concurrent requests"


def identity_limit(tenant_users: int) -> Limit:
    """The identity resource-unit budget for a tenant of this many users (S, M or L)."""
    if tenant_users > 500:
        return Limit("identity: 8,000 resource units per 10 s per app and tenant", 8000, 10)
    if tenant_users >= 50:
        return Limit("identity: 5,000 resource units per 10 s per app and tenant", 5000, 10)
    return Limit("identity: 3,500 resource units per 10 s per app and tenant", 3500, 10)


_OUTLOOK_SEGMENTS = frozenset(
    {"calendarview", "events", "calendar", "calendars", "sendmail", "messages", "mailfolders"}
)
_IDENTITY_ROOTS = frozenset({"users", "groups", "directoryobjects"})


def identity_cost(method: str, segments: list[str], params: Mapping[str, str]) -> int:
    """Resource units of an identity request, as Microsoft publishes them."""
    lowered = [segment.lower() for segment in segments]
    cost = 1
    if method == "GET" and lowered == ["users"]:
        cost = 2
    elif method == "GET" and len(lowered) >= 3 and lowered[0] == "groups":
        cost = {"members": 3, "transitivemembers": 5}.get(lowered[2], 1)
    if "$select" in params:
        cost -= 1
    if "$expand" in params:
        cost += 1
    top = params.get("$top", "")
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(1, cost)


def rate_limits(
    method: str, segments: list[str], params: Mapping[str, str], *, tenant_users: int
) -> list[tuple[Limit, str, float]]:
    """The rate limits a request counts against: (limit, scope, cost) for each."""
    method = method.upper()
    lowered = [segment.lower() for segment in segments]
    found: list[tuple[Limit, str, float]] = [(GLOBAL, "app", 1)]
    if not lowered:
        return found
    root = lowered[0]
    if root == "users" and len(lowered) >= 3 and lowered[2] in _OUTLOOK_SEGMENTS:
        found.append((OUTLOOK_MAILBOX, lowered[1], 1))
    elif root == "users" and len(lowered) >= 3 and lowered[2] == "chats":
        found.append((TEAMS_OTHER, "tenant", 1))
    elif root in _IDENTITY_ROOTS and not (root == "users" and len(lowered) >= 3):
        cost = identity_cost(method, segments, params)
        found.append((identity_limit(tenant_users), "tenant", cost))
    elif root == "communications" and len(lowered) >= 2 and lowered[1] == "callrecords":
        found.append((CALL_RECORDS, "tenant", 1))
        if len(lowered) >= 3:
            later = "$skiptoken" in params
            limit = CALL_RECORD_NEXT_PAGES if later else CALL_RECORD_FIRST_PAGE
            found.append((limit, lowered[2], 1))
    elif root == "chats":
        reading_messages = method == "GET" and len(lowered) >= 3 and lowered[2] == "messages"
        found.append((TEAMS_MESSAGES if reading_messages else TEAMS_OTHER, "tenant", 1))
    elif root == "teams":
        if len(lowered) >= 2:
            found.append((TEAMS_PER_TEAM, lowered[1], 1))
        if method == "GET" and len(lowered) >= 5 and lowered[4] == "messages":
            found.append((TEAMS_MESSAGES, "tenant", 1))
        elif method == "GET" and len(lowered) == 3 and lowered[2] == "channels":
            found.append((TEAMS_CHANNELS, "tenant", 1))
        elif method == "GET" and len(lowered) == 2:
            found.append((TEAMS_TEAM, "tenant", 1))
        else:
            found.append((TEAMS_OTHER, "tenant", 1))
    return found


def outlook_mailbox(segments: list[str]) -> str | None:
    """The mailbox an Outlook request reads or writes, or None if it is not Outlook's."""
    is_outlook = len(segments) >= 3 and segments[0].lower() == "users"
    if is_outlook and segments[2].lower() in _OUTLOOK_SEGMENTS:
        return segments[1].lower()
    return None


class _Window:
    """A sliding window of (time, cost) entries and their running total."""

    def __init__(self) -> None:
        self.entries: deque[tuple[float, float]] = deque()
        self.total = 0.0

    def retry_after(self, limit: Limit, cost: float, now: float) -> float | None:
        """Seconds until ``cost`` more fits, or None if it fits now (then it is counted)."""
        horizon = now - limit.window_seconds
        while self.entries and self.entries[0][0] <= horizon:
            self.total -= self.entries.popleft()[1]
        if self.total + cost <= limit.requests:
            return None
        freed = 0.0
        for at, spent in self.entries:
            freed += spent
            if self.total - freed + cost <= limit.requests:
                return max(0.001, at + limit.window_seconds - now)
        return limit.window_seconds

    def add(self, cost: float, now: float) -> None:
        self.entries.append((now, cost))
        self.total += cost


class Throttling:
    """The throttling state of one fake tenant: rate windows, requests in flight, 429s sent.

    Off until :attr:`enabled` is set (tests that do not ask for it are never throttled).
    :attr:`counts` says how many 429s were answered, by limit.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = False
        self.tenant_users = 0
        self.outlook_concurrency = OUTLOOK_CONCURRENCY
        # "mailbox": 4 in flight per app and mailbox (Exchange's long-standing behaviour);
        # "app": 4 in flight per app across all mailboxes (the 2024 wording of the docs).
        self.outlook_concurrency_scope: Literal["mailbox", "app"] = "mailbox"
        self.batch_parallelism = 4
        self.batch_item_latency_ms: float | None = None  # None: faults.latency_ms
        self.counts: Counter[str] = Counter()
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()

    # --- rates ----------------------------------------------------------------------------------

    def check(
        self, method: str, segments: list[str], params: Mapping[str, str], *, in_batch: bool
    ) -> GraphError | None:
        """Count one request (or batch item) against the limits it falls under; the 429 to
        answer instead if it is over one (it is then not counted)."""
        if not self.enabled:
            return None
        now = self._clock()
        with self._lock:
            if in_batch:
                refused = self._batch_item_concurrency(segments)
                if refused is not None:
                    return refused
            limits = rate_limits(method, segments, params, tenant_users=self.tenant_users)
            windows = [
                (limit, cost, self._windows.setdefault((limit.name, scope), _Window()))
                for limit, scope, cost in limits
            ]
            waits = [
                (wait, limit)
                for limit, cost, window in windows
                if (wait := window.retry_after(limit, cost, now)) is not None
            ]
            if waits:
                wait, limit = max(waits, key=lambda item: item[0])
                self.counts[limit.name] += 1
                return _too_many_requests(limit, wait)
            for _limit, cost, window in windows:
                window.add(cost, now)
        return None

    def _batch_item_concurrency(self, segments: list[str]) -> GraphError | None:
        scope = self._concurrency_scope(segments)
        if scope is None or self._in_flight[scope] < self.outlook_concurrency:
            return None
        self.counts[OUTLOOK_CONCURRENT] += 1
        return _over_concurrency()

    # --- concurrency ----------------------------------------------------------------------------

    def _concurrency_scope(self, segments: list[str]) -> str | None:
        mailbox = outlook_mailbox(segments)
        if mailbox is None:
            return None
        return "outlook" if self.outlook_concurrency_scope == "app" else f"outlook:{mailbox}"

    def enter(self, segments: list[str]) -> tuple[str | None, bool]:
        """Take a place for a request arriving now: (the scope held, or None; whether it was
        refused for concurrency, in which case nothing is held)."""
        if not self.enabled:
            return None, False
        scope = self._concurrency_scope(segments)
        if scope is None:
            return None, False
        with self._lock:
            if self._in_flight[scope] >= self.outlook_concurrency:
                self.counts[OUTLOOK_CONCURRENT] += 1
                return None, True
            self._in_flight[scope] += 1
        return scope, False

    def hold(self, scopes: Counter[str]) -> None:
        """Hold places for a batch's items while they run (no refusal: they were checked)."""
        with self._lock:
            self._in_flight.update(scopes)

    def leave(self, scopes: Counter[str]) -> None:
        with self._lock:
            self._in_flight.subtract(scopes)
            for scope in [s for s, count in self._in_flight.items() if count <= 0]:
                del self._in_flight[scope]

    def in_flight(self, scope: str) -> int:
        with self._lock:
            return self._in_flight[scope]

    def batch_scopes(self, body: bytes) -> tuple[int, Counter[str]]:
        """How many items a ``$batch`` body holds, and the places its Outlook items take while
        they run (at most :attr:`batch_parallelism` per scope)."""
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return 0, Counter()
        items = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            return 0, Counter()
        scopes: Counter[str] = Counter()
        for item in items:
            if not isinstance(item, dict):
                continue
            path = urlsplit(str(item.get("url") or "")).path
            segments = [unquote(part) for part in path.strip("/").split("/") if part]
            scope = self._concurrency_scope(segments)
            if scope is not None:
                scopes[scope] += 1
        held = Counter(
            {scope: min(count, self.batch_parallelism) for scope, count in scopes.items()}
        )
        return len(items), held


def _too_many_requests(limit: Limit, wait: float) -> GraphError:
    headers = {"Retry-After": _seconds(wait)}
    if limit.name.startswith("identity"):
        headers["x-ms-throttle-scope"] = "Tenant_Application/ReadWrite"
        headers["x-ms-throttle-information"] = "ResourceUnitLimitExceeded"
    return GraphError(429, "TooManyRequests", "Please retry again later.", headers=headers)


def _over_concurrency() -> GraphError:
    return GraphError(
        429,
        "ApplicationThrottled",
        "Application is over its MailboxConcurrency limit.",
        headers={"Retry-After": _seconds(CONCURRENCY_RETRY_AFTER_SECONDS)},
    )


def _seconds(value: float) -> str:
    """Retry-After in seconds, rounded up to the millisecond (Graph writes e.g. ``2.128``)."""
    rounded = math.ceil(value * 1000) / 1000
    return str(int(rounded)) if rounded.is_integer() else f"{rounded:.3f}".rstrip("0")


class ThrottleMiddleware:
    """ASGI middleware for Graph requests: Outlook's concurrency limit, and the time a
    ``$batch``'s items take (with latency on), holding their places meanwhile."""

    def __init__(self, app: ASGIApp, state: TenantState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.lower().startswith("/v1.0/"):
            await self.app(scope, receive, send)
            return
        throttling: Throttling = self.state.throttling
        segments = [unquote(part) for part in path[len("/v1.0/") :].strip("/").split("/") if part]
        held, refused = throttling.enter(segments)
        if refused:
            await self._refuse(send)
            return
        try:
            if [s.lower() for s in segments] == ["$batch"] and scope.get("method") == "POST":
                await self._batch(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            if held is not None:
                throttling.leave(Counter({held: 1}))

    async def _refuse(self, send: Send) -> None:
        # A refusal still costs the client a round trip.
        latency = self.state.faults.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000)
        error = _over_concurrency()
        body = graph_error_body(
            error.code,
            error.message,
            now=datetime.now(UTC),
            request_id=str(uuid.uuid4()),
            client_request_id=str(uuid.uuid4()),
        )
        headers = [(b"content-type", b"application/json")]
        headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
        encoded = json.dumps(body).encode("utf-8")
        headers.append((b"content-length", str(len(encoded)).encode()))
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": encoded})

    async def _batch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a batch, then make its items take their time before answering.

        Without latency the batch passes straight through. With it, the answer is held back
        while its items run; if serving fails part-way (a chaos fault resetting the
        connection), what was already answered is sent before the failure goes on.
        """
        throttling: Throttling = self.state.throttling
        latency = self.state.faults.latency_ms
        item_latency = (
            throttling.batch_item_latency_ms
            if throttling.batch_item_latency_ms is not None
            else latency
        )
        if item_latency <= 0:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def reading() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(bytes(message.get("body", b"")))
            return message

        held_back: list[Message] = []

        async def keeping(message: Message) -> None:
            held_back.append(message)

        try:
            await self.app(scope, reading, keeping)
        except Exception:
            for message in held_back:
                await send(message)
            raise
        started = next((m for m in held_back if m["type"] == "http.response.start"), None)
        if started is not None and int(started["status"]) == 200:
            count, held = throttling.batch_scopes(b"".join(chunks))
            waves = math.ceil(count / max(1, throttling.batch_parallelism))
            if throttling.enabled:
                throttling.hold(held)
            try:
                await asyncio.sleep(waves * item_latency / 1000)
            finally:
                if throttling.enabled:
                    throttling.leave(held)
        for message in held_back:
            await send(message)
