"""What the DSL's pages (``routes/dsl.py``) and API (``dsl_api.py``) share: reading the queue's
filters, finding a session the user may open, the people a case may be assigned to, and the
case actions, each in one transaction with its audit entries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import HTTPException, Request
from sqlalchemy.orm import Session

from remote_guard.cases import service as cases
from remote_guard.cases.evidence import ClauseBook, Evidence, build_evidence
from remote_guard.cases.models import CaseRow, CaseStatus, NoteKind, Resolution
from remote_guard.collect.models import SessionRow
from remote_guard.rules.base import Severity, Status
from remote_guard.store.db import transaction
from remote_guard.web import access, audit_log
from remote_guard.web.access import Role, User
from remote_guard.web.auth import deny
from remote_guard.web.context import WebContext, web_context
from remote_guard.web.people import Roster

PER_PAGE = 25

CASE_STATUS_CHOICES = {
    "open": "New or in review",
    CaseStatus.NEW.value: "New",
    CaseStatus.IN_REVIEW.value: "In review",
    CaseStatus.CLOSED.value: "Closed",
    "any": "Any",
}
FINDING_STATUS_CHOICES = {
    "open": "Open (not exempted)",
    Status.FAIL.value: "Fail",
    Status.WARN.value: "Warning",
    Status.ERROR.value: "Could not be checked",
    "exempted": "Exempted",
    Status.PASS.value: "Passed",
    Status.NOT_APPLICABLE.value: "No longer applies",
    "all": "Any",
}
SEVERITY_CHOICES = {
    severity.value: severity.value.capitalize() for severity in cases.SEVERITY_ORDER
}
SEVERITY_VALUES = tuple(severity.value for severity in Severity)


def clause_book(request: Request) -> ClauseBook:
    """The policy's clauses, loaded once per app (on first use)."""
    state = request.app.state
    book: ClauseBook | None = getattr(state, "dsl_clause_book", None)
    if book is None:
        book = ClauseBook(web_context(request).settings)
        state.dsl_clause_book = book
    return book


def roster(request: Request) -> Roster:
    """The roster (names, DSL and deputy DSL groups).

    Raises:
        RosterUnavailableError: Graph cannot be read and no roster was read before.
    """
    return web_context(request).people.roster()


# --- the queue's filters ----------------------------------------------------------------------


@dataclass
class QueueQuery:
    """The queue's filters as the form sent them (kept to refill the form) and as a query."""

    values: dict[str, str]
    filters: cases.QueueFilters
    page: int
    problems: dict[str, str] = field(default_factory=dict)


def _local_day(value: str, zone: ZoneInfo) -> datetime | None:
    if not value:
        return None
    parsed = date.fromisoformat(value)
    if not 2000 <= parsed.year <= 2999:  # far-off years overflow once moved to UTC
        raise ValueError(value)
    return datetime.combine(parsed, time(0, 0), tzinfo=zone)


def parse_queue_query(user: User, params: dict[str, str], *, timezone: str) -> QueueQuery:
    """The filters of ``params`` (a GET form). An unknown choice falls back to the default; a
    date that cannot be read is reported in ``problems`` and ignored."""
    zone = ZoneInfo(timezone)
    allowed = access.visible_schools(user)
    values = {
        "school": params.get("school", ""),
        "rule": params.get("rule", "")[:64],
        "severity": params.get("severity", ""),
        "case_status": params.get("case_status", "open"),
        "finding_status": params.get("finding_status", "open"),
        "start": params.get("start", ""),
        "end": params.get("end", ""),
        "assignee": params.get("assignee", ""),
    }
    if values["school"] and allowed is not None and values["school"] not in allowed:
        values["school"] = ""
    if values["severity"] not in SEVERITY_CHOICES:
        values["severity"] = ""
    if values["case_status"] not in CASE_STATUS_CHOICES:
        values["case_status"] = "open"
    if values["finding_status"] not in FINDING_STATUS_CHOICES:
        values["finding_status"] = "open"
    if values["assignee"] not in ("", "me", "nobody"):
        values["assignee"] = ""
    problems: dict[str, str] = {}
    bounds: dict[str, datetime | None] = {}
    for name in ("start", "end"):
        try:
            bounds[name] = _local_day(values[name], zone)
        except ValueError:
            problems[name] = "Enter a date such as 2026-11-18."
            bounds[name] = None
    end = bounds["end"]
    try:
        page = max(1, min(int(params.get("page", "1")), 100_000))
    except ValueError:
        page = 1
    filters = cases.QueueFilters(
        schools=allowed,
        school=values["school"] or None,
        rule_id=values["rule"] or None,
        severity=values["severity"] or None,
        case_status=None if values["case_status"] == "any" else values["case_status"],
        finding_status=values["finding_status"],
        start=bounds["start"],
        # The end date is included: sessions before the next day's midnight.
        end=end + timedelta(days=1) if end is not None else None,
        assignee_id=user.id if values["assignee"] == "me" else None,
        unassigned=values["assignee"] == "nobody",
    )
    return QueueQuery(values=values, filters=filters, page=page, problems=problems)


# --- one session -------------------------------------------------------------------------------


def session_or_404(
    db: Session,
    user: User,
    session_id: str,
    decision: Callable[[User, SessionRow], bool] = access.can_open_case,
) -> SessionRow:
    """The session ``session_id`` if ``decision`` lets ``user`` at it (default: open its case).

    Raises:
        HTTPException: 404 when there is no such session, 403 when the user may not.
    """
    if not access.can_see_dsl_queue(user):
        deny()  # before the lookup, so nobody else learns which sessions exist
    row = db.get(SessionRow, session_id)
    if row is None:
        raise HTTPException(status_code=404)
    if not access.can_open_case(user, row) or not decision(user, row):
        deny()
    return row


def case_or_404(db: Session, user: User, case_id: int) -> tuple[CaseRow, SessionRow]:
    """The case ``case_id`` and its session, if ``user`` may open it.

    Raises:
        HTTPException: 404 when there is no such case, 403 when the user may not open it.
    """
    case_row = db.get(CaseRow, case_id)
    if case_row is None:
        raise HTTPException(status_code=404)
    return case_row, session_or_404(db, user, case_row.session_id)


def evidence_for(request: Request, user: User, session_id: str, *, action: str) -> Evidence:
    """The session's evidence, recording in the audit trail that ``user`` opened it.

    Raises:
        HTTPException: 404 or 403 as :func:`session_or_404`.
        AuditError: the view cannot be recorded (the evidence is then not shown).
    """
    web = web_context(request)
    names = roster(request).names
    exporting = action.startswith("handoff")
    decision = access.can_export_case if exporting else access.can_open_case
    with transaction(web.db) as db:
        row = session_or_404(db, user, session_id, decision)
        evidence = build_evidence(db, row, clauses=clause_book(request), names=names)
        detail: dict[str, Any] = {"page": action}
        if evidence.case is not None:
            detail["case_id"] = evidence.case.id
        if exporting:
            audit_log.record_change(
                db,
                "case.exported",
                object_type="session",
                object_id=row.id,
                detail={**detail, "format": action.removeprefix("handoff_")},
            )
        else:
            audit_log.record_view(db, object_type="session", object_id=row.id, detail=detail)
    return evidence


def assignees(roster_: Roster, school: str | None) -> list[tuple[str, str]]:
    """Who a case of ``school`` may be assigned to: the DSL and deputy DSLs who see that school,
    as (id, name), DSLs first."""
    dsl_ids = roster_.role_ids.get(Role.DSL, frozenset())
    deputy_ids = roster_.role_ids.get(Role.DEPUTY_DSL, frozenset())
    federation = bool(roster_.school_ids)
    people: list[tuple[int, str, str]] = []
    for person_id in dsl_ids | deputy_ids:
        if person_id in roster_.pupil_ids or person_id not in roster_.staff_ids:
            continue
        if federation:
            schools = {key for key, ids in roster_.school_ids.items() if person_id in ids}
            seen_all = schools >= set(roster_.school_ids)
            if not (school in schools if school is not None else seen_all):
                continue
        name = roster_.names.get(person_id, person_id)
        people.append((0 if person_id in dsl_ids else 1, name, person_id))
    return [(person_id, name) for _rank, name, person_id in sorted(people)]


# --- the case actions ---------------------------------------------------------------------------


def change_status(
    web: WebContext,
    user: User,
    session_id: str,
    *,
    to: str,
    resolution: str | None,
    note: str | None,
) -> CaseRow:
    """Move the session's case (opening it if needed).

    Raises:
        HTTPException: 404/403 as :func:`session_or_404`.
        CaseError: the move is not allowed, or the resolution or note is wrong.
    """
    with transaction(web.db) as db:
        row = session_or_404(db, user, session_id, access.can_change_case)
        now = web.clock()
        actor = audit_log.actor_for(user)
        case_row = cases.open_or_get_case(db, row.id, now=now, by=actor)
        return cases.set_status(
            db, case_row, to, by=actor, now=now, resolution=resolution or None, note=note
        )


def assign(web: WebContext, user: User, session_id: str, *, assignee_id: str | None) -> CaseRow:
    """Give the session's case to ``assignee_id`` (None: nobody), opening the case if needed.

    Raises:
        HTTPException: 404/403 as :func:`session_or_404`; 403 when the user may not make this
            assignment.
        CaseError: ``assignee_id`` is not a DSL or deputy DSL of the session's school.
        RosterUnavailableError: the roster cannot be read.
    """
    with transaction(web.db) as db:
        row = session_or_404(db, user, session_id)
        eligible = {person_id for person_id, _ in assignees(web.people.roster(), row.school)}
        now = web.clock()
        actor = audit_log.actor_for(user)
        existing = cases.case_for_session(db, row.id)
        current = existing.assignee_id if existing is not None else None
        if not access.can_assign_case(user, row, assignee_id=assignee_id, current_id=current):
            deny()
        case_row = existing or cases.open_or_get_case(db, row.id, now=now, by=actor)
        return cases.assign(db, case_row, assignee_id, by=actor, now=now, allowed=eligible)


def add_note(web: WebContext, user: User, session_id: str, *, text: str) -> CaseRow:
    """Add a DSL's note to the session's case (opening it if needed).

    Raises:
        HTTPException: 404/403 as :func:`session_or_404`.
        CaseError: the note is empty or too long.
    """
    with transaction(web.db) as db:
        row = session_or_404(db, user, session_id, access.can_change_case)
        now = web.clock()
        actor = audit_log.actor_for(user)
        case_row = cases.open_or_get_case(db, row.id, now=now, by=actor)
        cases.add_note(db, case_row, text=text, kind=NoteKind.NOTE, by=actor, now=now)
        return case_row


RESOLUTION_CHOICES = {
    resolution.value: label for resolution, label in cases.RESOLUTION_LABELS.items()
}
STATUS_LABELS = {status.value: label for status, label in cases.STATUS_LABELS.items()}
RESOLUTION_VALUES = tuple(resolution.value for resolution in Resolution)
