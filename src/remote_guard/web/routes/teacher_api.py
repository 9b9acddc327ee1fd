"""The teacher's actions in the JSON API (``/api/v1``): the same as the pages, same access.

``GET  /api/v1/my-sessions``                          upcoming, live and past sessions with findings
``GET  /api/v1/one-to-ones``                          the one-to-ones the user registered or runs
``GET  /api/v1/one-to-ones/choices``                  pupils, activities and meetings to register with
``POST /api/v1/one-to-ones``                          register a one-to-one with its consent
``POST /api/v1/consents/{consent_id}/withdrawal``     record a withdrawal of consent
``POST /api/v1/sessions/{session_id}/context-notes``  add context to the user's own flagged session

A field that is wrong answers 422 with ``{"detail": [{"loc": [...], "msg": "..."}]}``, the
shape FastAPI gives for a malformed body, with the same messages as the pages. Times without
an offset are school local time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from remote_guard.cases.models import NOTE_MAX_CHARS
from remote_guard.one_to_ones.service import (
    MAX_EMAIL,
    MAX_EVIDENCE,
    MAX_NAME,
    MAX_NOTE,
    MAX_RELATIONSHIP,
    ConsentDraft,
    RegistrationDraft,
    RegistrationView,
    WithdrawalDraft,
)
from remote_guard.poll.service import Reevaluation
from remote_guard.web import access, teaching
from remote_guard.web.access import User
from remote_guard.web.auth import deny, requires
from remote_guard.web.context import web_context
from remote_guard.web.evaluation import rule_titles
from remote_guard.web.my_sessions import FindingView, SessionView, my_sessions

router = APIRouter(prefix="/api/v1", tags=["teacher"])

MySessionsUser = Annotated[User, Depends(requires(access.can_see_my_sessions))]
RegisteringUser = Annotated[User, Depends(requires(access.can_register_one_to_ones))]

_T = TypeVar("_T")

Method = Literal["signed_form", "email", "letter", "phone_call", "online_form"]

_PROBLEM: dict[int | str, dict[str, Any]] = {
    422: {"description": "A field is wrong; nothing was saved"}
}
_REFUSED: dict[int | str, dict[str, Any]] = {
    403: {"description": "Not yours to change"},
    404: {"description": "No such record"},
}


# --- models -----------------------------------------------------------------------------------


class FindingOut(BaseModel):
    """A finding on a session: a problem (fail, warn, error) or one since resolved."""

    key: str
    rule_id: str
    rule_title: str
    clause: str
    status: str
    status_label: str
    severity: str
    message: str
    next_step: str
    exempted: bool
    exemption_reason: str | None = None
    exemption_until: datetime | None = None


class ContextNoteOut(BaseModel):
    id: int
    session_id: str
    text: str
    created_at: datetime
    mine: bool


class SessionOut(BaseModel):
    id: str
    subject: str
    kind: str
    start: datetime | None
    end: datetime | None
    phase: Literal["upcoming", "live", "past"]
    cancelled: bool
    problems: list[FindingOut]
    resolved: list[FindingOut]
    context_notes: list[ContextNoteOut]


class MySessionsOut(BaseModel):
    """The sessions the signed-in user organises, from ``since`` on."""

    since: datetime
    live: list[SessionOut]
    upcoming: list[SessionOut]
    past: list[SessionOut]


class ConsentIn(BaseModel):
    """The parental consent behind a one-to-one."""

    model_config = ConfigDict(extra="forbid")

    given_by: str = Field(min_length=1, max_length=MAX_NAME, description="Who gave consent")
    relationship: str = Field(min_length=1, max_length=MAX_RELATIONSHIP)
    given_on: date = Field(description="The date consent was given; not in the future")
    method: Method
    evidence_ref: str = Field(min_length=1, max_length=MAX_EVIDENCE)
    scope: Literal["one_to_one"] = "one_to_one"
    expires_on: date | None = Field(
        default=None, description="From this date the consent no longer covers sessions"
    )
    contact_email: str | None = Field(default=None, max_length=MAX_EMAIL)


class RegistrationIn(BaseModel):
    """A one-to-one to register: for one Teams meeting (``session_id``, from
    ``/one-to-ones/choices``) or for a time window (``starts_at`` and ``ends_at``)."""

    model_config = ConfigDict(extra="forbid")

    pupil_id: str = Field(min_length=1, max_length=64)
    activity: str = Field(min_length=1, max_length=100)
    session_id: str | None = Field(default=None, max_length=64)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    consent: ConsentIn


class ReevaluationOut(BaseModel):
    """The sessions re-evaluated straight after the change, and how many findings changed."""

    session_ids: list[str]
    findings_created: int
    findings_changed: int


class ConsentOut(BaseModel):
    id: str
    given_by: str
    relationship: str
    given_at: datetime
    method: str
    evidence_ref: str | None
    scope: str
    expires_at: datetime | None
    contact_email: str | None
    withdrawn_at: datetime | None


class RegistrationOut(BaseModel):
    id: str
    pupil_id: str
    pupil_name: str
    activity: str
    covers: Literal["meeting", "window"]
    meeting_subject: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    status: Literal["pending", "approved", "declined"]
    decision_reason: str | None = None  # why SLT declined, if they said
    consent: ConsentOut | None


class RegisteredOut(BaseModel):
    registration_id: str
    consent_id: str
    status: Literal["pending"]
    reevaluated: ReevaluationOut


class WithdrawalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    withdrawn_at: datetime | None = Field(default=None, description="Default: now")
    told_by: str = Field(min_length=1, max_length=MAX_NAME, description="Who told the school")
    note: str = Field(default="", max_length=MAX_NOTE)


class WithdrawalOut(BaseModel):
    withdrawal_id: str
    consent_id: str
    withdrawn_at: datetime
    reevaluated: ReevaluationOut


class ContextNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=NOTE_MAX_CHARS)


class PupilOut(BaseModel):
    id: str
    name: str
    class_name: str


class MeetingOut(BaseModel):
    session_id: str
    subject: str
    start: datetime | None
    end: datetime | None
    invited_pupil_ids: list[str]


class ChoicesOut(BaseModel):
    pupils: list[PupilOut]
    activities: list[str]
    meetings: list[MeetingOut]


# --- helpers ----------------------------------------------------------------------------------

# Where each field of the pages' checks sits in the API's body.
_LOCATIONS: dict[str, list[str]] = {
    "pupil": ["body", "pupil_id"],
    "activity": ["body", "activity"],
    "covers": ["body", "session_id"],
    "meeting": ["body", "session_id"],
    "starts_at": ["body", "starts_at"],
    "ends_at": ["body", "ends_at"],
    "scope": ["body", "consent", "scope"],
    **{
        name: ["body", "consent", name]
        for name in (
            "given_by",
            "relationship",
            "given_on",
            "method",
            "evidence_ref",
            "expires_on",
            "contact_email",
        )
    },
}


def _problems(errors: Mapping[str, str]) -> JSONResponse:
    detail = [
        {"loc": _LOCATIONS.get(name, ["body", name]), "msg": message}
        for name, message in errors.items()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _guarded(call: Callable[[], _T]) -> _T:
    try:
        return call()
    except teaching.NotFoundError:
        raise HTTPException(status_code=404) from None
    except teaching.RefusedError:
        deny()


def _utc(
    value: datetime | None, request: Request, name: str, errors: dict[str, str]
) -> datetime | None:
    """``value`` as an aware UTC datetime (naive: school local time), or a problem."""
    if value is None:
        return None
    try:
        return teaching.aware(value, teaching.zone_of(web_context(request))).astimezone(UTC)
    except (OverflowError, ValueError):
        errors[name] = "This time is out of range."
        return None


def _reevaluated(result: Reevaluation) -> ReevaluationOut:
    return ReevaluationOut(
        session_ids=result.session_ids,
        findings_created=len(result.created),
        findings_changed=len(result.changed),
    )


def _finding(view: FindingView) -> FindingOut:
    return FindingOut(
        key=view.key,
        rule_id=view.rule_id,
        rule_title=view.rule_title,
        clause=view.clause,
        status=view.status,
        status_label=view.status_label,
        severity=view.severity,
        message=view.message,
        next_step=view.next_step,
        exempted=view.exempted,
        exemption_reason=view.exemption_reason,
        exemption_until=view.exemption_until,
    )


def _session(view: SessionView) -> SessionOut:
    return SessionOut(
        id=view.id,
        subject=view.subject,
        kind=view.kind,
        start=view.start,
        end=view.end,
        phase=view.phase,
        cancelled=view.cancelled,
        problems=[_finding(item) for item in view.problems],
        resolved=[_finding(item) for item in view.resolved],
        context_notes=[
            ContextNoteOut(
                id=note.id,
                session_id=view.id,
                text=note.text,
                created_at=note.created_at,
                mine=note.mine,
            )
            for note in view.notes
        ],
    )


def _registration(view: RegistrationView, pupil_name: str) -> RegistrationOut:
    row = view.registration
    consent = view.consent
    return RegistrationOut(
        id=row.id,
        pupil_id=row.pupil_id,
        pupil_name=pupil_name,
        activity=row.activity,
        covers="meeting" if row.join_url else "window",
        meeting_subject=view.meeting_subject,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        status=row.status,
        decision_reason=row.decision_reason,
        consent=None
        if consent is None
        else ConsentOut(
            id=consent.id,
            given_by=consent.granted_by,
            relationship=consent.relationship,
            given_at=consent.granted_at,
            method=consent.method,
            evidence_ref=consent.evidence_ref,
            scope=consent.scope,
            expires_at=consent.expires_at,
            contact_email=consent.contact_email,
            withdrawn_at=consent.withdrawn_at,
        ),
    )


# --- routes -----------------------------------------------------------------------------------


@router.get("/my-sessions", response_model=MySessionsOut, summary="The sessions I run")
def get_my_sessions(request: Request, user: MySessionsUser) -> MySessionsOut:
    web = web_context(request)
    with web.db() as db:
        sessions = my_sessions(db, user.id, now=web.clock(), titles=rule_titles(web))
    return MySessionsOut(
        since=sessions.since,
        live=[_session(view) for view in sessions.live],
        upcoming=[_session(view) for view in sessions.upcoming],
        past=[_session(view) for view in sessions.past],
    )


@router.get(
    "/one-to-ones",
    response_model=list[RegistrationOut],
    summary="The one-to-ones I registered or run",
)
def get_one_to_ones(request: Request, user: MySessionsUser) -> list[RegistrationOut]:
    web = web_context(request)
    roster = web.people.roster()
    return [
        _registration(view, teaching.pupil_name(roster, view.registration.pupil_id))
        for view in teaching.registrations_for(web, user)
    ]


@router.get(
    "/one-to-ones/choices",
    response_model=ChoicesOut,
    summary="Pupils, approved activities and meetings a one-to-one can be registered with",
)
def get_choices(request: Request, user: RegisteringUser) -> ChoicesOut:
    web = web_context(request)
    choices = teaching.choices_for(web, user)
    pupils = set(choices.pupil_names)
    return ChoicesOut(
        pupils=[PupilOut(id=p.id, name=p.name, class_name=p.class_name) for p in choices.pupils],
        activities=choices.activities,
        meetings=[
            MeetingOut(
                session_id=meeting.session_id,
                subject=meeting.subject,
                start=meeting.start,
                end=meeting.end,
                invited_pupil_ids=sorted(meeting.invitee_ids & pupils),
            )
            for meeting in choices.meetings
        ],
    )


@router.post(
    "/one-to-ones",
    response_model=RegisteredOut,
    status_code=201,
    summary="Register a one-to-one with its parental consent (pending until SLT approve)",
    responses=_PROBLEM,
)
def post_one_to_one(
    request: Request, body: RegistrationIn, user: RegisteringUser
) -> RegisteredOut | JSONResponse:
    web = web_context(request)
    errors: dict[str, str] = {}
    starts_at = _utc(body.starts_at, request, "starts_at", errors)
    ends_at = _utc(body.ends_at, request, "ends_at", errors)
    by_window = body.starts_at is not None or body.ends_at is not None
    if body.session_id and by_window:
        errors["covers"] = "Give either session_id (one meeting) or starts_at and ends_at."
    consent = body.consent
    draft = RegistrationDraft(
        pupil_id=body.pupil_id.strip(),
        activity=body.activity.strip(),
        covers="window" if by_window and not body.session_id else "meeting",
        session_id=body.session_id,
        starts_at=starts_at,
        ends_at=ends_at,
        consent=ConsentDraft(
            given_by=consent.given_by.strip(),
            relationship=consent.relationship.strip(),
            given_on=consent.given_on,
            method=consent.method,
            evidence_ref=consent.evidence_ref.strip(),
            scope=consent.scope,
            expires_on=consent.expires_on,
            contact_email=(consent.contact_email or "").strip() or None,
        ),
    )
    outcome = _guarded(lambda: teaching.register_one_to_one(web, user, draft, parse_errors=errors))
    if not outcome.ok or outcome.registered is None:
        return _problems(outcome.errors)
    return RegisteredOut(
        registration_id=outcome.registered.registration_id,
        consent_id=outcome.registered.consent_id,
        status="pending",
        reevaluated=_reevaluated(outcome.reevaluation),
    )


@router.post(
    "/consents/{consent_id}/withdrawal",
    response_model=WithdrawalOut,
    status_code=201,
    summary="Record that parental consent was withdrawn (it applies at once)",
    responses={**_PROBLEM, **_REFUSED},
)
def post_withdrawal(
    request: Request, consent_id: str, body: WithdrawalIn, user: MySessionsUser
) -> WithdrawalOut | JSONResponse:
    web = web_context(request)
    errors: dict[str, str] = {}
    withdrawn_at = _utc(body.withdrawn_at, request, "withdrawn_at", errors)
    if body.withdrawn_at is None:
        withdrawn_at = web.clock()
    draft = WithdrawalDraft(
        withdrawn_at=withdrawn_at, told_by=body.told_by.strip(), note=body.note.strip()
    )
    outcome = _guarded(
        lambda: teaching.withdraw_consent(web, user, consent_id, draft, parse_errors=errors)
    )
    if not outcome.ok or outcome.withdrawal_id is None or withdrawn_at is None:
        return _problems(outcome.errors)
    return WithdrawalOut(
        withdrawal_id=outcome.withdrawal_id,
        consent_id=consent_id,
        withdrawn_at=withdrawn_at,
        reevaluated=_reevaluated(outcome.reevaluation),
    )


@router.post(
    "/sessions/{session_id}/context-notes",
    response_model=ContextNoteOut,
    status_code=201,
    summary="Add context for the DSL to a flagged session I run (it never changes its status)",
    responses={**_PROBLEM, **_REFUSED},
)
def post_context_note(
    request: Request, session_id: str, body: ContextNoteIn, user: MySessionsUser
) -> ContextNoteOut | JSONResponse:
    web = web_context(request)
    outcome = _guarded(lambda: teaching.add_context(web, user, session_id, body.text))
    if not outcome.ok or outcome.note_id is None:
        return _problems(outcome.errors)
    return ContextNoteOut(
        id=outcome.note_id,
        session_id=session_id,
        text=body.text.strip(),
        created_at=web.clock(),
        mine=True,
    )
