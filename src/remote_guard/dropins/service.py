"""Scheduling drop-ins, putting them in the SLT member's calendar, and recording what was seen.

Every function that changes a drop-in works in the caller's transaction and writes its audit
entry there, so a change and its record commit together. Who acted is passed in (``by``, an
``audit.Actor``). The Graph call is made by :func:`put_in_calendar` between two transactions,
so no database lock is held while Microsoft 365 answers; a crash between the call and the
second write is harmless because the retry sends the same ``transactionId``.

Statuses move scheduled -> done (visited) or missed (not able to join), or scheduled ->
cancelled; an outcome already recorded may be corrected (done <-> missed), and the audit trail
keeps the earlier one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.cases import service as cases
from remote_guard.cases.models import CaseStatus
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import SessionSnapshot
from remote_guard.dropins.calendar import (
    CalendarError,
    DropInEvent,
    create_event,
    transaction_id_for,
)
from remote_guard.dropins.models import (
    NOTES_MAX_CHARS,
    OUTCOME_LABELS,
    DropInOutcome,
    DropInRow,
    DropInStatus,
)
from remote_guard.graph.client import GraphClient
from remote_guard.store.db import transaction

# A drop-in lasts at least this long and at most this long (a school day).
MIN_MINUTES = 5
MAX_MINUTES = 8 * 60


class DropInError(ValueError):
    """A change to a drop-in that is not allowed; ``str()`` is safe to show to the user."""


@dataclass(frozen=True)
class CalendarResult:
    """What happened when the drop-in was put in the calendar."""

    dropin: DropInRow
    added: bool  # the event is in the calendar (now or already before)
    error: str | None  # the sentence to show when it is not


def _audited(row: DropInRow) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "slt_user_id": row.slt_user_id,
        "starts_at": row.starts_at,
        "ends_at": row.ends_at,
        "status": row.status,
        "transaction_id": row.transaction_id,
    }


def latest_snapshot(db: Session, session: SessionRow) -> SessionSnapshot | None:
    """The session's latest stored snapshot, or None if it has none."""
    if session.latest_snapshot_id is None:
        return None
    row = db.get(SnapshotRow, session.latest_snapshot_id)
    return SessionSnapshot.model_validate(row.data) if row is not None else None


def session_times(session: SessionRow) -> tuple[datetime, datetime] | None:
    """The session's start and end as stored, or None if either is unknown."""
    if session.scheduled_start is None or session.scheduled_end is None:
        return None
    return session.scheduled_start, session.scheduled_end


def schedule(
    db: Session,
    *,
    session: SessionRow,
    slt_user_id: str,
    starts_at: datetime | None,
    minutes: int | None,
    by: audit.Actor,
    now: datetime,
) -> DropInRow:
    """A drop-in into ``session`` by ``slt_user_id``: the whole session, or ``minutes`` from
    ``starts_at``. The same SLT member scheduling the same visit again (a form sent twice) gets
    the drop-in already scheduled, never a second one.

    Raises:
        DropInError: the session has ended or has no times, or the chosen time is outside it or
            not between MIN_MINUTES and MAX_MINUTES long.
        AuditError: the audit trail cannot be written.
    """
    times = session_times(session)
    if times is None:
        raise DropInError("This session has no start or end time, so a drop-in cannot be timed.")
    session_start, session_end = times
    if session_end <= now:
        raise DropInError("This session has already ended.")
    if starts_at is None and minutes is None:
        start, end = session_start, session_end
    else:
        start = starts_at or session_start
        length = (
            minutes if minutes is not None else int((session_end - start).total_seconds() // 60)
        )
        if not MIN_MINUTES <= length <= MAX_MINUTES:
            raise DropInError(
                f"A drop-in lasts between {MIN_MINUTES} minutes and {MAX_MINUTES // 60} hours."
            )
        end = start + timedelta(minutes=length)
        if start < session_start or start >= session_end:
            raise DropInError("The drop-in must start while the session is on.")
    existing = db.scalars(
        select(DropInRow).where(
            DropInRow.session_id == session.id,
            DropInRow.slt_user_id == slt_user_id,
            DropInRow.status == DropInStatus.SCHEDULED.value,
            DropInRow.starts_at == start,
            DropInRow.ends_at == end,
        )
    ).first()
    if existing is not None:
        return existing
    dropin_id = str(uuid.uuid4())
    row = DropInRow(
        id=dropin_id,
        session_id=session.id,
        school=session.school,
        slt_user_id=slt_user_id,
        starts_at=start,
        ends_at=end,
        scheduled_at=now,
        status=DropInStatus.SCHEDULED.value,
        transaction_id=transaction_id_for(dropin_id),
        updated_at=now,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        "dropin.scheduled",
        object_type="dropin",
        object_id=row.id,
        after=_audited(row),
        actor=by,
        at=now,
    )
    return row


def put_in_calendar(
    factory: sessionmaker[Session],
    graph: GraphClient,
    *,
    dropin_id: str,
    teacher_name: Callable[[SessionRow, SessionSnapshot | None], str],
    timezone: str,
    by: audit.Actor,
    now: datetime,
) -> CalendarResult:
    """Create the drop-in's event in the SLT member's own calendar (``POST /users/{id}/events``
    with the drop-in's ``transactionId``) and record the event id, or why it failed. A drop-in
    already in the calendar is left as it is.

    Raises:
        DropInError: no such drop-in, or it is no longer scheduled.
        AuditError: the audit trail cannot be written.
    """
    with factory() as db:
        row = db.get(DropInRow, dropin_id)
        if row is None:
            raise DropInError("There is no such drop-in.")
        if row.graph_event_id is not None:
            return CalendarResult(row, added=True, error=None)
        if row.status != DropInStatus.SCHEDULED.value:
            raise DropInError("Only a scheduled drop-in can be put in the calendar.")
        session = db.get(SessionRow, row.session_id)
        if session is None:
            raise DropInError("The session of this drop-in is no longer stored.")
        snapshot = latest_snapshot(db, session)
        event = DropInEvent(
            slt_user_id=row.slt_user_id,
            transaction_id=row.transaction_id,
            session_subject=session.subject or "",
            teacher_name=teacher_name(session, snapshot),
            join_url=session.join_url,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            timezone=timezone,
        )
    try:
        event_id: str | None = create_event(graph, event)
        problem: CalendarError | None = None
    except CalendarError as exc:
        event_id, problem = None, exc
    with transaction(factory) as db:
        row = db.get(DropInRow, dropin_id)
        if row is None:
            raise DropInError("There is no such drop-in.")
        row.calendar_attempted_at = now
        row.updated_at = now
        if event_id is not None:
            row.graph_event_id = event_id
            row.calendar_error = None
            audit.record(
                db,
                "dropin.added_to_calendar",
                object_type="dropin",
                object_id=row.id,
                after={"graph_event_id": event_id},
                detail={"transaction_id": row.transaction_id},
                actor=by,
                at=now,
            )
            return CalendarResult(row, added=True, error=None)
        assert problem is not None  # noqa: S101 - one of the two is always set above
        row.calendar_error = str(problem)
        audit.record(
            db,
            "dropin.calendar_failed",
            object_type="dropin",
            object_id=row.id,
            detail={"status": problem.status, "reason": problem.reason},
            actor=by,
            at=now,
        )
        return CalendarResult(row, added=False, error=str(problem))


def record_outcome(
    db: Session,
    row: DropInRow,
    *,
    outcome: DropInOutcome | str,
    notes: str | None,
    by: audit.Actor,
    now: datetime,
) -> DropInRow:
    """Record what the SLT member saw. A concern is passed to the DSL at once: the session's
    case is opened (or reopened if closed) and the notes are added to it.

    Raises:
        DropInError: the outcome is unknown, the drop-in was cancelled or has not started yet,
            a concern is raised without notes, or the notes are too long.
        cases.CaseError: the case could not be opened (the session is no longer stored).
        AuditError: the audit trail cannot be written.
    """
    try:
        chosen = DropInOutcome(outcome)
    except ValueError:
        raise DropInError(
            "Choose what happened: visited with no concern, visited with a "
            "concern, or not able to join."
        ) from None
    if row.status == DropInStatus.CANCELLED.value:
        raise DropInError("This drop-in was cancelled.")
    if now < row.starts_at:
        raise DropInError("The drop-in has not started yet; record what you saw afterwards.")
    text = (notes or "").strip()
    if len(text) > NOTES_MAX_CHARS:
        raise DropInError(f"Notes can be at most {NOTES_MAX_CHARS:,} characters.")
    if chosen is DropInOutcome.CONCERN_RAISED and not text:
        raise DropInError("Say what the concern is, so the DSL can act on it.")
    before = {"status": row.status, "outcome": row.outcome, "case_id": row.case_id}
    row.status = (
        DropInStatus.MISSED.value
        if chosen is DropInOutcome.NOT_ABLE_TO_JOIN
        else DropInStatus.DONE.value
    )
    row.outcome = chosen.value
    row.notes = text or None
    row.outcome_recorded_at = now
    row.outcome_recorded_by = by.id
    row.updated_at = now
    if chosen is DropInOutcome.CONCERN_RAISED:
        case = cases.open_or_get_case(db, row.session_id, now=now, by=by)
        if case.status == CaseStatus.CLOSED.value:
            cases.set_status(
                db,
                case,
                CaseStatus.IN_REVIEW,
                by=by,
                now=now,
                note="Reopened: an SLT monitoring drop-in raised a concern.",
            )
        cases.add_note(
            db,
            case,
            text=f"SLT monitoring drop-in ({OUTCOME_LABELS[chosen]}): {text}",
            by=by,
            now=now,
        )
        row.case_id = case.id
    db.flush()
    audit.record(
        db,
        "dropin.outcome_recorded",
        object_type="dropin",
        object_id=row.id,
        before=before,
        after={"status": row.status, "outcome": row.outcome, "case_id": row.case_id},
        detail={"notes_chars": len(text)},
        actor=by,
        at=now,
    )
    return row


def cancel(db: Session, row: DropInRow, *, by: audit.Actor, now: datetime) -> DropInRow:
    """Cancel a scheduled drop-in (its calendar event stays: the SLT member deletes it in
    Outlook, since remote_guard has no permission to delete mail items).

    Raises:
        DropInError: the drop-in is not scheduled.
        AuditError: the audit trail cannot be written.
    """
    if row.status != DropInStatus.SCHEDULED.value:
        raise DropInError("Only a scheduled drop-in can be cancelled.")
    row.status = DropInStatus.CANCELLED.value
    row.updated_at = now
    audit.record(
        db,
        "dropin.cancelled",
        object_type="dropin",
        object_id=row.id,
        before={"status": DropInStatus.SCHEDULED.value},
        after={"status": row.status},
        actor=by,
        at=now,
    )
    return row


def get(db: Session, dropin_id: str) -> DropInRow | None:
    return db.get(DropInRow, dropin_id)


def list_dropins(
    db: Session,
    *,
    slt_user_id: str | None = None,
    session_ids: list[str] | None = None,
    since: datetime | None = None,
) -> list[DropInRow]:
    """Drop-ins, newest visit first, limited to one SLT member, some sessions or a time."""
    query = select(DropInRow)
    if slt_user_id is not None:
        query = query.where(DropInRow.slt_user_id == slt_user_id)
    if session_ids is not None:
        query = query.where(DropInRow.session_id.in_(session_ids))
    if since is not None:
        query = query.where(DropInRow.starts_at >= since)
    return list(db.scalars(query.order_by(DropInRow.starts_at.desc(), DropInRow.id)))
