"""Keeping under Graph's published rate limits, so a poll is not throttled in the first place.

Graph answers a request over a limit with 429 and ``Retry-After``; the client honours that, but
a poll that keeps hitting limits is slow and may be throttled harder. The limits that a poll can
reach (``concepts/throttling-limits.md``, summarised in the project's Graph facts, section 2)
are kept here, and :class:`Pacer` waits before a request (or a ``$batch`` envelope, counting
each of its items) would go over one. The service counts a request when it arrives, somewhere
between sending it and its answer, so a request's window is taken to start when its answer came
back, and a quarter longer than published.

Only limits on request rates are paced. Outlook's four requests in flight per mailbox are kept
by how requests are sent (one calendar request per mailbox at a time), not here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

# How much longer than published each window is taken.
MARGIN = 1.25
# How soon to look again when what must leave a full window is still on its way.
POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Limit:
    """At most ``requests`` in any ``seconds``, for one scope (the tenant, a team, a record)."""

    name: str
    requests: int
    seconds: float


GLOBAL = Limit("any request, per app", 2000, 1)
TEAMS_MESSAGES = Limit("Teams: GET chat or channel messages, per app and tenant", 20, 1)
TEAMS_CHANNELS = Limit("Teams: GET channels, per app and tenant", 60, 1)
TEAMS_OTHER = Limit("Teams: other calls, per app and tenant", 30, 1)
TEAMS_ONE_TEAM = Limit("Teams: any one team or channel, per app", 4, 1)
CALL_RECORDS = Limit("callRecords, per app and tenant", 1500, 20)
CALL_RECORD_FIRST_PAGE = Limit("callRecords: one record's first page", 10, 20)
CALL_RECORD_LATER_PAGES = Limit("callRecords: one record's later pages", 50, 300)


def limits_for(method: str, url: str) -> list[tuple[Limit, str]]:
    """The rate limits a request counts against, each with its scope."""
    parts = urlsplit(url)
    path = parts.path
    if "/v1.0/" in path:
        path = path.split("/v1.0/", 1)[1]
    segments = [unquote(part).lower() for part in path.strip("/").split("/") if part]
    found: list[tuple[Limit, str]] = [(GLOBAL, "app")]
    if not segments:
        return found
    root = segments[0]
    get = method.upper() == "GET"
    if root == "users" and len(segments) >= 3 and segments[2] == "chats":
        found.append((TEAMS_OTHER, "tenant"))
    elif root == "chats":
        messages = get and len(segments) >= 3 and segments[2] == "messages"
        found.append((TEAMS_MESSAGES if messages else TEAMS_OTHER, "tenant"))
    elif root == "teams":
        if len(segments) >= 2:
            found.append((TEAMS_ONE_TEAM, segments[1]))
        if get and len(segments) >= 5 and segments[4] == "messages":
            found.append((TEAMS_MESSAGES, "tenant"))
        elif get and len(segments) == 3 and segments[2] == "channels":
            found.append((TEAMS_CHANNELS, "tenant"))
        else:
            found.append((TEAMS_OTHER, "tenant"))
    elif root == "communications" and len(segments) >= 2 and segments[1] == "callrecords":
        found.append((CALL_RECORDS, "tenant"))
        if len(segments) >= 3:
            later = any(name.lower() == "$skiptoken" for name, _ in parse_qsl(parts.query))
            found.append(
                (CALL_RECORD_LATER_PAGES if later else CALL_RECORD_FIRST_PAGE, segments[2])
            )
    return found


def capacity(method: str, url: str) -> int:
    """How many requests like this one may go in one burst (one envelope)."""
    return min(limit.requests for limit, _ in limits_for(method, url))


@dataclass
class _Sent:
    """One request counted against one limit: ``at`` is when its answer came back (the service
    counted it before then), None while it is on its way."""

    at: float | None = None


@dataclass
class Slot:
    """The places a request (or an envelope and its items) holds under the limits."""

    entries: list[_Sent]
    waited: float


class Pacer:
    """What was sent, under each limit; :meth:`paced` waits until more fits. Thread-safe.

    A request counts from when it is sent, and its window runs from when its answer came back:
    the service counted it somewhere in between, so however long a request queued on the way,
    the next one under a full limit never reaches the service inside the same window.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: dict[tuple[str, str], list[_Sent]] = {}
        self.waited_seconds = 0.0

    @contextmanager
    def paced(self, requests: Iterable[tuple[str, str]]) -> Iterator[Slot]:
        """Wait until ``requests`` (method, URL) fit under every limit; count them as sent for
        the duration of the block, and from its end for a window."""
        slot = self.acquire(requests)
        try:
            yield slot
        finally:
            self.release(slot)

    def acquire(self, requests: Iterable[tuple[str, str]]) -> Slot:
        """Wait until ``requests`` fit, then hold their places (see :meth:`release`).

        A burst larger than a limit (more than it allows in one window) is let through once the
        window is empty, rather than never.
        """
        needs: dict[tuple[str, str], tuple[Limit, int]] = {}
        for method, url in requests:
            for limit, scope in limits_for(method, url):
                key = (limit.name, scope)
                needs[key] = (limit, needs.get(key, (limit, 0))[1] + 1)
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                delay = max(
                    (self._delay(key, limit, count, now) for key, (limit, count) in needs.items()),
                    default=0.0,
                )
                if delay <= 0:
                    entries = [_Sent() for _, count in needs.values() for _ in range(count)]
                    position = 0
                    for key, (_, count) in needs.items():
                        self._sent.setdefault(key, []).extend(entries[position : position + count])
                        position += count
                    self.waited_seconds += waited
                    return Slot(entries, waited)
            self._sleep(delay)
            waited += delay

    def release(self, slot: Slot) -> None:
        """The answer came back: the slot's windows start now."""
        with self._lock:
            now = self._clock()
            for entry in slot.entries:
                entry.at = now

    def wait(self, requests: Iterable[tuple[str, str]]) -> float:
        """Wait until ``requests`` fit and count them as sent and answered now; how long it
        waited."""
        slot = self.acquire(requests)
        self.release(slot)
        return slot.waited

    def _delay(self, key: tuple[str, str], limit: Limit, count: int, now: float) -> float:
        window = limit.seconds * MARGIN
        sent = self._sent.get(key)
        if not sent:
            return 0.0
        sent[:] = [entry for entry in sent if entry.at is None or entry.at > now - window]
        allowed = max(limit.requests - count, 0)
        if len(sent) <= allowed:
            return 0.0
        answered = sorted(entry.at for entry in sent if entry.at is not None)
        must_leave = len(sent) - allowed
        if must_leave > len(answered):
            # Some of what must leave the window is still on its way: look again shortly.
            return POLL_SECONDS
        return max(0.001, answered[must_leave - 1] + window - now)
