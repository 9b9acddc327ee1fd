"""What change notifications say about a live meeting, kept and folded into its snapshot.

Two things are kept, per session: pupils' messages in the meeting chat (who and when; no text),
and, with roster events on, who joined and left the call. :func:`apply_overlay` adds them to a
snapshot that lacks them, so rules see them while the meeting is live: when the worker stores
the session's snapshot after a notification, and when a poll re-reads a live session (the poll
reads the chat and attendance only after the meeting, and would otherwise drop what the
notifications said). Once the poll has read the chat or the attendance itself, its data stands
and the overlay adds nothing (a pupil's message posted after that read is still added), so the
poll after the meeting confirms or retires what was found live.

A roster is used as presence only for a call followed from its start (CallStarted seen): Graph
names who joins and leaves, never who was already there, and presence that misses people would
make rules see pupils alone, or one-to-ones, that never were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.cases import hooks as cases_hooks
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import (
    ChatActivity,
    Interval,
    Missing,
    Person,
    PersonKind,
    Presence,
    SessionSnapshot,
)
from remote_guard.poll.service import Poller, Reevaluation, reevaluate_sessions, snapshot_digest
from remote_guard.store.db import transaction
from remote_guard.subscriptions.models import (
    LiveChatMessageRow,
    LiveMeetingRow,
    LiveParticipantRow,
)

log = structlog.get_logger(__name__)

CHAT_SOURCE = "change notifications (each pupil message as it was posted)"
ROSTER_SOURCE = "change notifications (CallRosterUpdate: joins and leaves as they happened)"


def apply_overlay(db: Session, snapshot: SessionSnapshot) -> bool:
    """Add the live chat and roster of ``snapshot``'s session to it, where it lacks them.

    Returns whether the snapshot changed. Reads only the database.
    """
    changed = False
    messages = list(
        db.scalars(
            select(LiveChatMessageRow)
            .where(LiveChatMessageRow.session_id == snapshot.session_id)
            .order_by(LiveChatMessageRow.created_at, LiveChatMessageRow.message_id)
        )
    )
    if messages and Missing.CHAT not in snapshot.missing:
        known = {item.message_id for item in snapshot.chat or []}
        added = [
            ChatActivity(
                message_id=row.message_id,
                created=row.created_at,
                sender_kind="person",
                sender_id=row.sender_id,
            )
            for row in messages
            if row.message_id not in known
        ]
        if added:
            if snapshot.chat is None:
                snapshot.sources["chat"] = CHAT_SOURCE
            snapshot.chat = sorted(
                [*(snapshot.chat or []), *added], key=lambda item: (item.created, item.message_id)
            )
            for row in messages:
                snapshot.people.setdefault(
                    row.sender_id,
                    Person(id=row.sender_id, display_name=row.sender_name, kind=PersonKind.PUPIL),
                )
            changed = True
    from_roster = snapshot.sources.get("presence") == ROSTER_SOURCE
    if (snapshot.presence is None or from_roster) and Missing.PRESENCE not in snapshot.missing:
        stays = list(
            db.scalars(
                select(LiveParticipantRow)
                .where(
                    LiveParticipantRow.session_id == snapshot.session_id,
                    LiveParticipantRow.complete_call.is_(True),
                )
                .order_by(LiveParticipantRow.joined_at, LiveParticipantRow.id)
            )
        )
        if stays:
            presence = presence_of(stays)
            changed = changed or presence != snapshot.presence
            snapshot.presence = presence
            snapshot.sources["presence"] = ROSTER_SOURCE
            for stay in stays:
                snapshot.people.setdefault(stay.person_id, person_of(stay))
    return changed


def presence_of(stays: Sequence[LiveParticipantRow]) -> list[Presence]:
    """Each person's stays as presence from roster events (an open stay: still in the call)."""
    intervals: dict[str, list[Interval]] = {}
    for row in stays:
        intervals.setdefault(row.person_id, []).append(
            Interval(start=row.joined_at, end=row.left_at)
        )
    return [
        Presence(person_id=person_id, intervals=spans, source="roster_event")
        for person_id, spans in sorted(intervals.items())
    ]


def person_of(row: LiveParticipantRow) -> Person:
    try:
        kind = PersonKind(row.kind)
    except ValueError:
        kind = PersonKind.UNKNOWN
    return Person(
        id=row.person_id, display_name=row.display_name, kind=kind, tenant_id=row.tenant_id
    )


class LiveOverlay:
    """The poller's hook (``Poller.live_overlay``): complete a live snapshot it is about to store
    with what notifications said. Never raises: the snapshot is stored as it is if the live
    tables cannot be read."""

    def __init__(self, db: sessionmaker[Session]) -> None:
        self._db = db

    def __call__(self, snapshot: SessionSnapshot) -> None:
        try:
            with self._db() as session:
                apply_overlay(session, snapshot)
        except Exception:
            log.exception("notifications.overlay_failed", session_id=snapshot.session_id)


def latest_snapshot(db: Session, session_id: str) -> SessionSnapshot | None:
    row = db.get(SessionRow, session_id)
    if row is None or row.latest_snapshot_id is None:
        return None
    stored = db.get(SnapshotRow, row.latest_snapshot_id)
    return SessionSnapshot.model_validate(stored.data) if stored is not None else None


def store_snapshot(db: Session, snapshot: SessionSnapshot, *, read_later: bool = False) -> bool:
    """Store ``snapshot`` as its session's latest, if it says something new (the session row,
    its times and whether it was read in full stay as the poll left them). ``read_later``: also
    when only its reading time moved on, for a live roster whose open stays end at that time
    (the digest leaves the reading time out, and the rules judge the stored snapshot)."""
    row = db.get(SessionRow, snapshot.session_id)
    if row is None:
        return False
    digest = snapshot_digest(snapshot)
    latest = db.get(SnapshotRow, row.latest_snapshot_id) if row.latest_snapshot_id else None
    read_since = latest is not None and snapshot.collected_at > latest.collected_at
    if latest is not None and latest.digest == digest and not (read_later and read_since):
        return False
    stored = SnapshotRow(
        session_id=snapshot.session_id,
        collected_at=snapshot.collected_at,
        poll_run_id=None,
        digest=digest,
        data=snapshot.model_dump(mode="json"),
    )
    db.add(stored)
    db.flush()
    row.latest_snapshot_id = stored.id
    return True


@dataclass(frozen=True)
class Joined:
    participant_id: str
    person: Person
    at: datetime


@dataclass(frozen=True)
class Exited:
    participant_id: str
    person_id: str | None
    at: datetime


class LiveState:
    """Records what notifications say about live sessions and re-evaluates them at once."""

    def __init__(self, poller: Poller) -> None:
        self._poller = poller

    @property
    def db(self) -> sessionmaker[Session]:
        return self._poller.db

    def snapshot(self, session_id: str) -> SessionSnapshot | None:
        with self.db() as db:
            return latest_snapshot(db, session_id)

    def _meeting(self, db: Session, session_id: str, now: datetime) -> LiveMeetingRow:
        row = db.get(LiveMeetingRow, session_id)
        if row is None:
            row = LiveMeetingRow(session_id=session_id, roster_complete=False, updated_at=now)
            db.add(row)
        row.updated_at = now
        return row

    # --- the chat -------------------------------------------------------------------------------

    def record_chat_message(
        self,
        *,
        session_id: str,
        message_id: str,
        thread_id: str,
        sender: Person,
        created: datetime,
        now: datetime,
    ) -> bool:
        """Keep a pupil's message (once). Returns whether it was new."""
        with transaction(self.db) as db:
            if db.get(LiveChatMessageRow, (session_id, message_id)) is not None:
                return False
            if db.get(SessionRow, session_id) is None:
                return False
            db.add(
                LiveChatMessageRow(
                    session_id=session_id,
                    message_id=message_id,
                    thread_id=thread_id,
                    sender_id=sender.id,
                    sender_name=sender.display_name,
                    created_at=created,
                    received_at=now,
                )
            )
            self._meeting(db, session_id, now)
            audit.record(
                db,
                "live.chat_message",
                object_type="session",
                object_id=session_id,
                detail={"message_id": message_id, "sender_id": sender.id, "posted_at": created},
                at=now,
            )
        return True

    # --- the roster ---------------------------------------------------------------------------

    def call_started(
        self, *, session_id: str, join_url: str | None, at: datetime, now: datetime
    ) -> None:
        """A call of the meeting started: from now on its roster is complete."""
        with transaction(self.db) as db:
            if db.get(SessionRow, session_id) is None:
                return
            row = self._meeting(db, session_id, now)
            # Stays from before this call ended with it; joins of this call that arrived before
            # its CallStarted (notifications may come out of order) belong to it.
            for stay in db.scalars(
                select(LiveParticipantRow).where(LiveParticipantRow.session_id == session_id)
            ):
                if stay.joined_at >= at:
                    stay.complete_call = True
                elif stay.left_at is None:
                    stay.left_at = at
            row.join_url = join_url
            row.call_started_at = at
            row.call_ended_at = None
            row.roster_complete = True
            audit.record(
                db,
                "live.call_started",
                object_type="session",
                object_id=session_id,
                detail={"at": at},
                at=now,
            )

    def call_ended(self, *, session_id: str, at: datetime, now: datetime) -> None:
        """The meeting's call ended: everyone still in it left at ``at``."""
        with transaction(self.db) as db:
            if db.get(SessionRow, session_id) is None:
                return
            row = self._meeting(db, session_id, now)
            closed = self._close_open(db, session_id, at)
            row.call_ended_at = at
            # Until the next CallStarted, joins and leaves make no complete roster.
            row.roster_complete = False
            audit.record(
                db,
                "live.call_ended",
                object_type="session",
                object_id=session_id,
                detail={"at": at, "still_in": closed},
                at=now,
            )

    @staticmethod
    def _close_open(db: Session, session_id: str, at: datetime) -> int:
        count = 0
        for stay in db.scalars(
            select(LiveParticipantRow).where(
                LiveParticipantRow.session_id == session_id, LiveParticipantRow.left_at.is_(None)
            )
        ):
            stay.left_at = max(at, stay.joined_at)
            count += 1
        return count

    def roster_update(
        self,
        *,
        session_id: str,
        join_url: str | None,
        joined: Sequence[Joined],
        exited: Sequence[Exited],
        now: datetime,
    ) -> bool:
        """People joined and left the call. Returns whether the roster is complete (followed
        since the call started). A repeated notification changes nothing."""
        with transaction(self.db) as db:
            if db.get(SessionRow, session_id) is None:
                return False
            meeting = self._meeting(db, session_id, now)
            meeting.join_url = meeting.join_url or join_url
            open_stays = list(
                db.scalars(
                    select(LiveParticipantRow).where(
                        LiveParticipantRow.session_id == session_id,
                        LiveParticipantRow.left_at.is_(None),
                    )
                )
            )
            by_participant = {stay.participant_id: stay for stay in open_stays}
            # Leaves that arrived before their joins (out of order): a stay of no length yet.
            early = {
                stay.participant_id: stay
                for stay in db.scalars(
                    select(LiveParticipantRow).where(
                        LiveParticipantRow.session_id == session_id,
                        LiveParticipantRow.left_at.is_not(None),
                        LiveParticipantRow.left_at == LiveParticipantRow.joined_at,
                    )
                )
            }
            added: list[str] = []
            for item in joined:
                if item.participant_id in by_participant:
                    continue
                placeholder = early.get(item.participant_id)
                if (
                    placeholder is not None
                    and placeholder.left_at is not None
                    and placeholder.left_at >= item.at
                ):
                    placeholder.joined_at = item.at
                    placeholder.person_id = item.person.id
                    placeholder.kind = item.person.kind.value
                    placeholder.display_name = item.person.display_name
                    placeholder.tenant_id = item.person.tenant_id
                    added.append(item.person.id)
                    continue
                stay = LiveParticipantRow(
                    session_id=session_id,
                    participant_id=item.participant_id,
                    person_id=item.person.id,
                    kind=item.person.kind.value,
                    display_name=item.person.display_name,
                    tenant_id=item.person.tenant_id,
                    joined_at=item.at,
                    left_at=None,
                    complete_call=meeting.roster_complete,
                )
                db.add(stay)
                by_participant[item.participant_id] = stay
                added.append(item.person.id)
            removed: list[str] = []
            for leaving in exited:
                gone = by_participant.pop(leaving.participant_id, None)
                if gone is None and leaving.person_id is not None:
                    # A participant id not seen joining: the same person's open stay.
                    for key, candidate in list(by_participant.items()):
                        if candidate.person_id == leaving.person_id:
                            gone = by_participant.pop(key)
                            break
                if gone is None:
                    # Not seen joining (yet): keep the leave, for a join that arrives late.
                    if leaving.person_id is not None:
                        db.add(
                            LiveParticipantRow(
                                session_id=session_id,
                                participant_id=leaving.participant_id,
                                person_id=leaving.person_id,
                                kind=PersonKind.UNKNOWN.value,
                                display_name="",
                                tenant_id=None,
                                joined_at=leaving.at,
                                left_at=leaving.at,
                                complete_call=meeting.roster_complete,
                            )
                        )
                    continue
                gone.left_at = max(leaving.at, gone.joined_at)
                removed.append(gone.person_id)
            audit.record(
                db,
                "live.roster_update",
                object_type="session",
                object_id=session_id,
                detail={
                    "joined": added,
                    "exited": removed,
                    "roster_complete": meeting.roster_complete,
                },
                at=now,
            )
            return meeting.roster_complete

    def present(self, session_id: str) -> tuple[bool, list[Person]]:
        """(whether the roster is complete, who is in the call now)."""
        with self.db() as db:
            meeting = db.get(LiveMeetingRow, session_id)
            stays = db.scalars(
                select(LiveParticipantRow).where(
                    LiveParticipantRow.session_id == session_id,
                    LiveParticipantRow.left_at.is_(None),
                )
            ).all()
            complete = meeting is not None and meeting.roster_complete
            people = {stay.person_id: person_of(stay) for stay in stays}
        return complete, list(people.values())

    # --- storing and judging ------------------------------------------------------------------

    def refresh(self, session_id: str, *, now: datetime) -> Reevaluation | None:
        """Fold the live data into the session's latest snapshot, store it if it changed, and
        evaluate the session again with the registers as they are now (no Graph call).

        Returns None when the session has no stored snapshot (it is found by the next poll).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be read or written.
            AuditError: the audit trail cannot be written.
        """
        with transaction(self.db) as db:
            snapshot = latest_snapshot(db, session_id)
            if snapshot is None:
                return None
            changed = apply_overlay(db, snapshot)
            from_roster = snapshot.sources.get("presence") == ROSTER_SOURCE
            if from_roster:
                # Stays still open end "now" for the rules: move the reading time on.
                snapshot.collected_at = max(snapshot.collected_at, now)
                changed = True
            if changed:
                store_snapshot(db, snapshot, read_later=from_roster)
        result = reevaluate_sessions(self._poller, [session_id])
        # The DSL's review queue shows the session at once, as after a poll.
        cases_hooks.keep_cases(self._poller)
        return result

    def touched_since(self, moment: datetime) -> list[str]:
        """Sessions whose live data changed since ``moment``."""
        with self.db() as db:
            return list(
                db.scalars(
                    select(LiveMeetingRow.session_id).where(LiveMeetingRow.updated_at >= moment)
                )
            )
