"""SLT's pages: the board of live and upcoming sessions, one-to-one approvals, the approved
activities, monitoring drop-ins (schedule, put in the calendar, record what was seen) and
drop-in coverage this half-term.

Views are thin: ``web.slt_actions`` checks access and makes each change with its audit entries.
A change answers 303 to the page that shows it, with ``?done=<what>`` naming a fixed message
(never text the user sent); a refused change shows the page again with the reason.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from remote_guard.consent.approvals import ApprovalError
from remote_guard.dropins.calendar import REMINDER_MINUTES
from remote_guard.dropins.models import OUTCOME_LABELS, STATUS_LABELS, DropInOutcome
from remote_guard.dropins.service import MAX_MINUTES, MIN_MINUTES, DropInError
from remote_guard.one_to_ones.service import METHOD_LABELS
from remote_guard.one_to_ones.service import STATUS_LABELS as REGISTRATION_STATUS_LABELS
from remote_guard.subscriptions.alerts import open_alerts
from remote_guard.web import access, slt_actions
from remote_guard.web.access import User
from remote_guard.web.auth import requires
from remote_guard.web.context import web_context
from remote_guard.web.render import render

router = APIRouter(include_in_schema=False)

SltUser = Annotated[User, Depends(requires(access.can_see_slt_board))]
DeciderUser = Annotated[User, Depends(requires(access.can_decide_registrations))]
DropInUser = Annotated[User, Depends(requires(access.can_schedule_drop_ins))]
CoverageUser = Annotated[User, Depends(requires(access.can_see_coverage))]

DONE_MESSAGES = {
    "approved": "The registration is approved. Its sessions have been checked again.",
    "declined": "The registration is declined. The teacher can see your reason.",
    "activity-added": "The activity is on the approved list.",
    "activity-retired": (
        "The activity is retired. Sessions that start from now on are no longer approved for "
        "it; earlier ones keep their approval."
    ),
    "outcome": "What you saw is recorded.",
    "concern": "What you saw is recorded, and the concern is on the DSL's case for this session.",
    "cancelled": (
        "The drop-in is cancelled. Delete its event from your Outlook calendar yourself: "
        "remote_guard does not remove calendar items."
    ),
    "in-calendar": "The drop-in is in your Outlook calendar, with a reminder.",
}


def _done(done: str | None) -> str | None:
    return DONE_MESSAGES.get(done or "")


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _common(request: Request) -> dict[str, Any]:
    web = web_context(request)
    return {"names": slt_actions.names(web), "now": web.clock()}


# --- the board -------------------------------------------------------------------------------


@router.get("/slt")
def board(request: Request, user: SltUser, school: str | None = None) -> Response:
    web = web_context(request)
    rows = slt_actions.board(web, user, school)
    # Staff alone with a pupil right now (change notifications), to drop in on at once.
    with web.db() as db:
        live_alerts = open_alerts(
            db,
            visible=lambda key: access.can_see_school(user, key),
            school=slt_actions.school_filter(user, school),
        )
    return render(
        request,
        "slt/board.html",
        {
            "title": "SLT board",
            "live_alerts": live_alerts,
            "rows": rows,
            "live": [row for row in rows if row.live],
            "upcoming": [row for row in rows if not row.live],
            "school": school or "",
            "schools": slt_actions.visible_school_keys(web, user),
            "can_drop_in": access.can_schedule_drop_ins(user),
            "user_id": user.id,
            **_common(request),
        },
    )


# --- one-to-one approvals ----------------------------------------------------------------------


def _approvals_page(
    request: Request,
    user: User,
    *,
    error: str | None = None,
    error_for: str = "",
    done: str | None = None,
    status_code: int = 200,
) -> Response:
    web = web_context(request)
    found = slt_actions.list_approvals(web, user)
    slt_actions.record_approvals_viewed(web, found)
    return render(
        request,
        "slt/one_to_ones.html",
        {
            "title": "One-to-one approvals",
            "pending": found.pending,
            "decided": found.decided,
            "may_decide": {
                item.row.id: slt_actions.may_decide(web, user, item.row)
                for item in found.pending + found.decided
            },
            "method_labels": METHOD_LABELS,
            "status_labels": REGISTRATION_STATUS_LABELS,
            "error": error,
            "error_for": error_for,
            "done": _done(done),
            **_common(request),
        },
        status_code=status_code,
    )


@router.get("/slt/one-to-ones")
def one_to_ones(request: Request, user: DeciderUser, done: str | None = None) -> Response:
    return _approvals_page(request, user, done=done)


@router.post("/slt/one-to-ones/{registration_id}/approve")
def approve(request: Request, user: DeciderUser, registration_id: str) -> Response:
    web = web_context(request)
    try:
        slt_actions.decide_registration(web, user, registration_id, approve=True, reason=None)
    except ApprovalError as exc:
        return _approvals_page(
            request, user, error=str(exc), error_for=registration_id, status_code=409
        )
    return _see_other("/slt/one-to-ones?done=approved")


@router.post("/slt/one-to-ones/{registration_id}/decline")
def decline(
    request: Request,
    user: DeciderUser,
    registration_id: str,
    reason: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    web = web_context(request)
    try:
        slt_actions.decide_registration(web, user, registration_id, approve=False, reason=reason)
    except ApprovalError as exc:
        return _approvals_page(
            request, user, error=str(exc), error_for=registration_id, status_code=409
        )
    return _see_other("/slt/one-to-ones?done=declined")


# --- approved activities -----------------------------------------------------------------------


def _activities_page(
    request: Request,
    *,
    error: str | None = None,
    name: str = "",
    done: str | None = None,
    status_code: int = 200,
) -> Response:
    web = web_context(request)
    return render(
        request,
        "slt/activities.html",
        {
            "title": "Approved one-to-one activities",
            "activities": slt_actions.list_activities(web),
            "error": error,
            "name": name,
            "done": _done(done),
            **_common(request),
        },
        status_code=status_code,
    )


@router.get("/slt/activities")
def activities(request: Request, user: DeciderUser, done: str | None = None) -> Response:
    return _activities_page(request, done=done)


@router.post("/slt/activities")
def add_activity(
    request: Request, user: DeciderUser, name: Annotated[str, Form(max_length=1000)] = ""
) -> Response:
    try:
        slt_actions.add_activity(web_context(request), user, name)
    except ApprovalError as exc:
        return _activities_page(request, error=str(exc), name=name, status_code=400)
    return _see_other("/slt/activities?done=activity-added")


@router.post("/slt/activities/retire")
def retire_activity(
    request: Request, user: DeciderUser, name: Annotated[str, Form(max_length=1000)] = ""
) -> Response:
    try:
        slt_actions.retire_activity(web_context(request), user, name)
    except ApprovalError as exc:
        return _activities_page(request, error=str(exc), status_code=409)
    return _see_other("/slt/activities?done=activity-retired")


# --- drop-ins ----------------------------------------------------------------------------------


@router.get("/slt/drop-ins")
def drop_ins(request: Request, user: DropInUser) -> Response:
    web = web_context(request)
    return render(
        request,
        "slt/dropins.html",
        {
            "title": "Monitoring drop-ins",
            "dropins": slt_actions.list_drop_ins(web, user),
            "status_labels": STATUS_LABELS,
            "outcome_labels": OUTCOME_LABELS,
            "user_id": user.id,
            **_common(request),
        },
    )


def _new_drop_in_page(
    request: Request,
    user: User,
    session_id: str,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    web = web_context(request)
    session = slt_actions.session_for_drop_in(web, user, session_id)
    return render(
        request,
        "slt/dropin_new.html",
        {
            "title": "Schedule a monitoring drop-in",
            "session": session,
            "error": error,
            "form": form or {"part": "whole", "start": "", "minutes": "15"},
            "reminder_minutes": REMINDER_MINUTES,
            "min_minutes": MIN_MINUTES,
            "max_minutes": MAX_MINUTES,
            **_common(request),
        },
        status_code=status_code,
    )


@router.get("/slt/drop-ins/new")
def new_drop_in(
    request: Request, user: DropInUser, session_id: Annotated[str, Query(max_length=200)]
) -> Response:
    return _new_drop_in_page(request, user, session_id)


def _clock_time(text: str) -> time | None:
    try:
        return time.fromisoformat(text) if text else None
    except ValueError:
        return None


@router.post("/slt/drop-ins")
def schedule_drop_in(
    request: Request,
    user: DropInUser,
    *,
    session_id: Annotated[str, Form(max_length=200)],
    part: Annotated[str, Form(max_length=10)] = "whole",
    start: Annotated[str, Form(max_length=10)] = "",
    minutes: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    web = web_context(request)
    form = {"part": part, "start": start, "minutes": minutes}
    starts_at: datetime | None = None
    length: int | None = None
    if part == "part":
        clock_time = _clock_time(start)
        session = slt_actions.session_for_drop_in(web, user, session_id)
        if clock_time is None or not minutes.isdigit():
            return _new_drop_in_page(
                request,
                user,
                session_id,
                error="Give the time to join (for example 10:15) and how many minutes to stay.",
                form=form,
                status_code=400,
            )
        starts_at = slt_actions.local_start(web, session, clock_time)
        length = int(minutes)
    try:
        result = slt_actions.schedule_drop_in(
            web, user, session_id, starts_at=starts_at, minutes=length
        )
    except DropInError as exc:
        return _new_drop_in_page(
            request, user, session_id, error=str(exc), form=form, status_code=409
        )
    suffix = "?done=in-calendar" if result.added else ""
    return _see_other(f"/slt/drop-ins/{result.dropin.id}{suffix}")


def _drop_in_page(
    request: Request,
    user: User,
    dropin_id: str,
    *,
    error: str | None = None,
    done: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    web = web_context(request)
    view = slt_actions.get_drop_in(web, user, dropin_id)
    return render(
        request,
        "slt/dropin.html",
        {
            "title": "Monitoring drop-in",
            "view": view,
            "row": view.row,
            "manage": access.can_manage_drop_in(user, view.row),
            "error": error,
            "done": _done(done),
            "form": form or {"outcome": view.row.outcome or "", "notes": view.row.notes or ""},
            "status_labels": STATUS_LABELS,
            "outcome_labels": OUTCOME_LABELS,
            "outcomes": list(DropInOutcome),
            "is_dsl": access.can_see_dsl_queue(user),
            **_common(request),
        },
        status_code=status_code,
    )


@router.get("/slt/drop-ins/{dropin_id}")
def drop_in(
    request: Request, user: DropInUser, dropin_id: str, done: str | None = None
) -> Response:
    return _drop_in_page(request, user, dropin_id, done=done)


@router.post("/slt/drop-ins/{dropin_id}/calendar")
def retry_calendar(request: Request, user: DropInUser, dropin_id: str) -> Response:
    try:
        result = slt_actions.retry_calendar(web_context(request), user, dropin_id)
    except DropInError as exc:
        return _drop_in_page(request, user, dropin_id, error=str(exc), status_code=409)
    # Failed again: the drop-in's page says why, with the retry button.
    suffix = "?done=in-calendar" if result.added else ""
    return _see_other(f"/slt/drop-ins/{dropin_id}{suffix}")


@router.post("/slt/drop-ins/{dropin_id}/outcome")
def record_outcome(
    request: Request,
    user: DropInUser,
    dropin_id: str,
    outcome: Annotated[str, Form(max_length=40)] = "",
    notes: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    try:
        row = slt_actions.record_outcome(
            web_context(request), user, dropin_id, outcome=outcome, notes=notes
        )
    except DropInError as exc:
        return _drop_in_page(
            request,
            user,
            dropin_id,
            error=str(exc),
            form={"outcome": outcome, "notes": notes},
            status_code=400,
        )
    done = "concern" if row.outcome == DropInOutcome.CONCERN_RAISED.value else "outcome"
    return _see_other(f"/slt/drop-ins/{dropin_id}?done={done}")


@router.post("/slt/drop-ins/{dropin_id}/cancel")
def cancel_drop_in(request: Request, user: DropInUser, dropin_id: str) -> Response:
    try:
        slt_actions.cancel_drop_in(web_context(request), user, dropin_id)
    except DropInError as exc:
        return _drop_in_page(request, user, dropin_id, error=str(exc), status_code=409)
    return _see_other(f"/slt/drop-ins/{dropin_id}?done=cancelled")


# --- coverage ----------------------------------------------------------------------------------


@router.get("/slt/coverage")
def drop_in_coverage(request: Request, user: CoverageUser, school: str | None = None) -> Response:
    web = web_context(request)
    return render(
        request,
        "slt/coverage.html",
        {
            "title": "Drop-in coverage",
            "coverage": slt_actions.drop_in_coverage(web, user, school),
            "kind_labels": {
                "peer_to_peer": "A Teams call (no subject)",
                "direct_chat": "A chat (no subject)",
            },
            "school": school or "",
            "schools": slt_actions.visible_school_keys(web, user),
            **_common(request),
        },
    )
