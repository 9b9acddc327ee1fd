"""SLT's JSON API under ``/api/v1``: one-to-one approvals, approved activities, the board,
drop-ins (schedule, put in the calendar again, record the outcome, cancel) and coverage.

The same actions as the pages (``web.slt_actions``), the same access decisions, the same audit
entries. A change the domain refuses answers 409 with ``{"detail": "<why>"}``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field

from remote_guard.consent.approvals import ApprovalError, ApprovalItem
from remote_guard.consent.models import ApprovedActivityRow
from remote_guard.dropins.board import BoardRow
from remote_guard.dropins.models import DropInOutcome
from remote_guard.dropins.service import MAX_MINUTES, MIN_MINUTES, DropInError
from remote_guard.web import access, slt_actions
from remote_guard.web.access import User
from remote_guard.web.auth import requires
from remote_guard.web.context import web_context
from remote_guard.web.slt_actions import DropInView

router = APIRouter(prefix="/api/v1", tags=["slt"])

SltUser = Annotated[User, Depends(requires(access.can_see_slt_board))]
DeciderUser = Annotated[User, Depends(requires(access.can_decide_registrations))]
DropInUser = Annotated[User, Depends(requires(access.can_schedule_drop_ins))]
CoverageUser = Annotated[User, Depends(requires(access.can_see_coverage))]


class Problem(BaseModel):
    """Why a change was refused, in words to show the user."""

    detail: str


_REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "The change is not allowed (says why)"}
}


def _refused(exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


# --- approvals -------------------------------------------------------------------------------


class ConsentOut(BaseModel):
    granted_by: str
    relationship: str
    granted_at: datetime
    method: str
    evidence_ref: str | None
    expires_at: datetime | None
    withdrawn_at: datetime | None
    state: str = Field(description="current, withdrawn, expired or none")


class RegistrationOut(BaseModel):
    id: str
    teacher_id: str
    teacher_name: str
    pupil_id: str
    pupil_name: str
    activity: str
    activity_approved: bool = Field(description="Whether the activity is on the list now")
    join_url: str | None
    session_subject: str | None
    session_start: datetime | None
    starts_at: datetime | None
    ends_at: datetime | None
    status: str = Field(description="pending, approved or declined")
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    recorded_at: datetime
    consent: ConsentOut | None
    can_decide: bool


class ApprovalsOut(BaseModel):
    pending: list[RegistrationOut]
    decided: list[RegistrationOut]


class DeclineIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


def _registration_out(request: Request, user: User, item: ApprovalItem) -> RegistrationOut:
    web = web_context(request)
    names = slt_actions.names(web)
    row, view = item.row, item.view
    consent = view.consent
    return RegistrationOut(
        id=row.id,
        teacher_id=row.staff_id,
        teacher_name=names.get(row.staff_id, ""),
        pupil_id=row.pupil_id,
        pupil_name=names.get(row.pupil_id, ""),
        activity=row.activity,
        activity_approved=item.activity_approved,
        join_url=row.join_url,
        session_subject=view.meeting_subject,
        session_start=view.meeting_start,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        status=row.status,
        decided_by=row.approved_by,
        decided_at=row.approved_at,
        decision_reason=row.decision_reason,
        recorded_at=row.recorded_at,
        consent=ConsentOut(
            granted_by=consent.granted_by,
            relationship=consent.relationship,
            granted_at=consent.granted_at,
            method=consent.method,
            evidence_ref=consent.evidence_ref,
            expires_at=consent.expires_at,
            withdrawn_at=consent.withdrawn_at,
            state=view.consent_state(web.clock()),
        )
        if consent is not None
        else None,
        can_decide=slt_actions.may_decide(web, user, row),
    )


@router.get("/approvals", response_model=ApprovalsOut, summary="One-to-one registrations")
def list_approvals(request: Request, user: DeciderUser) -> ApprovalsOut:
    found = slt_actions.list_approvals(web_context(request), user)
    slt_actions.record_approvals_viewed(web_context(request), found)
    return ApprovalsOut(
        pending=[_registration_out(request, user, item) for item in found.pending],
        decided=[_registration_out(request, user, item) for item in found.decided],
    )


def _one(request: Request, user: User, registration_id: str) -> RegistrationOut:
    found = slt_actions.list_approvals(web_context(request), user)
    item = next((i for i in found.pending + found.decided if i.row.id == registration_id), None)
    if item is None:
        slt_actions.not_found()
    return _registration_out(request, user, item)


@router.post(
    "/approvals/{registration_id}/approve",
    response_model=RegistrationOut,
    responses=_REFUSED,
    summary="Approve a one-to-one registration (its sessions are re-checked at once)",
)
def approve(
    request: Request, user: DeciderUser, registration_id: str
) -> RegistrationOut | JSONResponse:
    try:
        slt_actions.decide_registration(
            web_context(request), user, registration_id, approve=True, reason=None
        )
    except ApprovalError as exc:
        return _refused(exc)
    return _one(request, user, registration_id)


@router.post(
    "/approvals/{registration_id}/decline",
    response_model=RegistrationOut,
    responses=_REFUSED,
    summary="Decline a registration, or withdraw an approval, with a reason",
)
def decline(
    request: Request, user: DeciderUser, registration_id: str, body: DeclineIn
) -> RegistrationOut | JSONResponse:
    try:
        slt_actions.decide_registration(
            web_context(request), user, registration_id, approve=False, reason=body.reason
        )
    except ApprovalError as exc:
        return _refused(exc)
    return _one(request, user, registration_id)


# --- activities ------------------------------------------------------------------------------


class ActivityOut(BaseModel):
    name: str
    approved_by: str | None
    approved_at: datetime
    retired_at: datetime | None
    retired_by: str | None


class ActivityIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)


def _activity_out(row: ApprovedActivityRow) -> ActivityOut:
    return ActivityOut(
        name=row.name,
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        retired_at=row.retired_at,
        retired_by=row.retired_by,
    )


@router.get("/activities", response_model=list[ActivityOut], summary="Approved activities")
def list_activities(request: Request, user: DeciderUser) -> list[ActivityOut]:
    return [_activity_out(row) for row in slt_actions.list_activities(web_context(request))]


@router.post(
    "/activities",
    response_model=ActivityOut,
    status_code=201,
    responses=_REFUSED,
    summary="Add an activity to the approved list (or approve a retired one again)",
)
def add_activity(
    request: Request, user: DeciderUser, body: ActivityIn
) -> ActivityOut | JSONResponse:
    try:
        row = slt_actions.add_activity(web_context(request), user, body.name)
    except ApprovalError as exc:
        return _refused(exc)
    return _activity_out(row)


@router.post(
    "/activities/retire",
    response_model=ActivityOut,
    responses=_REFUSED,
    summary="Retire an activity (sessions from now on are no longer approved for it)",
)
def retire_activity(
    request: Request, user: DeciderUser, body: ActivityIn
) -> ActivityOut | JSONResponse:
    try:
        row = slt_actions.retire_activity(web_context(request), user, body.name)
    except ApprovalError as exc:
        return _refused(exc)
    return _activity_out(row)


# --- the board -------------------------------------------------------------------------------


class BoardRowOut(BaseModel):
    session_id: str
    subject: str
    teacher_name: str
    school: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    live: bool
    pupils_expected: int
    open_findings: int
    join_url: str | None = Field(description="The Teams join link to monitor (never a new meeting)")
    my_dropin_ids: list[str]


def _board_out(row: BoardRow) -> BoardRowOut:
    return BoardRowOut(
        session_id=row.session_id,
        subject=row.subject,
        teacher_name=row.teacher_name,
        school=row.school,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        live=row.live,
        pupils_expected=row.pupils_expected,
        open_findings=row.open_findings,
        join_url=row.join_url,
        my_dropin_ids=list(row.dropin_ids),
    )


@router.get("/board", response_model=list[BoardRowOut], summary="Live and upcoming sessions")
def board(request: Request, user: SltUser, school: str | None = None) -> list[BoardRowOut]:
    return [_board_out(row) for row in slt_actions.board(web_context(request), user, school)]


# --- drop-ins --------------------------------------------------------------------------------


class DropInIn(BaseModel):
    session_id: str = Field(min_length=1, max_length=200)
    starts_at: AwareDatetime | None = Field(
        default=None, description="When to join (default: the session's start)"
    )
    minutes: int | None = Field(
        default=None, ge=MIN_MINUTES, le=MAX_MINUTES, description="Default: to the session's end"
    )


class DropInOut(BaseModel):
    id: str
    session_id: str
    session_subject: str
    teacher_name: str
    slt_user_id: str
    starts_at: datetime
    ends_at: datetime
    scheduled_at: datetime
    status: str = Field(description="scheduled, done, missed or cancelled")
    in_calendar: bool
    graph_event_id: str | None
    calendar_error: str | None = Field(description="Why it is not in the calendar, if it is not")
    outcome: str | None
    notes: str | None
    case_id: int | None


class OutcomeIn(BaseModel):
    outcome: DropInOutcome
    notes: str | None = Field(default=None, max_length=10_000)


def _dropin_out(view: DropInView) -> DropInOut:
    row = view.row
    return DropInOut(
        id=row.id,
        session_id=row.session_id,
        session_subject=(view.session.subject if view.session else None) or "",
        teacher_name=view.teacher_name,
        slt_user_id=row.slt_user_id,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        scheduled_at=row.scheduled_at,
        status=row.status,
        in_calendar=row.graph_event_id is not None,
        graph_event_id=row.graph_event_id,
        calendar_error=row.calendar_error,
        outcome=row.outcome,
        notes=row.notes,
        case_id=row.case_id,
    )


def _dropin(request: Request, user: User, dropin_id: str) -> DropInOut:
    return _dropin_out(slt_actions.get_drop_in(web_context(request), user, dropin_id))


@router.get("/drop-ins", response_model=list[DropInOut], summary="Drop-ins of my schools")
def list_drop_ins(request: Request, user: DropInUser) -> list[DropInOut]:
    return [_dropin_out(view) for view in slt_actions.list_drop_ins(web_context(request), user)]


@router.post(
    "/drop-ins",
    response_model=DropInOut,
    status_code=201,
    responses=_REFUSED,
    summary="Schedule a drop-in and put it in my Outlook calendar",
    description="The drop-in is stored even if Microsoft 365 refuses the calendar event: "
    "in_calendar is then false and calendar_error says why; retry with "
    "POST /api/v1/drop-ins/{id}/calendar (the same transactionId, so never two events).",
)
def schedule_drop_in(
    request: Request, user: DropInUser, body: DropInIn
) -> DropInOut | JSONResponse:
    try:
        result = slt_actions.schedule_drop_in(
            web_context(request),
            user,
            body.session_id,
            starts_at=body.starts_at,
            minutes=body.minutes,
        )
    except DropInError as exc:
        return _refused(exc)
    return _dropin(request, user, result.dropin.id)


@router.get("/drop-ins/{dropin_id}", response_model=DropInOut, summary="One drop-in")
def get_drop_in(request: Request, user: DropInUser, dropin_id: str) -> DropInOut:
    return _dropin(request, user, dropin_id)


@router.post(
    "/drop-ins/{dropin_id}/calendar",
    response_model=DropInOut,
    responses=_REFUSED,
    summary="Try again to put a drop-in in my calendar",
)
def retry_calendar(request: Request, user: DropInUser, dropin_id: str) -> DropInOut | JSONResponse:
    try:
        slt_actions.retry_calendar(web_context(request), user, dropin_id)
    except DropInError as exc:
        return _refused(exc)
    return _dropin(request, user, dropin_id)


@router.post(
    "/drop-ins/{dropin_id}/outcome",
    response_model=DropInOut,
    responses=_REFUSED,
    summary="Record what I saw (a concern goes to the DSL's case for the session)",
)
def record_outcome(
    request: Request, user: DropInUser, dropin_id: str, body: OutcomeIn
) -> DropInOut | JSONResponse:
    try:
        slt_actions.record_outcome(
            web_context(request), user, dropin_id, outcome=body.outcome, notes=body.notes
        )
    except DropInError as exc:
        return _refused(exc)
    return _dropin(request, user, dropin_id)


@router.post(
    "/drop-ins/{dropin_id}/cancel",
    response_model=DropInOut,
    responses=_REFUSED,
    summary="Cancel a scheduled drop-in",
)
def cancel_drop_in(request: Request, user: DropInUser, dropin_id: str) -> DropInOut | JSONResponse:
    try:
        slt_actions.cancel_drop_in(web_context(request), user, dropin_id)
    except DropInError as exc:
        return _refused(exc)
    return _dropin(request, user, dropin_id)


# --- coverage --------------------------------------------------------------------------------


class TeacherOut(BaseModel):
    teacher_id: str
    name: str
    school: str | None
    sessions: int
    last_session_at: datetime | None
    visited: bool


class OneToOneOut(BaseModel):
    session_id: str
    subject: str
    kind: str = Field(description="meeting, channel_meeting, peer_to_peer, ...")
    teacher_id: str | None
    teacher_name: str
    school: str | None
    starts_at: datetime | None
    visited: bool


class CoverageOut(BaseModel):
    period_start: date
    period_end: date
    period_label: str
    from_terms: bool = Field(description="False: no term covers today; the last 6 weeks")
    one_to_ones: list[OneToOneOut]
    one_to_ones_visited: int
    one_to_one_share: int | None = Field(description="Percent visited; null when there are none")
    teachers: list[TeacherOut]
    teachers_visited: int
    teacher_share: int | None = Field(description="Percent visited; null when there are none")


@router.get("/coverage", response_model=CoverageOut, summary="Drop-in coverage this half-term")
def coverage(request: Request, user: CoverageUser, school: str | None = None) -> CoverageOut:
    found = slt_actions.drop_in_coverage(web_context(request), user, school)
    return CoverageOut(
        period_start=found.period.start,
        period_end=found.period.end,
        period_label=found.period.label,
        from_terms=found.period.from_terms,
        one_to_ones=[OneToOneOut(**vars(item)) for item in found.one_to_ones],
        one_to_ones_visited=found.one_to_ones_visited,
        one_to_one_share=found.one_to_one_share,
        teachers=[TeacherOut(**vars(item)) for item in found.teachers],
        teachers_visited=found.teachers_visited,
        teacher_share=found.teacher_share,
    )
