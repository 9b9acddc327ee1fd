"""Opening cases, moving them through review, assigning them, noting them, and the DSL's queue.

Every function works in the caller's transaction and writes its audit entries there, so a
change and its record commit together. Who acted is passed in (``by``: an ``audit.Actor``);
the web app passes ``web.audit_log.actor_for(user)``, the poller ``audit.SYSTEM``.

Statuses move new -> in_review -> closed; closed -> in_review reopens. Closing needs a
resolution; reopening clears it (the audit trail keeps the old one).

Other parts of the app call::

    case = open_or_get_case(db, session_id, now=now, by=actor)
    add_note(db, case, text=..., kind=NoteKind.CONTEXT, by=actor, now=now)  # a teacher's context
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, case, func, literal, or_, select
from sqlalchemy.orm import Session

from remote_guard import audit
from remote_guard.cases.models import (
    NOTE_MAX_CHARS,
    CaseNoteRow,
    CaseRow,
    CaseStatus,
    NoteKind,
    Resolution,
)
from remote_guard.collect.models import SessionRow
from remote_guard.findings.models import FindingRow
from remote_guard.rules.base import OPEN_STATUSES, Severity

OPEN_FINDING_STATUSES = tuple(sorted(status.value for status in OPEN_STATUSES))

# The moves a case may make; anything else is refused.
TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    CaseStatus.NEW: frozenset({CaseStatus.IN_REVIEW}),
    CaseStatus.IN_REVIEW: frozenset({CaseStatus.CLOSED}),
    CaseStatus.CLOSED: frozenset({CaseStatus.IN_REVIEW}),
}

STATUS_LABELS = {
    CaseStatus.NEW: "New",
    CaseStatus.IN_REVIEW: "In review",
    CaseStatus.CLOSED: "Closed",
}

RESOLUTION_LABELS = {
    Resolution.NO_CONCERN: "No concern",
    Resolution.CONCERN_RECORDED: "Concern recorded",
    Resolution.REFERRED_ON: "Referred on",
    Resolution.FALSE_POSITIVE: "False positive",
}

NOTE_KIND_LABELS = {
    NoteKind.NOTE: "Note",
    NoteKind.CONTEXT: "Teacher's context",
    NoteKind.STATUS_CHANGE: "Status change",
}

SEVERITY_ORDER = (Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO)


_E = TypeVar("_E", CaseStatus, Resolution, NoteKind)


class CaseError(ValueError):
    """A change to a case that is not allowed; ``str()`` is safe to show to the user."""


# --- opening ------------------------------------------------------------------------------------


def open_or_get_case(
    db: Session, session_id: str, *, now: datetime, by: audit.Actor | None = None
) -> CaseRow:
    """The case of ``session_id``, opened (status new) if it has none yet.

    Raises:
        CaseError: no session ``session_id`` is stored.
        AuditError: the audit trail cannot be written.
    """
    row = db.scalars(select(CaseRow).where(CaseRow.session_id == session_id)).one_or_none()
    if row is not None:
        return row
    session = db.get(SessionRow, session_id)
    if session is None:
        raise CaseError("There is no such session.")
    row = CaseRow(
        session_id=session_id,
        school=session.school,
        status=CaseStatus.NEW.value,
        opened_at=now,
        updated_at=now,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        "case.opened",
        object_type="case",
        object_id=str(row.id),
        after={"session_id": session_id, "status": row.status, "school": row.school},
        actor=by,
        at=now,
    )
    return row


def open_cases_for_open_findings(db: Session, *, now: datetime) -> list[CaseRow]:
    """Open a case for every session with an open, unexempted finding and no case yet.

    Raises:
        AuditError: the audit trail cannot be written.
    """
    missing = db.scalars(
        select(FindingRow.session_id)
        .outerjoin(CaseRow, CaseRow.session_id == FindingRow.session_id)
        .join(SessionRow, SessionRow.id == FindingRow.session_id)
        .where(
            CaseRow.id.is_(None),
            FindingRow.status.in_(OPEN_FINDING_STATUSES),
            FindingRow.exemption.is_(None),
        )
        .distinct()
    ).all()
    return [open_or_get_case(db, session_id, now=now, by=audit.SYSTEM) for session_id in missing]


def reopen_cases_with_new_breaches(db: Session, *, now: datetime) -> list[CaseRow]:
    """Reopen (back to in review) every closed case whose session has a breach (fail or warn,
    not exempted) that appeared or changed after the case was closed: what was closed did not
    include it, so a DSL must look again.

    Raises:
        AuditError: the audit trail cannot be written.
    """
    rows = db.execute(
        select(CaseRow, FindingRow.rule_id)
        .join(FindingRow, FindingRow.session_id == CaseRow.session_id)
        .where(
            CaseRow.status == CaseStatus.CLOSED.value,
            FindingRow.status.in_(("fail", "warn")),
            FindingRow.exemption.is_(None),
            FindingRow.last_changed_at > CaseRow.closed_at,
        )
        .order_by(CaseRow.id, FindingRow.rule_id)
    ).all()
    rules: dict[int, tuple[CaseRow, set[str]]] = {}
    for case_row, rule_id in rows:
        rules.setdefault(case_row.id, (case_row, set()))[1].add(rule_id)
    reopened: list[CaseRow] = []
    for case_row, rule_ids in rules.values():
        set_status(
            db,
            case_row,
            CaseStatus.IN_REVIEW,
            by=audit.SYSTEM,
            now=now,
            note="Reopened by remote_guard: a finding appeared or changed after the case was "
            f"closed ({', '.join(sorted(rule_ids))}).",
        )
        reopened.append(case_row)
    return reopened


def get_case(db: Session, case_id: int) -> CaseRow | None:
    return db.get(CaseRow, case_id)


def case_for_session(db: Session, session_id: str) -> CaseRow | None:
    return db.scalars(select(CaseRow).where(CaseRow.session_id == session_id)).one_or_none()


# --- changing -----------------------------------------------------------------------------------


def set_status(
    db: Session,
    case_row: CaseRow,
    to: CaseStatus | str,
    *,
    by: audit.Actor,
    now: datetime,
    resolution: Resolution | str | None = None,
    note: str | None = None,
) -> CaseRow:
    """Move ``case_row`` to ``to``; closing needs ``resolution``. ``note`` (optional) is kept as
    a status-change note.

    Raises:
        CaseError: the move is not allowed from the current status, the status or resolution
            is not one of the known values, closing has no resolution, a resolution is given
            for another move, or the note is too long.
        AuditError: the audit trail cannot be written.
    """
    target = _parse(CaseStatus, to, "status")
    current = CaseStatus(case_row.status)
    chosen = _parse(Resolution, resolution, "resolution") if resolution else None
    if target not in TRANSITIONS[current]:
        raise CaseError(
            f"A case that is {STATUS_LABELS[current].lower()} cannot be moved to "
            f"{STATUS_LABELS[target].lower()}."
        )
    if target is CaseStatus.CLOSED and chosen is None:
        raise CaseError("Choose a resolution to close the case.")
    if target is not CaseStatus.CLOSED and chosen is not None:
        raise CaseError("A resolution is given only when closing the case.")
    text = _clean_note(note, required=False)
    before: dict[str, Any] = {"status": case_row.status, "resolution": case_row.resolution}
    case_row.status = target.value
    if target is CaseStatus.CLOSED:
        case_row.resolution = chosen.value if chosen else None
        case_row.closed_at = now
        case_row.closed_by = by.id
    else:
        case_row.resolution = None
        case_row.closed_at = None
        case_row.closed_by = None
    case_row.updated_at = now
    after: dict[str, Any] = {"status": case_row.status, "resolution": case_row.resolution}
    note_row = None
    if text:
        note_row = _add_note_row(
            db, case_row, text=text, kind=NoteKind.STATUS_CHANGE, by=by, now=now
        )
    db.flush()
    audit.record(
        db,
        "case.status_changed",
        object_type="case",
        object_id=str(case_row.id),
        before=before,
        after=after,
        detail={"session_id": case_row.session_id, "note_id": note_row.id if note_row else None},
        actor=by,
        at=now,
    )
    return case_row


def assign(
    db: Session,
    case_row: CaseRow,
    assignee_id: str | None,
    *,
    by: audit.Actor,
    now: datetime,
    allowed: Collection[str] | None = None,
) -> CaseRow:
    """Give ``case_row`` to ``assignee_id`` (None: nobody). ``allowed`` are the ids that may
    take a case (the DSL and deputy DSLs); the caller reads them from the directory.

    Raises:
        CaseError: ``assignee_id`` is not in ``allowed``.
        AuditError: the audit trail cannot be written.
    """
    assignee = assignee_id or None
    if assignee is not None and allowed is not None and assignee not in allowed:
        raise CaseError("Cases can be assigned only to the DSL or a deputy DSL.")
    if assignee == case_row.assignee_id:
        return case_row
    before = {"assignee_id": case_row.assignee_id}
    case_row.assignee_id = assignee
    case_row.updated_at = now
    db.flush()
    audit.record(
        db,
        "case.assigned",
        object_type="case",
        object_id=str(case_row.id),
        before=before,
        after={"assignee_id": assignee},
        detail={"session_id": case_row.session_id},
        actor=by,
        at=now,
    )
    return case_row


def add_note(
    db: Session,
    case_row: CaseRow,
    *,
    text: str,
    kind: NoteKind | str = NoteKind.NOTE,
    by: audit.Actor,
    now: datetime,
) -> CaseNoteRow:
    """Add a note to ``case_row``: a DSL's note, or ``kind=context`` for a teacher's context on
    their own session (the caller checks ``access.can_add_context``). The audit entry records
    that a note was added, its kind and length, not its text (the note row holds that).

    Raises:
        CaseError: the text is empty or longer than ``NOTE_MAX_CHARS``, or the kind is unknown.
        AuditError: the audit trail cannot be written.
    """
    note_kind = _parse(NoteKind, kind, "note kind")
    cleaned = _clean_note(text, required=True)
    row = _add_note_row(db, case_row, text=cleaned, kind=note_kind, by=by, now=now)
    case_row.updated_at = now
    db.flush()
    audit.record(
        db,
        "case.note_added",
        object_type="case",
        object_id=str(case_row.id),
        after={"note_id": row.id, "kind": row.kind},
        detail={"session_id": case_row.session_id, "chars": len(cleaned)},
        actor=by,
        at=now,
    )
    return row


def list_notes(db: Session, case_id: int) -> list[CaseNoteRow]:
    return list(
        db.scalars(
            select(CaseNoteRow)
            .where(CaseNoteRow.case_id == case_id)
            .order_by(CaseNoteRow.created_at, CaseNoteRow.id)
        )
    )


def _add_note_row(
    db: Session, case_row: CaseRow, *, text: str, kind: NoteKind, by: audit.Actor, now: datetime
) -> CaseNoteRow:
    row = CaseNoteRow(
        case_id=case_row.id,
        author_id=by.id,
        author_role=by.role,
        kind=kind.value,
        text=text,
        created_at=now,
    )
    db.add(row)
    db.flush()
    return row


_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean_note(text: str | None, *, required: bool) -> str:
    # Control characters (NUL above all, which PostgreSQL refuses in text) are dropped;
    # line breaks and tabs are kept.
    cleaned = _CONTROL_CHARS.sub("", text or "").strip()
    if required and not cleaned:
        raise CaseError("Write the note before adding it.")
    if len(cleaned) > NOTE_MAX_CHARS:
        raise CaseError(
            f"A note can be at most {NOTE_MAX_CHARS:,} characters; this one has {len(cleaned):,}."
        )
    return cleaned


def _parse(kind: type[_E], value: _E | str, what: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise CaseError(f"{str(value)[:40]!r} is not a known {what}.") from None


# --- the queue ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilters:
    """What the DSL narrowed the queue to. ``schools`` None means every school (no federation);
    an empty set means none. ``case_status`` "open" means new or in review."""

    schools: frozenset[str] | None = None
    school: str | None = None
    rule_id: str | None = None
    severity: str | None = None
    case_status: str | None = None
    finding_status: str | None = None  # "open" (default), a finding status, or "all"
    start: datetime | None = None  # sessions starting at or after
    end: datetime | None = None  # sessions starting before
    assignee_id: str | None = None
    unassigned: bool = False  # only cases nobody holds (and sessions with no case yet)


@dataclass
class QueueRow:
    session_id: str
    subject: str | None
    start: datetime | None
    organizer_id: str | None
    school: str | None
    counts: dict[str, int]
    case_id: int | None
    case_status: str
    assignee_id: str | None
    resolution: str | None
    latest_finding_at: datetime

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class QueuePage:
    rows: list[QueueRow]
    total: int
    page: int
    per_page: int
    rule_ids: list[str] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _finding_conditions(filters: QueueFilters) -> list[Any]:
    conditions: list[Any] = []
    status = filters.finding_status or "open"
    if status == "open":
        conditions += [
            FindingRow.status.in_(OPEN_FINDING_STATUSES),
            FindingRow.exemption.is_(None),
        ]
    elif status == "exempted":
        conditions.append(FindingRow.exemption.is_not(None))
    elif status != "all":
        conditions.append(FindingRow.status == status)
    if filters.rule_id:
        conditions.append(FindingRow.rule_id == filters.rule_id)
    if filters.severity:
        conditions.append(FindingRow.severity == filters.severity)
    return conditions


def _session_conditions(filters: QueueFilters) -> list[Any]:
    conditions: list[Any] = []
    if filters.schools is not None:
        conditions.append(SessionRow.school.in_(sorted(filters.schools)))
    if filters.school:
        conditions.append(SessionRow.school == filters.school)
    if filters.start is not None:
        conditions.append(SessionRow.scheduled_start >= filters.start)
    if filters.end is not None:
        conditions.append(SessionRow.scheduled_start < filters.end)
    case_status = filters.case_status
    if case_status == "open":
        conditions.append(or_(CaseRow.id.is_(None), CaseRow.status != CaseStatus.CLOSED.value))
    elif case_status == CaseStatus.NEW.value:
        # A session whose case is not opened yet is new.
        conditions.append(or_(CaseRow.id.is_(None), CaseRow.status == case_status))
    elif case_status:
        conditions.append(CaseRow.status == case_status)
    if filters.assignee_id:
        conditions.append(CaseRow.assignee_id == filters.assignee_id)
    if filters.unassigned:
        conditions.append(CaseRow.assignee_id.is_(None))
    return conditions


def list_queue(
    db: Session, filters: QueueFilters, *, page: int = 1, per_page: int = 25
) -> QueuePage:
    """Sessions with findings matching ``filters``, newest session first, one row each with the
    matching findings counted by severity and the case (status "new" when none is opened yet).
    """
    page = max(1, page)
    per_page = max(1, min(per_page, 200))
    severity_columns = [
        func.sum(case((FindingRow.severity == severity.value, 1), else_=0)).label(severity.value)
        for severity in SEVERITY_ORDER
    ]
    grouped = (
        select(
            FindingRow.session_id.label("session_id"),
            func.max(FindingRow.last_changed_at).label("latest"),
            *severity_columns,
        )
        .where(*_finding_conditions(filters))
        .group_by(FindingRow.session_id)
        .subquery()
    )
    order_start = func.coalesce(SessionRow.scheduled_start, grouped.c.latest)
    base: Select[Any] = (
        select(
            SessionRow.id,
            SessionRow.subject,
            SessionRow.scheduled_start,
            SessionRow.organizer_id,
            SessionRow.school,
            grouped.c.latest,
            *(grouped.c[severity.value] for severity in SEVERITY_ORDER),
            CaseRow.id.label("case_id"),
            func.coalesce(CaseRow.status, literal(CaseStatus.NEW.value)).label("case_status"),
            CaseRow.assignee_id,
            CaseRow.resolution,
        )
        .join(grouped, grouped.c.session_id == SessionRow.id)
        .outerjoin(CaseRow, CaseRow.session_id == SessionRow.id)
        .where(*_session_conditions(filters))
    )
    total = db.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = db.execute(
        base.order_by(order_start.desc(), SessionRow.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    queue_rows = [
        QueueRow(
            session_id=row.id,
            subject=row.subject,
            start=row.scheduled_start,
            organizer_id=row.organizer_id,
            school=row.school,
            counts={s.value: int(getattr(row, s.value) or 0) for s in SEVERITY_ORDER},
            case_id=row.case_id,
            case_status=row.case_status,
            assignee_id=row.assignee_id,
            resolution=row.resolution,
            latest_finding_at=row.latest,
        )
        for row in rows
    ]
    return QueuePage(rows=queue_rows, total=int(total), page=page, per_page=per_page)


def rule_ids_in_findings(db: Session) -> list[str]:
    """The rules that have any stored finding, for the queue's rule filter."""
    return list(db.scalars(select(FindingRow.rule_id).distinct().order_by(FindingRow.rule_id)))


def findings_of_session(db: Session, session_id: str) -> Sequence[FindingRow]:
    """Every stored finding of a session, the open ones first, most severe first."""
    rows = db.scalars(select(FindingRow).where(FindingRow.session_id == session_id)).all()
    rank = {severity.value: index for index, severity in enumerate(SEVERITY_ORDER)}
    return sorted(
        rows,
        key=lambda row: (
            row.status not in OPEN_FINDING_STATUSES or row.exemption is not None,
            rank.get(row.severity, 9),
            row.rule_id,
            row.subject_key,
        ),
    )


def labels(values: Iterable[str], table: dict[Any, str]) -> dict[str, str]:
    return {value: table.get(value, value) for value in values}
