"""Fault injection: latency, a share of throttled or failing requests, and forced responses.

Everything here is mutable at run time (``state.faults``, ``state.inject``, ``state.chaos``) so
a test can turn throttling on for one phase and off for the next. Random faults use a seeded
RNG, so a run is repeatable when requests arrive in the same order.

:class:`Chaos` (``state.chaos``, served by :class:`ChaosMiddleware`) adds what a real network
and a real tenant do to a long-running poller: throttling storms, 503/504, connections reset
part-way through an answer, answers slower than the client's timeout, bodies that are not
JSON, items without their id, properties nobody documented, an item served on two pages,
token endpoint failures, tokens expiring mid-cycle, meetings deleted mid-cycle and stale delta
links.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from remote_guard.fakegraph._errors import aad_error_body, graph_error_body
from remote_guard.fakegraph.scenario import FaultSpec

if TYPE_CHECKING:
    from remote_guard.fakegraph.tenant import TenantState


@dataclass
class FaultState:
    """The fault knobs in force now; starts from the scenario's ``faults`` section."""

    latency_ms: float = 0.0
    rate_429: float = 0.0
    rate_503: float = 0.0
    retry_after_seconds: float = 0.2
    token_lifetime_seconds: int = 3599
    page_size: int = 5
    # How long after a call ends its call record / attendance report appear. Graph's first
    # call record version usually lands within 15 minutes; the default 0 keeps tests quick.
    call_record_delay_seconds: float = 0.0
    attendance_report_delay_seconds: float = 0.0

    @classmethod
    def from_spec(cls, spec: FaultSpec) -> FaultState:
        return cls(
            latency_ms=spec.latency_ms,
            rate_429=spec.rate_429,
            rate_503=spec.rate_503,
            retry_after_seconds=spec.retry_after_seconds,
            token_lifetime_seconds=spec.token_lifetime_seconds,
            page_size=spec.page_size,
        )


@dataclass
class Injection:
    """Answer the next ``remaining`` requests whose path matches ``pattern`` with ``status``."""

    pattern: re.Pattern[str]
    status: int
    remaining: int
    retry_after: float | None
    method: str | None


@dataclass(frozen=True)
class Fault:
    """A fault to apply to one request instead of serving it."""

    status: int
    retry_after: float | None


def format_retry_after(seconds: float) -> str:
    """``Retry-After`` as Graph writes it: whole seconds without a point, else a decimal."""
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class FaultPlan:
    """Decides, per request, whether a fault replaces the real answer."""

    def __init__(self, faults: FaultState, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(seed)
        self._injections: list[Injection] = []

    @property
    def rng(self) -> random.Random:
        """The seeded RNG, shared with other random choices (batch response order)."""
        return self._rng

    def inject(
        self,
        path_regex: str,
        status: int,
        count: int = 1,
        retry_after: float | None = None,
        *,
        method: str | None = None,
    ) -> None:
        """Force the next ``count`` responses whose path (with query) matches to ``status``.

        The regex is searched in the path as served, e.g. ``/v1.0/users/x/calendarView?...``;
        batch items are matched as ``/v1.0`` + their relative URL.

        Raises:
            re.error: ``path_regex`` is not a valid regular expression.
            ValueError: ``count`` is not positive.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        self._injections.append(
            Injection(
                pattern=re.compile(path_regex),
                status=status,
                remaining=count,
                retry_after=retry_after,
                method=method.upper() if method else None,
            )
        )

    def clear_injections(self) -> None:
        self._injections.clear()

    def take_injection(self, method: str, path: str) -> Fault | None:
        """The forced fault for this request, if one matches (and count it as used)."""
        for injection in self._injections:
            if injection.method is not None and injection.method != method.upper():
                continue
            if injection.remaining > 0 and injection.pattern.search(path):
                injection.remaining -= 1
                if injection.remaining == 0:
                    self._injections.remove(injection)
                retry_after = injection.retry_after
                if retry_after is None and injection.status in (429, 503):
                    retry_after = self.faults.retry_after_seconds
                return Fault(status=injection.status, retry_after=retry_after)
        return None

    def random_fault(self) -> Fault | None:
        """A random 429 or 503 at the configured rates, or ``None`` to serve the request."""
        rate_429 = self.faults.rate_429
        rate_503 = self.faults.rate_503
        if rate_429 <= 0 and rate_503 <= 0:
            return None
        draw = self._rng.random()
        if draw < rate_429:
            return Fault(status=429, retry_after=self.faults.retry_after_seconds)
        if draw < rate_429 + rate_503:
            return Fault(status=503, retry_after=self.faults.retry_after_seconds)
        return None


# --- chaos: seeded random faults at the HTTP level ------------------------------------------------

# Graph-level faults, drawn per request in this order from one uniform draw.
GRAPH_FAULT_KINDS = (
    "throttle",  # 429 with Retry-After (a storm: several in a row)
    "unavailable",  # 503 with Retry-After
    "gateway_timeout",  # 504, no Retry-After
    "reset",  # the connection closes part-way through the answer
    "slow",  # the answer comes after ``slow_seconds`` (longer than the client's timeout)
    "malformed",  # 200 with a body cut short: not JSON
    "missing_field",  # 200 with an item's ``id`` (or the page's ``value``) removed
    "unexpected_field",  # 200 with properties Graph might add one day
    "duplicate",  # the last item of a page is served again at the start of the next page
)
# Token endpoint faults (identity platform): drawn with rate ``token_failure``.
TOKEN_FAULT_KINDS = ("unavailable", "server_error", "reset", "slow", "malformed")
# Changes to the tenant made at a random Graph request, before it is served.
TENANT_EVENT_KINDS = ("expire_tokens", "delete_meeting", "stale_delta")


@dataclass
class ChaosRates:
    """How likely each fault is on one request (0 to 1); see :data:`GRAPH_FAULT_KINDS`."""

    throttle: float = 0.0
    unavailable: float = 0.0
    gateway_timeout: float = 0.0
    reset: float = 0.0
    slow: float = 0.0
    malformed: float = 0.0
    missing_field: float = 0.0
    unexpected_field: float = 0.0
    duplicate: float = 0.0
    token_failure: float = 0.0
    expire_tokens: float = 0.0
    delete_meeting: float = 0.0
    stale_delta: float = 0.0
    # A 429 starts a storm of up to this many 429s in a row on the following requests.
    storm_length: int = 1
    retry_after_seconds: float = 0.05
    slow_seconds: float = 1.0

    @classmethod
    def random(cls, rng: random.Random, *, slow_seconds: float) -> ChaosRates:
        """A random schedule: each fault kind off, occasional or frequent.

        Most schedules turn on a few kinds only, so a run stresses some code paths hard
        rather than every path a little.
        """
        levels = (0.0, 0.0, 0.02, 0.05, 0.12)
        rates = cls(
            **{kind: rng.choice(levels) for kind in GRAPH_FAULT_KINDS},
            token_failure=rng.choice((0.0, 0.0, 0.1, 0.3)),
            expire_tokens=rng.choice((0.0, 0.0, 0.03, 0.1)),
            delete_meeting=rng.choice((0.0, 0.0, 0.02, 0.05)),
            stale_delta=rng.choice((0.0, 0.05)),
            storm_length=rng.choice((1, 3, 8)),
            retry_after_seconds=rng.choice((0.0, 0.01, 0.03)),
            slow_seconds=slow_seconds,
        )
        # A slow answer costs a whole client timeout; keep them rare enough for a quick run.
        rates.slow = min(rates.slow, 0.05)
        return rates


@dataclass(frozen=True)
class ChaosFault:
    """What to do to one request: ``kind`` from the lists above; ``status`` for error answers."""

    kind: str
    status: int = 0


class Chaos:
    """Seeded random faults for a whole run: off until :meth:`start`, off again after :meth:`stop`.

    One RNG decides every fault in the order requests arrive, so a run is repeatable when the
    client sends the same requests in the same order. :attr:`counts` says what was injected.
    Meetings removed from calendars mid-cycle are put back by :meth:`stop`.
    """

    def __init__(self, seed: int = 0) -> None:
        self.rates = ChaosRates()
        self.active = False
        self._rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self._storm = 0
        # $skiptoken of a page still to be served -> the item to serve again at its start.
        self.duplicates: dict[str, Any] = {}
        # Meeting key -> the calendar copies removed mid-cycle (put back by stop()).
        self.removed: dict[str, list[Any]] = {}
        # Every meeting deleted since start(), restored or not (for tests to judge by).
        self.deleted: set[str] = set()
        # A test's own corruption of Graph answers: (path, JSON body) -> the body to send
        # instead. Applied to every 2xx JSON answer served without another fault.
        self.rewrite: Callable[[str, Any], Any] | None = None

    @property
    def rng(self) -> random.Random:
        return self._rng

    def start(self, rates: ChaosRates, *, seed: int | None = None) -> None:
        """Inject faults at ``rates`` from now on (reseeding the RNG if ``seed`` is given)."""
        if seed is not None:
            self._rng = random.Random(seed)
        self.rates = rates
        self._storm = 0
        self.deleted.clear()
        self.active = True

    def stop(self, state: TenantState) -> None:
        """Stop injecting and put back every meeting removed mid-cycle."""
        self.active = False
        self._storm = 0
        self.duplicates.clear()
        with state.lock:
            for events in self.removed.values():
                for event in events:
                    state.calendars.setdefault(event.mailbox_id, {})[event.id] = event
            self.removed.clear()

    def draw_graph(self) -> ChaosFault | None:
        """The fault for the next Graph request, or None to serve it as it is."""
        if self._storm > 0:
            self._storm -= 1
            self.counts["throttle"] += 1
            return ChaosFault("throttle", 429)
        draw = self._rng.random()
        edge = 0.0
        for kind in GRAPH_FAULT_KINDS:
            edge += getattr(self.rates, kind)
            if draw < edge:
                self.counts[kind] += 1
                if kind == "throttle":
                    self._storm = self._rng.randint(0, max(0, self.rates.storm_length - 1))
                status = {"throttle": 429, "unavailable": 503, "gateway_timeout": 504}.get(kind, 0)
                return ChaosFault(kind, status)
        return None

    def draw_token(self) -> ChaosFault | None:
        """The fault for the next identity-platform request (token, discovery), or None."""
        if self._rng.random() >= self.rates.token_failure:
            return None
        kind = self._rng.choice(TOKEN_FAULT_KINDS)
        self.counts[f"token_{kind}"] += 1
        status = {"unavailable": 503, "server_error": 500}.get(kind, 0)
        return ChaosFault(kind, status)

    def tenant_events(self, state: TenantState) -> None:
        """Change the tenant as people and Microsoft do while a poll runs (call under the lock)."""
        if self._rng.random() < self.rates.expire_tokens:
            self.counts["expire_tokens"] += 1
            state.expire_tokens()
        if self._rng.random() < self.rates.stale_delta:
            self.counts["stale_delta"] += 1
            state.invalidate_delta_tokens()
        if self._rng.random() < self.rates.delete_meeting:
            # Single meetings only: a deleted occurrence of a series whose call still happened
            # becomes a session of its own (a known limitation, see tests/chaos).
            candidates = sorted(
                {
                    event.meeting_key
                    for mailbox in state.calendars.values()
                    for event in mailbox.values()
                    if event.meeting_key is not None
                    and event.meeting_key in state.meetings
                    and state.meetings[event.meeting_key].series_key is None
                }
            )
            if candidates:
                key = self._rng.choice(candidates)
                self.counts["delete_meeting"] += 1
                self.deleted.add(key)
                removed = self.removed.setdefault(key, [])
                for mailbox in state.calendars.values():
                    for event_id in [e.id for e in mailbox.values() if e.meeting_key == key]:
                        removed.append(mailbox.pop(event_id))

    def mutate(self, kind: str, body: Any) -> Any:
        """A 2xx JSON body with the ``missing_field`` or ``unexpected_field`` fault applied."""
        if not isinstance(body, dict):
            return body
        if kind == "unexpected_field":
            extra = {"chaosAddedProperty": {"nested": [1, "two", None]}, "@chaos.note": "x"}
            value = body.get("value")
            if isinstance(value, list):
                body["value"] = [
                    {**item, **extra} if isinstance(item, dict) else item for item in value
                ]
            return {**body, **extra}
        value = body.get("value")
        if isinstance(value, list):
            with_id = [i for i, item in enumerate(value) if isinstance(item, dict) and "id" in item]
            if not with_id:
                return {k: v for k, v in body.items() if k != "value"}
            index = self._rng.choice(with_id)
            value[index] = {k: v for k, v in value[index].items() if k != "id"}
            return body
        return {k: v for k, v in body.items() if k != "id"}


class ConnectionResetByChaosError(ConnectionError):
    """Raised in the fake server to drop a connection part-way through an answer."""


class ChaosMiddleware:
    """ASGI middleware applying :class:`Chaos` (``state.chaos``) to Graph and identity requests.

    Inactive, it passes every request straight through.
    """

    def __init__(self, app: ASGIApp, state: TenantState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chaos: Chaos = self.state.chaos
        if scope["type"] != "http" or not chaos.active:
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        is_graph = path.lower().startswith("/v1.0/")
        is_identity = not is_graph and ("/oauth2/" in path or "openid-configuration" in path)
        if not (is_graph or is_identity):
            await self.app(scope, receive, send)
            return
        with self.state.lock:
            if is_graph:
                chaos.tenant_events(self.state)
                fault = chaos.draw_graph()
            else:
                fault = chaos.draw_token()
        if fault is None:
            if is_graph and chaos.rewrite is not None:
                await self._serve_rewritten(scope, receive, send, chaos.rewrite)
            elif is_graph:
                await self._serve_with_duplicates(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if fault.kind == "slow":
            await asyncio.sleep(chaos.rates.slow_seconds)
            await self.app(scope, receive, send)
            return
        if fault.kind == "reset":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"4096"),
                    ],
                }
            )
            await send(
                {"type": "http.response.body", "body": b'{"value":[{"id":"', "more_body": True}
            )
            raise ConnectionResetByChaosError("chaos: connection reset part-way through")
        if fault.status:
            await self._error(send, fault, is_graph=is_graph)
            return
        status, headers, body = await _capture(self.app, scope, receive)
        if fault.kind == "malformed" and 200 <= status < 300 and body:
            await _answer(send, status, headers, body[: len(body) // 2] + b"\x00}{")
            return
        if fault.kind in ("missing_field", "unexpected_field") and 200 <= status < 300 and body:
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if data is not None:
                with self.state.lock:
                    data = chaos.mutate(fault.kind, data)
                body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        elif fault.kind == "duplicate":
            body = self._remember_last(scope, status, body)
        await _answer(send, status, headers, body)

    async def _error(self, send: Send, fault: ChaosFault, *, is_graph: bool) -> None:
        now = self.state.now()
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
        if fault.status in (429, 503):
            seconds = self.state.chaos.rates.retry_after_seconds
            # Entra ID writes whole seconds (MSAL reads only those), Graph decimals too.
            retry_after = format_retry_after(seconds if is_graph else float(math.ceil(seconds)))
            headers.append((b"retry-after", retry_after.encode()))
        if is_graph:
            code = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
            body: dict[str, Any] = graph_error_body(
                code.get(fault.status, "UnknownError"),
                "Injected by the fake tenant's chaos schedule.",
                now=now,
                request_id=str(uuid.uuid4()),
                client_request_id=str(uuid.uuid4()),
            )
        else:
            error = "temporarily_unavailable" if fault.status == 503 else "server_error"
            body = aad_error_body(
                error,
                90033 if fault.status == 503 else 90000,
                "The service is temporarily unavailable (injected by the chaos schedule).",
                now=now,
                correlation_id=str(uuid.uuid4()),
                error_uri_base="https://login.microsoftonline.com",
            )
        await _answer(send, fault.status, headers, json.dumps(body).encode("utf-8"))

    async def _serve_rewritten(
        self, scope: Scope, receive: Receive, send: Send, rewrite: Callable[[str, Any], Any]
    ) -> None:
        status, headers, body = await _capture(self.app, scope, receive)
        if 200 <= status < 300 and body:
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if data is not None:
                with self.state.lock:
                    data = rewrite(str(scope.get("path", "")), data)
                body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        await _answer(send, status, headers, body)

    async def _serve_with_duplicates(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request; if it asks for a page whose predecessor was marked, repeat that
        page's last item at the start of this one."""
        token = _skiptoken(scope)
        with self.state.lock:
            repeated = self.state.chaos.duplicates.pop(token, None) if token else None
        if repeated is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = await _capture(self.app, scope, receive)
        if 200 <= status < 300:
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if isinstance(data, dict) and isinstance(data.get("value"), list):
                data["value"] = [repeated, *data["value"]]
                body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        await _answer(send, status, headers, body)

    def _remember_last(self, scope: Scope, status: int, body: bytes) -> bytes:
        """Mark the page's next page to start with this page's last item (the page itself is
        served unchanged)."""
        if not 200 <= status < 300:
            return body
        try:
            data = json.loads(body)
        except ValueError:
            return body
        if not isinstance(data, dict):
            return body
        value, next_link = data.get("value"), data.get("@odata.nextLink")
        if isinstance(value, list) and value and isinstance(next_link, str):
            token = dict(parse_qsl(urlsplit(next_link).query)).get("$skiptoken")
            if token:
                with self.state.lock:
                    self.state.chaos.duplicates[token] = value[-1]
        return body


def _skiptoken(scope: Scope) -> str | None:
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    return dict(parse_qsl(query)).get("$skiptoken")


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[int, list[Any], bytes]:
    """Run the app for one request and keep its answer instead of sending it."""
    status = 500
    headers: list[Any] = []
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    await app(scope, receive, keep)
    return status, headers, b"".join(chunks)


async def _answer(send: Send, status: int, headers: list[Any], body: bytes) -> None:
    kept = [(k, v) for k, v in headers if bytes(k).lower() != b"content-length"]
    kept.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": kept})
    await send({"type": "http.response.body", "body": body})
