"""A teacher's pages: the sessions they run, their one-to-one register, withdrawals of consent,
and context on a flagged session.

``/my-sessions``                                   upcoming, live and past sessions with findings
``/my-sessions/sessions/{id}``                     one session; add context for the DSL (POST
                                                   ``.../context``)
``/my-sessions/one-to-ones``                       the one-to-ones they registered or run
``/my-sessions/one-to-ones/new``                   register a one-to-one with its consent
``/my-sessions/consents/{id}/withdraw``            the consent, and recording its withdrawal

Forms post back to their own address; on a problem the page comes back with what was typed and
a message by each field (nothing is saved), on success the browser is sent on (POST, redirect,
GET) with a fixed confirmation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from remote_guard.cases.models import NOTE_MAX_CHARS
from remote_guard.collect.models import SessionRow
from remote_guard.one_to_ones.service import (
    MAX_EMAIL,
    MAX_EVIDENCE,
    MAX_NAME,
    MAX_NOTE,
    MAX_RELATIONSHIP,
    METHOD_LABELS,
)
from remote_guard.web import access, teaching
from remote_guard.web.access import User
from remote_guard.web.auth import deny, requires
from remote_guard.web.context import web_context
from remote_guard.web.evaluation import rule_titles
from remote_guard.web.my_sessions import my_sessions, session_view
from remote_guard.web.render import render

router = APIRouter(include_in_schema=False)

MySessionsUser = Annotated[User, Depends(requires(access.can_see_my_sessions))]
RegisteringUser = Annotated[User, Depends(requires(access.can_register_one_to_ones))]

_DONE = {
    "registered": (
        "The one-to-one is registered. It now waits for SLT approval; until SLT approve it, "
        "the one-to-one is still flagged."
    ),
    "withdrawn": (
        "The withdrawal of consent is recorded. It applies at once: one-to-ones with this "
        "pupil that relied on it are flagged."
    ),
    "noted": "Your context is added. The DSL sees it with the session's findings.",
}

LIMITS = {
    "given_by": MAX_NAME,
    "relationship": MAX_RELATIONSHIP,
    "evidence_ref": MAX_EVIDENCE,
    "contact_email": MAX_EMAIL,
    "told_by": MAX_NAME,
    "note": MAX_NOTE,
    "text": NOTE_MAX_CHARS,
}

_T = TypeVar("_T")


def _done(request: Request) -> str | None:
    return _DONE.get(request.query_params.get("done", ""))


def _guarded(call: Callable[[], _T]) -> _T:
    """Run a teacher action, turning "no such record" into 404 and "not yours" into 403.

    Raises:
        HTTPException: 404 or 403.
    """
    try:
        return call()
    except teaching.NotFoundError:
        raise HTTPException(status_code=404) from None
    except teaching.RefusedError:
        deny()


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


# --- My sessions ------------------------------------------------------------------------------


@router.get("/my-sessions")
def my_sessions_page(request: Request, user: MySessionsUser) -> Response:
    web = web_context(request)
    with web.db() as db:
        sessions = my_sessions(db, user.id, now=web.clock(), titles=rule_titles(web))
    return render(
        request,
        "teacher/my_sessions.html",
        {
            "title": "My sessions",
            "sessions": sessions,
            "can_register": access.can_register_one_to_ones(user),
            "done": _done(request),
        },
    )


def _session_page(
    request: Request,
    user: User,
    session_id: str,
    *,
    errors: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    web = web_context(request)
    with web.db() as db:
        row = db.get(SessionRow, session_id)
        if row is None:
            raise HTTPException(status_code=404)
        if not access.runs_session(user, row):
            deny()
        view = session_view(db, row, now=web.clock(), titles=rule_titles(web), viewer_id=user.id)
    return render(
        request,
        "teacher/session.html",
        {
            "title": view.subject,
            "session": view,
            "can_add_context": access.can_add_context(user, row),
            "errors": dict(errors or {}),
            "values": dict(values or {}),
            "limits": LIMITS,
            "done": _done(request),
        },
        status_code=status_code,
    )


@router.get("/my-sessions/sessions/{session_id}")
def session_page(request: Request, session_id: str, user: MySessionsUser) -> Response:
    return _session_page(request, user, session_id)


@router.post("/my-sessions/sessions/{session_id}/context")
async def add_context(request: Request, session_id: str, user: MySessionsUser) -> Response:
    values = await _form(request)
    return await run_in_threadpool(_add_context, request, user, session_id, values)


def _add_context(request: Request, user: User, session_id: str, values: dict[str, str]) -> Response:
    web = web_context(request)
    outcome = _guarded(lambda: teaching.add_context(web, user, session_id, values.get("text", "")))
    if not outcome.ok:
        return _session_page(
            request, user, session_id, errors=outcome.errors, values=values, status_code=422
        )
    return RedirectResponse(
        f"/my-sessions/sessions/{session_id}?done=noted#context", status_code=303
    )


# --- one-to-ones ------------------------------------------------------------------------------


@router.get("/my-sessions/one-to-ones")
def one_to_ones_page(request: Request, user: MySessionsUser) -> Response:
    web = web_context(request)
    registrations = teaching.registrations_for(web, user)
    roster = web.people.roster()
    return render(
        request,
        "teacher/one_to_ones.html",
        {
            "title": "My one-to-ones",
            "registrations": registrations,
            "pupil_names": {
                view.registration.pupil_id: teaching.pupil_name(roster, view.registration.pupil_id)
                for view in registrations
            },
            "now": web.clock(),
            "methods": METHOD_LABELS,
            "can_register": access.can_register_one_to_ones(user),
            "done": _done(request),
        },
    )


def _register_page(
    request: Request,
    user: User,
    *,
    choices: teaching.Choices,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    web = web_context(request)
    roster = web.people.roster()
    return render(
        request,
        "teacher/register.html",
        {
            "title": "Register a one-to-one",
            "choices": choices,
            "pupil_names": {
                pupil: teaching.pupil_name(roster, pupil) for pupil in user.class_pupil_ids
            },
            "methods": METHOD_LABELS,
            "values": {"covers": "meeting", "scope": "one_to_one", **(values or {})},
            "errors": dict(errors or {}),
            "limits": LIMITS,
            "today": web.clock().astimezone(teaching.zone_of(web)).date().isoformat(),
        },
        status_code=status_code,
    )


@router.get("/my-sessions/one-to-ones/new")
def register_page(request: Request, user: RegisteringUser) -> Response:
    web = web_context(request)
    return _register_page(request, user, choices=teaching.choices_for(web, user))


@router.post("/my-sessions/one-to-ones/new")
async def register_submit(request: Request, user: RegisteringUser) -> Response:
    values = await _form(request)
    return await run_in_threadpool(_register_submit, request, user, values)


def _register_submit(request: Request, user: User, values: dict[str, str]) -> Response:
    web = web_context(request)
    choices = teaching.choices_for(web, user)
    draft, parse_errors = teaching.registration_from_form(values, teaching.zone_of(web))
    outcome = _guarded(
        lambda: teaching.register_one_to_one(
            web, user, draft, parse_errors=parse_errors, choices=choices
        )
    )
    if not outcome.ok:
        return _register_page(
            request, user, choices=choices, values=values, errors=outcome.errors, status_code=422
        )
    return RedirectResponse("/my-sessions/one-to-ones?done=registered", status_code=303)


def _withdraw_page(
    request: Request,
    user: User,
    consent_id: str,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    web = web_context(request)
    context = _guarded(lambda: teaching.consent_for(web, user, consent_id))
    now_local = web.clock().astimezone(teaching.zone_of(web))
    defaults = {"withdrawn_at": now_local.strftime("%Y-%m-%dT%H:%M")}
    return render(
        request,
        "teacher/withdraw.html",
        {
            "title": "Consent for " + context.pupil_name,
            "context": context,
            "methods": METHOD_LABELS,
            "values": {**defaults, **(values or {})},
            "errors": dict(errors or {}),
            "limits": LIMITS,
            "done": _done(request),
        },
        status_code=status_code,
    )


@router.get("/my-sessions/consents/{consent_id}/withdraw")
def withdraw_page(request: Request, consent_id: str, user: MySessionsUser) -> Response:
    return _withdraw_page(request, user, consent_id)


@router.post("/my-sessions/consents/{consent_id}/withdraw")
async def withdraw_submit(request: Request, consent_id: str, user: MySessionsUser) -> Response:
    values = await _form(request)
    return await run_in_threadpool(_withdraw_submit, request, user, consent_id, values)


def _withdraw_submit(
    request: Request, user: User, consent_id: str, values: dict[str, str]
) -> Response:
    web = web_context(request)
    draft, parse_errors = teaching.withdrawal_from_form(values, teaching.zone_of(web))
    outcome = _guarded(
        lambda: teaching.withdraw_consent(web, user, consent_id, draft, parse_errors=parse_errors)
    )
    if not outcome.ok:
        return _withdraw_page(
            request, user, consent_id, values=values, errors=outcome.errors, status_code=422
        )
    return RedirectResponse(
        f"/my-sessions/consents/{consent_id}/withdraw?done=withdrawn", status_code=303
    )
