"""The work several poller processes share, and the worker loop that shares it.

A tenant's polling is cut into ``[poll] shards`` parts, one per *shard* of the staff
mailboxes (a mailbox belongs to the shard its id's stable hash falls in). Each part is a
lease (``poll:{tenant}:shard:{k}of{n}``); a worker claims any part whose cycle is due (not
finished within ``[poll] interval_seconds``) and nobody holds, and runs that part's cycle:

- it reads the calendars and chats of its shard's staff members, and the call records;
- before reading a session from Graph it claims the session (``session:{id}``, a short lease,
  taken only if no part finished that session within the last poll interval): a meeting on two
  shards' calendars, or a chat between staff of two shards, is read by whichever part claims it
  first, and left by the other;
- a meeting with a link found only in the call records ("Meet now", or a call on a series'
  link) is read only if no other shard's stored calendar has a Teams meeting with that link (it
  is that shard's: it matches the call to its calendar entry, where a part that cannot see the
  entry would take it for an ad-hoc meeting), and only once every other shard's calendars have
  been read within two poll intervals (until then the call waits, as a single poller's does
  while a calendar cannot be read). A direct call (no link) is read by any part;
- shard 0 also does the tenant-wide work: sessions read in full are evaluated again, the
  patterns across sessions (stage-2 rules) are judged over every session stored in the window,
  and the school's e-mail domains are kept for the web app.

Each session's write is fenced by its lease (see ``lease.py``); a worker that loses a part
(paused past its lease) stops that cycle. ``docs/operations.md`` says how to run workers.
"""

from __future__ import annotations

import hashlib
import random
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from remote_guard.collect.collector import FoundIn, normalise_join_url, session_id_for_join_url
from remote_guard.collect.models import CalendarEventRow, CalendarSyncRow
from remote_guard.leases.lease import Grant, LeaseLostError, Leases, worker_id
from remote_guard.poll.scheduler import PURGE_HOUR, PURGE_MINUTE, IntervalJob, daily_purge
from remote_guard.poll.service import (
    CyclePart,
    CycleStoppedError,
    Poller,
    PollResult,
    run_poll,
)
from remote_guard.settings import Settings

log = structlog.get_logger(__name__)

SESSION_PREFIX = "session:"
# The collector's id for a direct call (no meeting link): no calendar can hold it.
DIRECT_CALL_PREFIX = "call_"
# Released session leases older than this are deleted (by shard 0, after its cycle): they only
# matter during the cycle that took them.
SESSION_LEASES_KEPT = timedelta(days=1)
# How often an idle worker looks for due work, at most: a dead worker's part is taken over
# within this of its lease expiring.
IDLE_WAIT_MAX_SECONDS = 15.0
# How often an idle worker asks ``wake`` whether a poll is wanted now.
WAKE_CHECK_SECONDS = 0.5
# After a poll-now request a part is taken again if its last cycle ended this long ago: call
# records arrive in bursts when lessons end, and one cycle reads them all.
WAKE_MIN_GAP = timedelta(seconds=15)


def shard_of(mailbox_id: str, shards: int) -> int:
    """The shard a staff mailbox belongs to: a stable hash of its id (the same in every
    process and release, unlike Python's ``hash``), so a mailbox stays in one shard."""
    digest = hashlib.sha256(mailbox_id.strip().lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


@dataclass(frozen=True)
class WorkUnit:
    """One part of one tenant's polling: shard ``index`` of ``count``."""

    tenant_id: str
    index: int
    count: int

    @property
    def key(self) -> str:
        return f"poll:{self.tenant_id}:shard:{self.index}of{self.count}"

    @property
    def name(self) -> str:
        if self.count == 1:
            return "whole tenant"
        return f"shard {self.index} of {self.count}"

    @property
    def tenant_wide(self) -> bool:
        return self.index == 0

    def owns(self, mailbox_id: str) -> bool:
        return shard_of(mailbox_id, self.count) == self.index


def work_units(settings: Settings) -> list[WorkUnit]:
    """The parts of the configured tenant's polling, shard 0 first."""
    count = settings.poll.shards
    return [WorkUnit(settings.tenant.tenant_id, index, count) for index in range(count)]


def unit_prefix(settings: Settings) -> str:
    """The start of every work unit's lease key for the configured tenant."""
    return f"poll:{settings.tenant.tenant_id}:"


class Heartbeat:
    """Renews every lease its worker holds, every ``every`` seconds, in a daemon thread; marks
    those found taken over as ``lost``."""

    def __init__(self, leases: Leases, *, every: float) -> None:
        self._leases = leases
        self._every = every
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def add(self, grant: Grant) -> None:
        with self._lock:
            self._grants[grant.key] = grant

    def discard(self, grant: Grant) -> None:
        with self._lock:
            if self._grants.get(grant.key) is grant:
                del self._grants[grant.key]

    def beat(self) -> list[Grant]:
        """Renew now; return the grants found lost."""
        with self._lock:
            grants = list(self._grants.values())
        lost = self._leases.renew_held(grants)
        for grant in lost:
            log.warning("lease.lost", key=grant.key, holder=grant.holder, fence=grant.token)
        return lost

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.beat()
            except SQLAlchemyError as exc:
                # The database is unreachable: nothing can be written either. Try again at the
                # next beat; the leases expire if this goes on, and the fences refuse the writes.
                log.warning("lease.renew_failed", error=type(exc).__name__)


@dataclass
class UnitRun:
    """One cycle of one work unit under its lease: the hooks given to the poll cycle.

    ``staff`` collects every staff mailbox the collector asks about (it asks about each one to
    pick this shard's). ``others`` is worked out at the first claim of a call, once this part's
    calendars were read (see :func:`other_calendars`).
    """

    poller: Poller
    leases: Leases
    heartbeat: Heartbeat
    unit: WorkUnit
    grant: Grant
    stop: threading.Event
    held: dict[str, Grant] = field(default_factory=dict)
    staff: set[str] = field(default_factory=set)
    others: OtherCalendars | None = None
    skipped: int = 0
    deferred: int = 0

    def part(self) -> CyclePart:
        sharded = self.unit.count > 1
        return CyclePart(
            name=self.unit.name,
            mailboxes=self.owns if sharded else None,
            claim=self.claim,
            fence=self.fence,
            stored=self.stored,
            started=self.started,
            tenant_wide=self.unit.tenant_wide,
            patterns_over_store=sharded,
            chat_scope=f":shard:{self.unit.index}of{self.unit.count}" if sharded else "",
        )

    def check(self) -> None:
        """Raises:
        CycleStoppedError: the worker is stopping, or another worker has this part now.
        """
        if self.stop.is_set():
            raise CycleStoppedError("the worker was asked to stop")
        if self.grant.lost:
            raise CycleStoppedError(
                f"the lease on {self.unit.key} expired and another worker took it over"
            )

    def owns(self, mailbox_id: str) -> bool:
        """Whether this part reads ``mailbox_id``'s calendar and chats."""
        self.staff.add(mailbox_id)
        return self.unit.owns(mailbox_id)

    def claim(self, session_id: str, found_in: FoundIn) -> bool:
        """Whether this run may read ``session_id`` now (see the module docstring).

        Raises:
            CycleStoppedError: see :meth:`check`.
        """
        self.check()
        if session_id in self.held:
            return True
        if found_in == "call_records" and not self._call_is_ours(session_id):
            return False
        interval = timedelta(seconds=self.poller.settings.poll.interval_seconds)
        grant = self.leases.claim(
            SESSION_PREFIX + session_id, not_done_since=self.grant.acquired_at - interval
        )
        if grant is None:
            self.skipped += 1
            log.debug("lease.session_taken", session_id=session_id)
            return False
        self.held[session_id] = grant
        self.heartbeat.add(grant)
        return True

    def fence(self, session: Session, session_id: str) -> None:
        """Raises:
        CycleStoppedError: the session's lease is not this run's (never claimed, or lost).
        """
        grant = self.held.get(session_id)
        if grant is None:
            raise CycleStoppedError(f"session {session_id} was read without being claimed")
        try:
            self.leases.fence(session, grant)
        except LeaseLostError as exc:
            raise CycleStoppedError(str(exc)) from exc

    def stored(self, session_id: str) -> None:
        """Release the session's lease once its write has committed, as done this cycle.

        Raises:
            CycleStoppedError: see :meth:`check` (asked here, between two sessions).
        """
        grant = self.held.pop(session_id, None)
        if grant is not None:
            self.heartbeat.discard(grant)
            self.leases.release(grant, done=True)
        self.check()

    def started(self, session: Session, run_id: str) -> None:
        """Raises:
        CycleStoppedError: the part's lease was lost before the run began.
        """
        try:
            self.leases.attach_run(session, self.grant, run_id)
        except LeaseLostError as exc:
            raise CycleStoppedError(str(exc)) from exc

    def finish(self, *, done: bool) -> None:
        """Release the sessions still held (claimed, then found unchanged or of no concern)."""
        for grant in self.held.values():
            self.heartbeat.discard(grant)
            try:
                self.leases.release(grant, done=done)
            except SQLAlchemyError as exc:
                log.warning("lease.release_failed", key=grant.key, error=type(exc).__name__)
        self.held.clear()

    def _call_is_ours(self, session_id: str) -> bool:
        """Whether a session found only in the call records is this part's to read."""
        if self.unit.count == 1 or session_id.startswith(DIRECT_CALL_PREFIX):
            return True
        if self.others is None:
            self.others = other_calendars(self.poller, self.unit, self.staff)
            if self.others.stale:
                log.warning(
                    "worker.calls_deferred",
                    reason="some other shard's calendars were not read within two poll "
                    "intervals: meetings found only in call records wait for the next cycle",
                    stale_mailboxes=len(self.others.stale),
                )
        if self.others.stale:
            self.deferred += 1
            return False
        return session_id not in self.others.meeting_ids


def _join_url(data: dict[str, Any]) -> str | None:
    """A stored event's meeting link, read as the collector reads it (``Collector._join_url``):
    the online meeting's join URL, else ``onlineMeetingUrl``."""
    online = data.get("onlineMeeting")
    if isinstance(online, dict) and online.get("joinUrl"):
        return str(online["joinUrl"])
    url = data.get("onlineMeetingUrl")
    return str(url) if url else None


@dataclass(frozen=True)
class OtherCalendars:
    """What a part knows of the other shards' calendars: the ids its calls would get if their
    link is that of a Teams meeting there (and on none of this shard's calendars), and the
    other shards' staff mailboxes whose calendars were not read lately."""

    meeting_ids: frozenset[str]
    stale: frozenset[str]


def other_calendars(poller: Poller, unit: WorkUnit, staff: set[str]) -> OtherCalendars:
    """The other shards' calendars as stored, in the poll window.

    The meeting ids are of the link alone, as the collector names a call it cannot match to a
    calendar entry: for a meeting that is not recurring, the calendar session's own id; for a
    series, the link's (no occurrence's). A mailbox is stale when its calendar was never read or
    not within two poll intervals: a meeting put on it since may be missing from the store.
    """
    now = poller.clock()
    start = now - timedelta(hours=poller.settings.poll.lookback_hours)
    end = now + timedelta(days=poller.settings.poll.lookahead_days)
    fresh_after = now - 2 * timedelta(seconds=poller.settings.poll.interval_seconds)
    own: set[str] = set()
    others: set[str] = set()
    with poller.db() as session:
        rows = session.execute(
            select(CalendarEventRow.mailbox_id, CalendarEventRow.data).where(
                CalendarEventRow.start < end, CalendarEventRow.end > start
            )
        )
        for mailbox_id, data in rows:
            url = _join_url(data) if isinstance(data, dict) else None
            if not url or not normalise_join_url(url):
                continue
            (own if unit.owns(mailbox_id) else others).add(session_id_for_join_url(url))
        synced = dict(
            session.execute(select(CalendarSyncRow.mailbox_id, CalendarSyncRow.synced_at)).all()
        )
    stale: set[str] = set()
    for mailbox in staff:
        read_at = synced.get(mailbox)
        if not unit.owns(mailbox) and (read_at is None or read_at < fresh_after):
            stale.add(mailbox)
    return OtherCalendars(meeting_ids=frozenset(others - own), stale=frozenset(stale))


@dataclass
class WorkerReport:
    """What a worker did: its cycles' results, by unit name."""

    holder: str
    results: list[tuple[str, PollResult]] = field(default_factory=list)


def run_worker(
    poller: Poller,
    *,
    stop: threading.Event | None = None,
    once: bool = False,
    holder: str | None = None,
    install_signal_handlers: bool = True,
    on_result: Callable[[WorkUnit, PollResult], None] | None = None,
    wake: Callable[[], bool] | None = None,
    jobs: Sequence[IntervalJob] = (),
) -> WorkerReport:
    """Poll the configured tenant's due parts under leases until stopped (with ``once``: until
    no part is due and free). SIGTERM and SIGINT end the cycle under way at the next session
    (that run ends ``interrupted``), release every lease this worker holds, and return.

    ``wake`` (a change notification asked for a poll now) makes every part due that has not
    run in the last ``WAKE_MIN_GAP``; an idle worker asks it twice a second. Each of ``jobs``
    (keeping the subscriptions) runs every ``job.seconds`` in one worker at a time, under a
    lease of its own.

    A database that cannot be reached is logged and tried again after a pause.

    Raises:
        ValueError: several shards with the naive reading (``poller.frugal`` False): a part
            can only tell another shard's meetings by their stored calendar entries.
    """
    settings = poller.settings
    if settings.poll.shards > 1 and not poller.frugal:
        raise ValueError("[poll] shards above 1 need frugal polling (stored calendars)")
    stop = stop or threading.Event()
    leases = Leases(poller.db, holder=holder or worker_id(), seconds=settings.poll.lease_seconds)
    report = WorkerReport(holder=leases.holder)
    units = work_units(settings)
    # A poller per part: what a frugal cycle remembers of the previous one is that part's own.
    pollers = {unit.key: replace(poller, previous_cycle=None) for unit in units}
    heartbeat = Heartbeat(leases, every=settings.poll.lease_seconds / 3).start()
    idle = min(IDLE_WAIT_MAX_SECONDS, max(1.0, settings.poll.lease_seconds / 2))
    interval = timedelta(seconds=settings.poll.interval_seconds)
    rng = random.Random()  # noqa: S311 - spreads workers over the parts, not security
    log.info(
        "worker.started",
        holder=leases.holder,
        shards=len(units),
        lease_seconds=settings.poll.lease_seconds,
    )
    woken = False
    with _signals_stop(stop, install=install_signal_handlers):
        try:
            while not stop.is_set():
                ran = False
                woken = woken or (wake is not None and wake())
                due_after = WAKE_MIN_GAP if woken else interval
                woken = False
                try:
                    # In a random order, so that workers starting together take different parts.
                    for unit in rng.sample(units, len(units)):
                        if stop.is_set():
                            break
                        grant = leases.claim(unit.key, not_done_since=due_after)
                        if grant is None:
                            continue
                        ran = True
                        result = _run_unit(
                            pollers[unit.key],
                            leases=leases,
                            heartbeat=heartbeat,
                            unit=unit,
                            grant=grant,
                            stop=stop,
                        )
                        report.results.append((unit.name, result))
                        if on_result is not None:
                            on_result(unit, result)
                    if _purge_if_due(poller, leases, stop):
                        ran = True
                    for job in jobs:
                        _job_if_due(job, poller, leases, stop)
                except SQLAlchemyError as exc:
                    # The database is unreachable: nothing can be claimed or recorded. Wait and
                    # try again, as the scheduled poller does; leases held meanwhile expire.
                    log.warning("worker.database_unreachable", error=type(exc).__name__)
                    ran = False
                if once and not ran:
                    break
                if not ran:
                    woken = _idle_wait(stop, idle, wake)
        finally:
            _shut_down(leases, heartbeat, report)
    return report


def _shut_down(leases: Leases, heartbeat: Heartbeat, report: WorkerReport) -> None:
    """Stop renewing and give up every lease still held, so others need not wait for them."""
    heartbeat.stop()
    try:
        released = leases.release_all()
    except SQLAlchemyError as exc:
        log.warning("worker.release_failed", error=type(exc).__name__)
        released = 0
    log.info(
        "worker.stopped",
        holder=leases.holder,
        cycles=len(report.results),
        leases_released=released,
    )


def _run_unit(
    poller: Poller,
    *,
    leases: Leases,
    heartbeat: Heartbeat,
    unit: WorkUnit,
    grant: Grant,
    stop: threading.Event,
) -> PollResult:
    """One cycle of ``unit`` under ``grant``; the lease is released afterwards, as done unless
    the cycle was stopped (then another worker may take the part at once)."""
    log.info("worker.unit_claimed", unit=unit.name, key=unit.key, fence=grant.token)
    heartbeat.add(grant)
    run = UnitRun(
        poller=poller, leases=leases, heartbeat=heartbeat, unit=unit, grant=grant, stop=stop
    )
    done = False
    try:
        with structlog.contextvars.bound_contextvars(work_unit=unit.name):
            result = run_poll(poller, run.part())
        done = result.status != "interrupted"
        if done and unit.tenant_wide:
            pruned = leases.prune(prefix=SESSION_PREFIX, older_than=SESSION_LEASES_KEPT)
            if pruned:
                log.info("lease.pruned", count=pruned)
        return result
    finally:
        heartbeat.discard(grant)
        run.finish(done=done)
        try:
            leases.release(grant, done=done)
        except SQLAlchemyError as exc:
            log.warning("lease.release_failed", key=grant.key, error=type(exc).__name__)
        log.info(
            "worker.unit_released",
            unit=unit.name,
            key=unit.key,
            done=done,
            sessions_left_to_others=run.skipped,
            calls_deferred=run.deferred,
        )


def _idle_wait(stop: threading.Event, seconds: float, wake: Callable[[], bool] | None) -> bool:
    """Wait ``seconds`` (or until stopped); True as soon as ``wake`` says a poll is wanted."""
    if wake is None:
        stop.wait(seconds)
        return False
    waited = 0.0
    while waited < seconds and not stop.is_set():
        if wake():
            return True
        stop.wait(WAKE_CHECK_SECONDS)
        waited += WAKE_CHECK_SECONDS
    return False


def _job_if_due(job: IntervalJob, poller: Poller, leases: Leases, stop: threading.Event) -> bool:
    """Run ``job`` if no worker has run it in the last ``job.seconds``, under a lease, so one
    worker at a time does. Returns whether this worker ran it; never raises (as a scheduled
    job, a failure is logged and the job runs again when next due)."""

    def run() -> None:
        try:
            job.func()
        except Exception:
            log.exception("worker.job_failed", job=job.name)

    if stop.is_set():
        return False
    return _run_leased(
        leases,
        f"job:{poller.settings.tenant.tenant_id}:{job.id}",
        not_done_since=timedelta(seconds=job.seconds),
        run=run,
    )


def _run_leased(
    leases: Leases, key: str, *, not_done_since: datetime | timedelta, run: Callable[[], None]
) -> bool:
    """Run ``run`` under the lease ``key`` if its work was not done since ``not_done_since``
    and no other worker holds it; the work counts as done afterwards. Whether it ran here."""
    grant = leases.claim(key, not_done_since=not_done_since)
    if grant is None:
        return False
    try:
        run()
    finally:
        leases.release(grant, done=True)
    return True


def _purge_if_due(poller: Poller, leases: Leases, stop: threading.Event) -> bool:
    """Run the daily retention purge if it has not run since the last 02:30 (school time);
    one worker does it, under a lease. Returns whether this worker ran it."""
    if stop.is_set():
        return False
    zone = ZoneInfo(poller.settings.school_day.timezone)
    local = poller.clock().astimezone(zone)
    last_slot = local.replace(hour=PURGE_HOUR, minute=PURGE_MINUTE, second=0, microsecond=0)
    if last_slot > local:
        last_slot -= timedelta(days=1)
    return _run_leased(
        leases,
        f"purge:{poller.settings.tenant.tenant_id}",
        not_done_since=last_slot.astimezone(UTC),
        run=lambda: daily_purge(poller),
    )


@contextmanager
def _signals_stop(stop: threading.Event, *, install: bool) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` while the block runs (in the main thread only)."""
    previous: dict[signal.Signals, Any] = {}
    if install and threading.current_thread() is threading.main_thread():

        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info("worker.stopping", signal=signal.Signals(signum).name)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def startup_lock(url: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock while the block runs, so that workers starting together
    migrate the schema one after the other (alembic is not safe to run twice at once). On
    SQLite, nothing: one process writes at a time anyway.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        yield
        return
    engine = create_engine(parsed, pool_pre_ping=True)
    try:
        with engine.connect() as connection:
            # An arbitrary constant that names this lock ("rg-migrate" as a number).
            connection.execute(text("SELECT pg_advisory_lock(5172014721)"))
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(5172014721)"))
                connection.commit()
    finally:
        engine.dispose()
