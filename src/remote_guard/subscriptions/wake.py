"""Asking the poller for a cycle now, rather than at its next interval.

A call record that appeared, or a calendar that changed, is a reason to poll at once. Requests
are coalesced: however many arrive, the poller runs one cycle (and one more if some arrived
while that cycle ran). The request is kept in the database as well (checkpoint
``poll_wanted:{tenant}``), so a receiver hosted by the web app reaches a poller in another
process; the scheduler asks :meth:`PollWaker.due` twice a second.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

import structlog
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.clock import Clock
from remote_guard.poll.models import CheckpointRow
from remote_guard.store.db import transaction

log = structlog.get_logger(__name__)

# How often the database is looked at for a request made by another process.
SHARED_CHECK_SECONDS = 2.0
# At least this long between two polls asked for this way: call records arrive in bursts when
# lessons end, and one poll reads them all.
MIN_GAP_SECONDS = 15.0


class PollWaker:
    """Poll-now requests, in this process and through the database."""

    def __init__(self, db: sessionmaker[Session], tenant_id: str, clock: Clock) -> None:
        self._db = db
        self._key = f"poll_wanted:{tenant_id}"
        self._clock = clock
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reasons: list[str] = []
        self._consumed: str | None = None  # the last shared request already acted on
        self._checked = 0.0
        self._granted: float | None = None  # when due() last said yes (monotonic)
        self.requested = 0  # requests made through this waker

    def request(self, reason: str, *, shared: bool = False) -> None:
        """Ask for a poll now. With ``shared``, a poller in another process hears it too.

        Never raises: a request that cannot be written to the database is only logged (the
        next scheduled poll still comes).
        """
        with self._lock:
            self._reasons.append(reason)
            self.requested += 1
        self._event.set()
        if shared:
            try:
                self._write(self._clock())
            except Exception:  # noqa: BLE001 - a lost wake-up only delays; the poll still comes
                log.warning("notifications.wake_not_shared", reason=reason)

    def _write(self, now: datetime) -> None:
        with transaction(self._db) as session:
            row = session.get(CheckpointRow, self._key)
            if row is None:
                session.add(CheckpointRow(key=self._key, value=now.isoformat(), updated_at=now))
            else:
                row.value = now.isoformat()
                row.updated_at = now
        # This process has heard its own request already (through the event).
        self._consumed = now.isoformat()

    def due(self) -> bool:
        """Whether a poll was asked for since the last time this said so (consumes it). Within
        ``MIN_GAP_SECONDS`` of the last yes, requests wait (they are not lost)."""
        if self._granted is not None and time.monotonic() - self._granted < MIN_GAP_SECONDS:
            return False
        if self._take():
            self._granted = time.monotonic()
            return True
        return False

    def _take(self) -> bool:
        if self._event.is_set():
            self._event.clear()
            with self._lock:
                reasons, self._reasons = self._reasons, []
            log.info("notifications.poll_requested", reasons=sorted(set(reasons))[:10])
            return True
        now = time.monotonic()
        if now - self._checked < SHARED_CHECK_SECONDS:
            return False
        self._checked = now
        try:
            with self._db() as session:
                row = session.get(CheckpointRow, self._key)
        except Exception:  # noqa: BLE001 - the database may be busy; asked again shortly
            return False
        if row is None:
            self._consumed = self._consumed or ""  # nothing asked yet: any request is new
            return False
        if self._consumed is None:
            # Requests older than this process were served by whoever polled before it.
            self._consumed = row.value
            return False
        if row.value != self._consumed:
            self._consumed = row.value
            log.info("notifications.poll_requested", reasons=["another process"])
            return True
        return False
