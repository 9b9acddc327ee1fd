"""Staff calendars read with change tracking: ``calendarView/delta``, one round per mailbox.

A round starts afresh (``startDateTime``/``endDateTime``, which the delta binds for good) or
from the mailbox's stored delta link, follows ``@odata.nextLink`` to the ``@odata.deltaLink``,
and is stored only once it has reached it, so a round cut short changes nothing: the mailbox
keeps its old link and events, and the calendar error is reported as before.

The window a fresh round binds is aligned to whole days (:func:`sync_window`), from the start of
the day the poll's look-back reaches to two days past its look-ahead, so it holds the sliding
poll window for at least a day; once it no longer does, the mailbox starts afresh. A delta link
Graph no longer accepts (``syncStateNotFound``, ``resyncRequired``: a ``GraphSyncStateError``,
whatever its status) starts that mailbox afresh at once; if that fresh round fails too, its link
is forgotten (the next poll starts afresh) and its stored events are kept until it succeeds.

Every mailbox's current page goes out in one wave of ``$batch`` envelopes (20 mailboxes each,
several envelopes at a time), so no mailbox ever has more than one request in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from remote_guard.collect.batched import send_batches
from remote_guard.collect.calendar_store import (
    CalendarEntry,
    CalendarStore,
    MailboxSync,
    RoundResult,
    slim_event,
)
from remote_guard.graph.client import BatchRequest, GraphClient, error_for
from remote_guard.graph.errors import GraphError, GraphSyncStateError
from remote_guard.graph.models import Event, PayloadError, parse

log = structlog.get_logger(__name__)

DELTA_ENDPOINT = "/users/{id}/calendarView/delta"
# A round longer than this many pages is taken for a loop, not a calendar.
MAX_PAGES_PER_ROUND = 2_000
# How far past the poll's look-ahead a fresh round reaches, so it serves the sliding window for
# at least a day before the mailbox must start afresh.
_SPARE = timedelta(days=2)


def sync_window(
    now: datetime, *, lookback_hours: int, lookahead_days: int
) -> tuple[datetime, datetime]:
    """The window a fresh round binds: midnight (UTC) of the day the look-back reaches, to
    midnight two days after the day the look-ahead reaches."""
    start = _midnight(now - timedelta(hours=lookback_hours))
    end = _midnight(now + timedelta(days=lookahead_days)) + _SPARE
    return start, end


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def covers(window: tuple[datetime, datetime], needed: tuple[datetime, datetime]) -> bool:
    return window[0] <= needed[0] and needed[1] <= window[1]


@dataclass
class _Round:
    """One mailbox's round in progress."""

    mailbox_id: str
    window: tuple[datetime, datetime]
    full: bool
    url: str  # the next page to ask for (a URL fit for a batch item)
    pages: int = 0
    restarted: bool = False  # the stored link was refused and the round started afresh
    changed: dict[str, CalendarEntry] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    delta_link: str | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.delta_link is None and self.error is None


@dataclass
class SyncReport:
    """What a sync did: the mailboxes that could not be brought up to date, with why."""

    errors: dict[str, str] = field(default_factory=dict)
    full: list[str] = field(default_factory=list)  # mailboxes that started afresh
    stale: list[str] = field(default_factory=list)  # stored links Graph refused
    changed_events: int = 0
    removed_events: int = 0


class CalendarSync:
    """Brings the stored calendars of some mailboxes up to date with one delta round each."""

    def __init__(
        self,
        *,
        graph: GraphClient,
        store: CalendarStore,
        pool: Executor | None,
        page_size: int,
        body_links: Callable[[str], list[str]],
    ) -> None:
        """``body_links(text) -> list[str]``: the meeting links found in an event body (kept
        in place of the body; see ``calendar_store.slim_event``)."""
        self._graph = graph
        self._store = store
        self._pool = pool
        self._headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        self._body_links = body_links

    def run(
        self,
        mailbox_ids: list[str],
        *,
        needed: tuple[datetime, datetime],
        fresh_window: tuple[datetime, datetime],
        syncs: dict[str, MailboxSync],
        now: datetime,
    ) -> SyncReport:
        """Run one round for each of ``mailbox_ids`` and store the rounds that finished.

        ``needed`` is the poll's window; a mailbox whose stored window does not hold it starts
        afresh with ``fresh_window``.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the rounds cannot be stored (the poll then fails
                and the next one repeats them from the stored links).
        """
        report = SyncReport()
        rounds: list[_Round] = []
        for mailbox in mailbox_ids:
            sync = syncs.get(mailbox)
            if sync is not None and sync.delta_link and covers(sync.window, needed):
                try:
                    url = self._graph.batch_url(sync.delta_link)
                except GraphError as exc:
                    log.warning("calendar.delta_link_refused", mailbox_id=mailbox, reason=str(exc))
                else:
                    rounds.append(_Round(mailbox, sync.window, full=False, url=url))
                    continue
            rounds.append(self._fresh(mailbox, fresh_window))
        while active := [r for r in rounds if r.active]:
            requests = [
                BatchRequest(id=str(number), url=r.url, headers=self._headers)
                for number, r in enumerate(active)
            ]
            outcome = send_batches(self._graph, requests, self._pool)
            for number, current in enumerate(active):
                failure = outcome.failed.get(str(number))
                if failure is not None:
                    self._failed(current, failure, fresh_window)
                    continue
                answer = outcome.answers.get(str(number))
                if answer is None:
                    current.error = "no answer in the batch"
                elif answer.ok and isinstance(answer.body, dict):
                    self._page(current, answer.body)
                else:
                    error = error_for(
                        answer.status, answer.body, endpoint=DELTA_ENDPOINT, request_id=None
                    )
                    self._failed(current, error, fresh_window)
        finished: list[RoundResult] = []
        stale: list[str] = []
        for current in rounds:
            if current.full:
                report.full.append(current.mailbox_id)
            if current.restarted:
                report.stale.append(current.mailbox_id)
            if current.error is not None:
                report.errors[current.mailbox_id] = current.error
                if current.restarted:
                    stale.append(current.mailbox_id)
                continue
            assert current.delta_link is not None  # noqa: S101 - an inactive round without error
            report.changed_events += len(current.changed)
            report.removed_events += len(current.removed)
            finished.append(
                RoundResult(
                    mailbox_id=current.mailbox_id,
                    window=current.window,
                    full=current.full,
                    delta_link=current.delta_link,
                    changed=current.changed,
                    removed=current.removed,
                )
            )
        self._store.save(finished, stale=stale, now=now)
        return report

    def _fresh(self, mailbox: str, window: tuple[datetime, datetime]) -> _Round:
        url = self._graph.batch_url(
            f"/users/{mailbox}/calendarView/delta",
            {"startDateTime": _iso(window[0]), "endDateTime": _iso(window[1])},
        )
        return _Round(mailbox, window, full=True, url=url)

    def _failed(
        self, current: _Round, error: GraphError, window: tuple[datetime, datetime]
    ) -> None:
        if isinstance(error, GraphSyncStateError) and not current.restarted:
            # The stored link (or the round's next link) is no longer valid: start this mailbox
            # afresh, once; what was read of the refused round is dropped.
            log.info("calendar.resync", mailbox_id=current.mailbox_id, reason=error.reason)
            fresh = self._fresh(current.mailbox_id, window)
            current.window, current.full, current.url = fresh.window, True, fresh.url
            current.changed, current.removed, current.pages = {}, set(), 0
            current.restarted = True
            return
        current.error = error.reason

    def _page(self, current: _Round, body: dict[str, Any]) -> None:
        values = body.get("value")
        if not isinstance(values, list):
            current.error = f"{DELTA_ENDPOINT}: a delta page has no 'value' list"
            return
        for raw in values:
            problem = self._item(current, raw)
            if problem is not None:
                # A round with an item that cannot be read cannot be applied: keep the old
                # state and try again next poll (the same changes come again).
                current.error = f"{DELTA_ENDPOINT}: {problem}"
                return
        current.pages += 1
        delta_link = body.get("@odata.deltaLink")
        next_link = body.get("@odata.nextLink")
        if isinstance(delta_link, str) and delta_link:
            current.delta_link = delta_link
        elif isinstance(next_link, str) and next_link:
            if current.pages >= MAX_PAGES_PER_ROUND:
                current.error = f"{DELTA_ENDPOINT}: more than {MAX_PAGES_PER_ROUND} pages"
                return
            try:
                current.url = self._graph.batch_url(next_link)
            except GraphError as exc:
                current.error = exc.reason
        else:
            current.error = f"{DELTA_ENDPOINT}: a delta page has neither a next nor a delta link"

    def _item(self, current: _Round, raw: object) -> str | None:
        """Take one delta item into the round; the problem if it cannot be read."""
        if not isinstance(raw, dict):
            return "a delta item is not a JSON object"
        if "@removed" in raw:
            event_id = raw.get("id")
            if not isinstance(event_id, str) or not event_id:
                return "a removed item has no id"
            current.changed.pop(event_id, None)
            current.removed.add(event_id)
            return None
        try:
            event = parse(Event, raw, what="calendar event")
        except PayloadError as exc:
            return str(exc)
        body = event.body.content if event.body is not None else None
        slim = slim_event(raw, self._body_links(body or ""))
        try:
            entry = CalendarEntry.from_payload(current.mailbox_id, slim)
        except PayloadError as exc:
            return str(exc)
        current.removed.discard(entry.event_id)
        current.changed[entry.event_id] = entry
        return None
