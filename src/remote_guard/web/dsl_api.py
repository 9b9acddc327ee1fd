"""The DSL's JSON API: the review queue, a session's evidence, and the case actions.

Included in ``web.api``'s router (so under ``/api/v1``). The same access decisions and case
service as the pages; a state-changing call needs the ``X-CSRF-Token`` header. Errors:
404 no such session or case, 403 not allowed, 409 a move the case cannot make, 422 input.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from remote_guard.cases import service as cases
from remote_guard.cases.evidence import Evidence
from remote_guard.cases.models import NOTE_MAX_CHARS, CaseNoteRow, CaseRow
from remote_guard.store.db import transaction
from remote_guard.web import access, dsl_views
from remote_guard.web.access import User
from remote_guard.web.audit_log import actor_for
from remote_guard.web.auth import CurrentUser, requires
from remote_guard.web.context import web_context

router = APIRouter(tags=["dsl"])

# Case numbers are an Integer column: PostgreSQL refuses a larger number in the query itself (a
# server error), where SQLite would just find no case. Larger ones are refused as invalid.
CaseIdPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="The case's number")]
SessionIdPath = Annotated[str, Path(min_length=1, max_length=128)]


class NoteOut(BaseModel):
    id: int
    kind: Literal["note", "context", "status_change"]
    author_id: str
    author_name: str
    author_role: str
    text: str
    created_at: datetime


class CaseOut(BaseModel):
    """A session's case: its status, resolution, who holds it, and its notes."""

    id: int
    session_id: str
    school: str | None
    status: Literal["new", "in_review", "closed"]
    resolution: Literal["no_concern", "concern_recorded", "referred_on", "false_positive"] | None
    assignee_id: str | None
    assignee_name: str | None
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    notes: list[NoteOut]


class QueueItem(BaseModel):
    session_id: str
    subject: str | None
    start: datetime | None
    organizer_id: str | None
    organizer_name: str | None
    school: str | None
    counts: dict[str, int] = Field(description="Matching findings by severity")
    case_id: int | None
    case_status: Literal["new", "in_review", "closed"]
    resolution: str | None
    assignee_id: str | None
    evidence_url: str


class QueueOut(BaseModel):
    items: list[QueueItem]
    total: int
    page: int
    per_page: int
    pages: int


class SessionOut(BaseModel):
    id: str
    kind: str
    subject: str | None
    organizer_id: str | None
    organizer_name: str
    school: str | None
    scheduled_start: datetime | None
    scheduled_end: datetime | None
    actual_start: datetime | None
    actual_end: datetime | None


class SpanOut(BaseModel):
    start: datetime
    end: datetime | None


class PersonOut(BaseModel):
    id: str
    name: str
    kind: str
    roles: list[str]
    organizer: bool
    minutes: int
    source: str
    spans: list[SpanOut]


class ChatOut(BaseModel):
    at: datetime
    who: str
    kind: str
    what: str
    text: str | None


class RecordingOut(BaseModel):
    kind: str
    started: datetime | None
    by: str
    source: str


class PupilOut(BaseModel):
    id: str
    name: str
    consent: str
    consent_ok: bool
    registration: str
    registration_ok: bool


class FindingOut(BaseModel):
    key: str
    rule_id: str
    rule_title: str
    clause_id: str
    clause_version: int
    clause_text: str | None
    clause_level: str | None
    status: str
    exempted: bool
    severity: str
    observed: str
    message: str
    next_step: str
    evidence: dict[str, str]
    sources: list[str]
    first_seen_at: datetime
    last_changed_at: datetime


class EvidenceOut(BaseModel):
    """Everything the DSL's evidence page shows about a session."""

    session: SessionOut
    case: CaseOut | None
    people: list[PersonOut] | None = Field(description="None: attendance could not be read")
    chat: list[ChatOut] | None
    recordings: list[RecordingOut] | None
    pupils: list[PupilOut]
    findings: list[FindingOut]
    missing: dict[str, str]


class StatusIn(BaseModel):
    status: Literal["in_review", "closed"]
    resolution: (
        Literal["no_concern", "concern_recorded", "referred_on", "false_positive"] | None
    ) = None
    note: str | None = Field(default=None, max_length=NOTE_MAX_CHARS)


class AssignIn(BaseModel):
    assignee_id: str | None = Field(
        default=None, max_length=64, description="A DSL or deputy DSL's id; null for nobody"
    )


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=NOTE_MAX_CHARS)


def _case_out(case_row: CaseRow, notes: list[CaseNoteRow], names: dict[str, str]) -> CaseOut:
    return CaseOut(
        id=case_row.id,
        session_id=case_row.session_id,
        school=case_row.school,
        status=case_row.status,
        resolution=case_row.resolution,
        assignee_id=case_row.assignee_id,
        assignee_name=names.get(case_row.assignee_id) if case_row.assignee_id else None,
        opened_at=case_row.opened_at,
        updated_at=case_row.updated_at,
        closed_at=case_row.closed_at,
        closed_by=case_row.closed_by,
        notes=[
            NoteOut(
                id=note.id,
                kind=note.kind,
                author_id=note.author_id,
                author_name=names.get(
                    note.author_id, "remote_guard" if note.author_id == "system" else "Unknown"
                ),
                author_role=note.author_role,
                text=note.text,
                created_at=note.created_at,
            )
            for note in notes
        ],
    )


def _evidence_out(evidence: Evidence, names: dict[str, str]) -> EvidenceOut:
    session, snapshot = evidence.session, evidence.snapshot
    return EvidenceOut(
        session=SessionOut(
            id=session.id,
            kind=session.kind,
            subject=session.subject,
            organizer_id=session.organizer_id,
            organizer_name=evidence.organizer_name,
            school=session.school,
            scheduled_start=session.scheduled_start,
            scheduled_end=session.scheduled_end,
            actual_start=snapshot.actual_start if snapshot else None,
            actual_end=snapshot.actual_end if snapshot else None,
        ),
        case=_case_out(evidence.case, evidence.notes, names) if evidence.case else None,
        people=None
        if snapshot is None or snapshot.presence is None
        else [
            PersonOut(
                id=p.id,
                name=p.name,
                kind=p.kind,
                roles=p.roles,
                organizer=p.is_organizer,
                minutes=p.minutes,
                source=p.source,
                spans=[SpanOut(start=s.start, end=s.end) for s in p.spans],
            )
            for p in evidence.people
        ],
        chat=None
        if evidence.chat is None
        else [
            ChatOut(at=c.at, who=c.who, kind=c.kind_label, what=c.what, text=c.text)
            for c in evidence.chat
        ],
        recordings=None
        if evidence.recordings is None
        else [
            RecordingOut(kind=r.kind, started=r.started, by=r.by, source=r.source)
            for r in evidence.recordings
        ],
        pupils=[
            PupilOut(
                id=p.id,
                name=p.name,
                consent=p.consent,
                consent_ok=p.consent_ok,
                registration=p.registration,
                registration_ok=p.registration_ok,
            )
            for p in evidence.pupils
        ],
        findings=[
            FindingOut(
                key=f.key,
                rule_id=f.rule_id,
                rule_title=f.rule_title,
                clause_id=f.clause_id,
                clause_version=f.clause_version,
                clause_text=f.clause_text,
                clause_level=f.clause_level,
                status=f.status,
                exempted=f.exemption is not None,
                severity=f.severity,
                observed=f.observed,
                message=f.message,
                next_step=f.next_step,
                evidence=dict(f.evidence),
                sources=f.sources,
                first_seen_at=f.first_seen_at,
                last_changed_at=f.last_changed_at,
            )
            for f in evidence.findings
        ],
        missing=evidence.missing,
    )


@router.get(
    "/dsl/queue", response_model=QueueOut, summary="The DSL's review queue, grouped by session"
)
def queue(
    request: Request,
    *,
    user: Annotated[User, Depends(requires(access.can_see_dsl_queue))],
    school: Annotated[str | None, Query(max_length=64)] = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    severity: Literal["high", "medium", "low", "info"] | None = None,
    case_status: Literal["open", "new", "in_review", "closed", "any"] = "open",
    finding_status: Literal[
        "open", "fail", "warn", "error", "exempted", "pass", "not_applicable", "all"
    ] = "open",
    start: date | None = None,
    end: date | None = None,
    assignee: Literal["me", "nobody"] | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = dsl_views.PER_PAGE,
) -> QueueOut:
    web = web_context(request)
    params = {
        "school": school or "",
        "rule": rule or "",
        "severity": severity or "",
        "case_status": case_status,
        "finding_status": finding_status,
        "start": start.isoformat() if start else "",
        "end": end.isoformat() if end else "",
        "assignee": assignee or "",
        "page": str(page),
    }
    query = dsl_views.parse_queue_query(user, params, timezone=web.settings.school_day.timezone)
    names = dsl_views.roster(request).names
    with web.db() as db:
        result = cases.list_queue(db, query.filters, page=query.page, per_page=per_page)
    return QueueOut(
        items=[
            QueueItem(
                session_id=row.session_id,
                subject=row.subject,
                start=row.start,
                organizer_id=row.organizer_id,
                organizer_name=names.get(row.organizer_id) if row.organizer_id else None,
                school=row.school,
                counts=row.counts,
                case_id=row.case_id,
                case_status=row.case_status,
                resolution=row.resolution,
                assignee_id=row.assignee_id,
                evidence_url=f"/dsl/sessions/{row.session_id}",
            )
            for row in result.rows
        ],
        total=result.total,
        page=result.page,
        per_page=result.per_page,
        pages=result.pages,
    )


@router.get(
    "/sessions/{session_id}",
    response_model=EvidenceOut,
    summary="A session's evidence and case (DSL and deputy DSLs; recorded as a view)",
)
def session_evidence(request: Request, user: CurrentUser, session_id: SessionIdPath) -> EvidenceOut:
    evidence = dsl_views.evidence_for(request, user, session_id, action="api_evidence")
    return _evidence_out(evidence, dict(dsl_views.roster(request).names))


def _session_of_case(request: Request, user: User, case_id: int) -> str:
    with web_context(request).db() as db:
        _case, session = dsl_views.case_or_404(db, user, case_id)
        return session.id


def _case_answer(request: Request, case_id: int) -> CaseOut:
    names = dict(dsl_views.roster(request).names)
    with web_context(request).db() as db:
        case_row = db.get(CaseRow, case_id)
        if case_row is None:
            raise HTTPException(status_code=404)
        return _case_out(case_row, cases.list_notes(db, case_id), names)


class Problem(BaseModel):
    detail: str


_PROBLEMS: dict[int | str, dict[str, object]] = {
    409: {"model": Problem, "description": "The case cannot make this move"},
    422: {"model": Problem, "description": "The input is not valid"},
}


def _problem(status: int, exc: cases.CaseError) -> Response:
    # Answered here rather than raised: the app's error pages give only a generic text for
    # these statuses, and the reason (which move, which limit) is what a caller needs.
    return JSONResponse({"detail": str(exc)}, status_code=status)


@router.post(
    "/sessions/{session_id}/case",
    response_model=CaseOut,
    summary="Open the session's case (or give the one it has)",
)
def open_case(request: Request, user: CurrentUser, session_id: SessionIdPath) -> CaseOut:
    web = web_context(request)
    with transaction(web.db) as db:
        row = dsl_views.session_or_404(db, user, session_id, access.can_change_case)
        case_row = cases.open_or_get_case(db, row.id, now=web.clock(), by=actor_for(user))
        case_id = case_row.id
    return _case_answer(request, case_id)


@router.post(
    "/cases/{case_id}/status", response_model=CaseOut, responses=_PROBLEMS, summary="Move a case"
)
def case_status(
    request: Request, user: CurrentUser, case_id: CaseIdPath, body: StatusIn
) -> CaseOut | Response:
    session_id = _session_of_case(request, user, case_id)
    try:
        dsl_views.change_status(
            web_context(request),
            user,
            session_id,
            to=body.status,
            resolution=body.resolution,
            note=body.note,
        )
    except cases.CaseError as exc:
        return _problem(409, exc)
    return _case_answer(request, case_id)


@router.post(
    "/cases/{case_id}/assign", response_model=CaseOut, responses=_PROBLEMS, summary="Assign a case"
)
def case_assign(
    request: Request, user: CurrentUser, case_id: CaseIdPath, body: AssignIn
) -> CaseOut | Response:
    session_id = _session_of_case(request, user, case_id)
    try:
        dsl_views.assign(web_context(request), user, session_id, assignee_id=body.assignee_id)
    except cases.CaseError as exc:
        return _problem(422, exc)
    return _case_answer(request, case_id)


@router.post(
    "/cases/{case_id}/notes",
    response_model=CaseOut,
    responses=_PROBLEMS,
    summary="Add a note to a case",
)
def case_note(
    request: Request, user: CurrentUser, case_id: CaseIdPath, body: NoteIn
) -> CaseOut | Response:
    session_id = _session_of_case(request, user, case_id)
    try:
        dsl_views.add_note(web_context(request), user, session_id, text=body.text)
    except cases.CaseError as exc:
        return _problem(422, exc)
    return _case_answer(request, case_id)
