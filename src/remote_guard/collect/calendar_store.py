"""The staff calendars as change tracking left them: delta links and events, stored per mailbox.

Graph's ``calendarView/delta`` sends only what changed since the last round, so the events it
delivered earlier must be kept: in the ``calendar_events`` table (``collect/models.py``), with
a copy in memory so that a poll does not read and parse every stored event again. A copy is
checked against the mailbox's ``revision`` each time it is used, so a change written by another
process is never missed.

Only what the collector reads of an event is kept. Its body is reduced to the meeting links
found in it (:func:`slim_event`): the links are all the collector looks for there, and an
invitation's text has no business in the database.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.collect.models import CalendarEventRow, CalendarSyncRow
from remote_guard.graph.models import Event, PayloadError, parse
from remote_guard.store.db import transaction

# The event properties the collector reads; everything else Graph sends is dropped.
KEPT_PROPERTIES = (
    "id",
    "iCalUId",
    "subject",
    "body",
    "start",
    "end",
    "isAllDay",
    "organizer",
    "attendees",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "onlineMeeting",
    "onlineMeetingUrl",
    "location",
    "isCancelled",
    "isOrganizer",
    "type",
    "seriesMasterId",
    "originalStart",
    "createdDateTime",
    "lastModifiedDateTime",
)
# Properties that change when an event is saved without anything the collector reads changing.
_VOLATILE = frozenset({"lastModifiedDateTime"})


def slim_event(raw: Mapping[str, Any], body_links: list[str]) -> dict[str, Any]:
    """The part of an event payload worth keeping: :data:`KEPT_PROPERTIES`, with the body
    replaced by ``body_links`` (the meeting links found in it, see ``collector.foreign_links``)
    as plain text. Reading the links again from that text gives the same links."""
    slim = {name: raw[name] for name in KEPT_PROPERTIES if name in raw}
    if "body" in slim:
        slim["body"] = {"contentType": "text", "content": " ".join(body_links)}
    return slim


def event_digest(slim: Mapping[str, Any]) -> str:
    """A digest of what the collector can see of an event (saves that change nothing else
    give the same digest)."""
    data = {name: value for name, value in slim.items() if name not in _VOLATILE}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class CalendarEntry:
    """One stored event of one mailbox; ``event`` is parsed on first use."""

    mailbox_id: str
    event_id: str
    digest: str
    data: dict[str, Any]
    start: datetime | None
    end: datetime | None
    _event: Event | None = field(default=None, repr=False)

    @property
    def event(self) -> Event:
        """The stored payload as an :class:`Event`.

        Raises:
            PayloadError: the stored payload no longer parses (it did when it was stored).
        """
        if self._event is None:
            self._event = parse(Event, self.data, what="stored calendar event")
        return self._event

    def overlaps(self, start: datetime, end: datetime) -> bool:
        """Whether the event falls in ``[start, end)``, as ``calendarView`` would return it."""
        return (
            self.start is not None
            and self.end is not None
            and self.start < end
            and self.end > start
        )

    @classmethod
    def from_payload(cls, mailbox_id: str, slim: dict[str, Any]) -> CalendarEntry:
        """An entry for a slimmed payload.

        Raises:
            PayloadError: the payload is not an event.
        """
        event = parse(Event, slim, what="calendar event")
        return cls(
            mailbox_id=mailbox_id,
            event_id=event.id,
            digest=event_digest(slim),
            data=slim,
            start=event.start_utc,
            end=event.end_utc,
            _event=event,
        )


def _order(entry: CalendarEntry) -> tuple[bool, datetime | None, str]:
    # calendarView's order: by start, then id.
    return (entry.start is None, entry.start, entry.event_id)


@dataclass(frozen=True)
class MailboxSync:
    """Where change tracking of one mailbox stands."""

    mailbox_id: str
    window: tuple[datetime, datetime]
    delta_link: str | None
    revision: int


@dataclass
class RoundResult:
    """What one delta round of one mailbox brought, to be stored.

    ``full``: the round started afresh, so ``changed`` is the whole calendar in ``window`` and
    replaces what was stored. Otherwise ``changed`` and ``removed`` apply to it.
    """

    mailbox_id: str
    window: tuple[datetime, datetime]
    full: bool
    delta_link: str
    changed: dict[str, CalendarEntry] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)


class CalendarStore:
    """The stored delta links and events, with a copy of the events in memory.

    Safe to share between threads (one lock guards the copy in memory).
    """

    def __init__(self, db: sessionmaker[Session]) -> None:
        self._db = db
        self._lock = threading.Lock()
        # mailbox -> (the revision the copy was read at, its entries by event id)
        self._memory: dict[str, tuple[int, dict[str, CalendarEntry]]] = {}

    def syncs(self, mailbox_ids: Collection[str]) -> dict[str, MailboxSync]:
        """Where each mailbox's change tracking stands (mailboxes never synced are absent).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be read.
        """
        wanted = set(mailbox_ids)
        with self._db() as session:
            rows = session.execute(
                select(
                    CalendarSyncRow.mailbox_id,
                    CalendarSyncRow.window_start,
                    CalendarSyncRow.window_end,
                    CalendarSyncRow.delta_link,
                    CalendarSyncRow.revision,
                )
            ).all()
        return {
            mailbox: MailboxSync(mailbox, (start, end), link, revision)
            for mailbox, start, end, link, revision in rows
            if mailbox in wanted
        }

    def events(
        self, mailbox_ids: Iterable[str], syncs: Mapping[str, MailboxSync] | None = None
    ) -> dict[str, list[CalendarEntry]]:
        """Each mailbox's stored events in ``calendarView`` order (by start, then id).

        ``syncs`` (as :meth:`syncs` gave them) saves reading the revisions again.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be read.
        """
        mailboxes = list(mailbox_ids)
        revisions = syncs if syncs is not None else self.syncs(mailboxes)
        with self._lock:
            stale = [
                mailbox
                for mailbox in mailboxes
                if mailbox in revisions
                and self._memory.get(mailbox, (-1, {}))[0] != revisions[mailbox].revision
            ]
        if stale:
            self._reload(stale, {mailbox: revisions[mailbox].revision for mailbox in stale})
        with self._lock:
            return {
                mailbox: sorted(self._memory.get(mailbox, (0, {}))[1].values(), key=_order)
                for mailbox in mailboxes
            }

    def _reload(self, mailboxes: list[str], revisions: dict[str, int]) -> None:
        loaded: dict[str, dict[str, CalendarEntry]] = {mailbox: {} for mailbox in mailboxes}
        with self._db() as session:
            # Chunked: a database limits how many values one IN (...) may hold.
            for index in range(0, len(mailboxes), 500):
                rows = session.scalars(
                    select(CalendarEventRow).where(
                        CalendarEventRow.mailbox_id.in_(mailboxes[index : index + 500])
                    )
                )
                for row in rows:
                    loaded[row.mailbox_id][row.event_id] = CalendarEntry(
                        mailbox_id=row.mailbox_id,
                        event_id=row.event_id,
                        digest=row.digest,
                        data=row.data,
                        start=row.start,
                        end=row.end,
                    )
        with self._lock:
            for mailbox, entries in loaded.items():
                self._memory[mailbox] = (revisions[mailbox], entries)

    def save(
        self,
        results: list[RoundResult],
        *,
        stale: Collection[str] = (),
        now: datetime,
    ) -> None:
        """Store finished rounds in one transaction; forget the delta links of ``stale``
        mailboxes (Graph refused them and the fresh round did not finish), keeping their events.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be written (nothing is stored,
                and the copy in memory is left as it was).
        """
        if not results and not stale:
            return
        updated: dict[str, tuple[int, dict[str, CalendarEntry]] | None] = {}
        # Most rounds of a poll bring nothing: only their link moves, written in one go.
        quiet = [r for r in results if not (r.full or r.changed or r.removed)]
        busy = [r for r in results if r.full or r.changed or r.removed]
        with transaction(self._db) as session:
            table = cast(Table, CalendarSyncRow.__table__)
            if quiet:
                session.execute(
                    update(table)
                    .where(table.c.mailbox_id == bindparam("mailbox"))
                    .values(delta_link=bindparam("link"), synced_at=bindparam("at")),
                    [{"mailbox": r.mailbox_id, "link": r.delta_link, "at": now} for r in quiet],
                )
            if stale:
                session.execute(
                    update(table)
                    .where(table.c.mailbox_id == bindparam("mailbox"))
                    .values(delta_link=None),
                    [{"mailbox": mailbox} for mailbox in stale],
                )
            for result in busy:
                row = session.get(CalendarSyncRow, result.mailbox_id)
                if row is None:
                    row = CalendarSyncRow(
                        mailbox_id=result.mailbox_id,
                        window_start=result.window[0],
                        window_end=result.window[1],
                        revision=0,
                    )
                    session.add(row)
                before = row.revision or 0
                if self._apply(session, result):
                    row.revision = before + 1
                row.window_start, row.window_end = result.window
                row.delta_link = result.delta_link
                row.synced_at = now
                if result.full:
                    row.full_synced_at = now
                updated[result.mailbox_id] = self._merged(result, before, row.revision)
        with self._lock:
            for mailbox, copy in updated.items():
                if copy is None:
                    self._memory.pop(mailbox, None)
                else:
                    self._memory[mailbox] = copy

    @staticmethod
    def _apply(session: Session, result: RoundResult) -> bool:
        """Write one round's events; True if anything stored changed."""
        mailbox = result.mailbox_id
        if result.full:
            session.execute(delete(CalendarEventRow).where(CalendarEventRow.mailbox_id == mailbox))
            session.flush()
            existing: dict[str, str] = {}
        else:
            touched = sorted(set(result.changed) | result.removed)
            existing = {}
            for index in range(0, len(touched), 500):
                rows = session.execute(
                    select(CalendarEventRow.event_id, CalendarEventRow.digest).where(
                        CalendarEventRow.mailbox_id == mailbox,
                        CalendarEventRow.event_id.in_(touched[index : index + 500]),
                    )
                ).all()
                existing.update((event_id, digest) for event_id, digest in rows)
        changed = result.full
        for event_id in sorted(result.removed):
            if event_id in existing:
                session.execute(
                    delete(CalendarEventRow).where(
                        CalendarEventRow.mailbox_id == mailbox,
                        CalendarEventRow.event_id == event_id,
                    )
                )
                changed = True
        for event_id, entry in result.changed.items():
            if existing.get(event_id) == entry.digest:
                continue
            values = {
                "start": entry.start,
                "end": entry.end,
                "digest": entry.digest,
                "data": entry.data,
            }
            if event_id in existing:
                row = session.get(CalendarEventRow, (mailbox, event_id))
                if row is not None:
                    for name, value in values.items():
                        setattr(row, name, value)
            else:
                session.add(CalendarEventRow(mailbox_id=mailbox, event_id=event_id, **values))
            changed = True
        return changed

    def _merged(
        self, result: RoundResult, before: int, after: int
    ) -> tuple[int, dict[str, CalendarEntry]] | None:
        """The copy in memory once ``result`` is applied: None when the copy was not of the
        revision the round was applied to (it is read again from the database when next used)."""
        if result.full:
            return after, dict(result.changed)
        with self._lock:
            revision, entries = self._memory.get(result.mailbox_id, (-1, {}))
        if revision != before:
            return None
        merged = dict(entries)
        for event_id in result.removed:
            merged.pop(event_id, None)
        merged.update(result.changed)
        return after, merged


def parse_stored(entries: Iterable[CalendarEntry]) -> tuple[list[Event], list[str]]:
    """The events of ``entries`` and, for any that no longer parse, why."""
    events: list[Event] = []
    problems: list[str] = []
    for entry in entries:
        try:
            events.append(entry.event)
        except PayloadError as exc:
            problems.append(f"event {entry.event_id}: {exc}")
    return events, problems
