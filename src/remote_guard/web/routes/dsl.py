"""The DSL's pages: the review queue, a session's evidence with its case, and the hand-off.

- ``GET /dsl``: findings grouped by session, newest first, filtered by a GET form.
- ``GET /dsl/sessions/{id}``: the evidence (recorded in the audit trail as a view) and the case.
- ``POST /dsl/sessions/{id}/status`` | ``/assign`` | ``/notes``: the case actions (CSRF-checked
  by the app); each answers 303 back to the page, or the page again with the problem (400).
- ``GET /dsl/sessions/{id}/handoff`` (printable) and ``/handoff.csv``: the hand-off summary
  for CPOMS or MyConcern; exporting is recorded in the audit trail.

Who may do what is decided in ``web.access`` (``can_see_dsl_queue``, ``can_open_case``,
``can_change_case``, ``can_assign_case``, ``can_export_case``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from remote_guard.cases import service as cases
from remote_guard.cases.handoff import csv_filename, handoff_rows, to_csv
from remote_guard.cases.models import NOTE_MAX_CHARS, CaseStatus
from remote_guard.web import access, dsl_views
from remote_guard.web.access import User
from remote_guard.web.auth import CurrentUser, requires
from remote_guard.web.context import web_context
from remote_guard.web.render import render

router = APIRouter(include_in_schema=False)

_DONE = {
    "status": "The case's status was changed.",
    "assign": "The case's assignment was changed.",
    "note": "Your note was added.",
}


@router.get("/dsl")
def review_queue(
    request: Request, user: Annotated[User, Depends(requires(access.can_see_dsl_queue))]
) -> Response:
    web = web_context(request)
    query = dsl_views.parse_queue_query(
        user, dict(request.query_params), timezone=web.settings.school_day.timezone
    )
    people = dsl_views.roster(request)
    book = dsl_views.clause_book(request)
    with web.db() as db:
        page = cases.list_queue(db, query.filters, page=query.page, per_page=dsl_views.PER_PAGE)
        rule_ids = cases.rule_ids_in_findings(db)
    allowed = access.visible_schools(user)
    schools = [
        (key, name) for key, name in web.school_names.items() if allowed is None or key in allowed
    ]
    filters = {key: value for key, value in query.values.items() if value}

    def page_link(number: int) -> str:
        return "/dsl?" + urlencode({**filters, "page": str(number)})

    return render(
        request,
        "dsl/queue.html",
        {
            "title": "DSL review queue",
            "query": query.values,
            "problems": query.problems,
            "page": page,
            "page_link": page_link,
            "schools": schools,
            "rules": [(rule_id, book.rule_title(rule_id)) for rule_id in rule_ids],
            "severities": dsl_views.SEVERITY_CHOICES,
            "case_statuses": dsl_views.CASE_STATUS_CHOICES,
            "finding_statuses": dsl_views.FINDING_STATUS_CHOICES,
            "status_labels": dsl_views.STATUS_LABELS,
            "resolution_labels": dsl_views.RESOLUTION_CHOICES,
            "severity_order": [severity.value for severity in cases.SEVERITY_ORDER],
            "names": people.names,
            "quote": _quote,
        },
    )


def _quote(value: str) -> str:
    return quote(value, safe="")


def _evidence_page(
    request: Request,
    user: User,
    session_id: str,
    *,
    problem: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    evidence = dsl_views.evidence_for(request, user, session_id, action="evidence")
    people = dsl_views.roster(request)
    case_row = evidence.case
    current = case_row.assignee_id if case_row is not None else None
    eligible = dsl_views.assignees(people, evidence.session.school)
    choices = [
        (person_id, name)
        for person_id, name in eligible
        if access.can_assign_case(user, evidence.session, assignee_id=person_id, current_id=current)
    ]
    can_unassign = current is not None and access.can_assign_case(
        user, evidence.session, assignee_id=None, current_id=current
    )
    status = case_row.status if case_row is not None else CaseStatus.NEW.value
    done = request.query_params.get("done", "")
    return render(
        request,
        "dsl/session.html",
        {
            "title": f"Session: {evidence.session.subject or 'no subject'}",
            "e": evidence,
            "status": status,
            "status_labels": dsl_views.STATUS_LABELS,
            "resolutions": dsl_views.RESOLUTION_CHOICES,
            "note_kind_labels": {
                kind.value: label for kind, label in cases.NOTE_KIND_LABELS.items()
            },
            "next_statuses": sorted(
                (target.value for target in cases.TRANSITIONS[CaseStatus(status)]),
            ),
            "can_change": access.can_change_case(user, evidence.session),
            "assign_choices": choices,
            "can_unassign": can_unassign,
            "names": people.names,
            "school_name": web_context(request).school_names.get(evidence.session.school or "", ""),
            "problem": problem or {},
            "form": form or {},
            "done": _DONE.get(done, ""),
            "note_max": NOTE_MAX_CHARS,
            "quote": _quote,
        },
        status_code=status_code,
    )


@router.get("/dsl/sessions/{session_id}")
def session_evidence(request: Request, user: CurrentUser, session_id: str) -> Response:
    return _evidence_page(request, user, session_id)


def _back(session_id: str, done: str) -> Response:
    return RedirectResponse(f"/dsl/sessions/{_quote(session_id)}?done={done}#case", status_code=303)


@router.post("/dsl/sessions/{session_id}/status")
def change_status(
    request: Request,
    *,
    user: CurrentUser,
    session_id: str,
    to: Annotated[str, Form()],
    resolution: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    web = web_context(request)
    try:
        dsl_views.change_status(
            web, user, session_id, to=to, resolution=resolution or None, note=note
        )
    except cases.CaseError as exc:
        return _evidence_page(
            request,
            user,
            session_id,
            problem={"status": str(exc)},
            form={"resolution": resolution, "status_note": note[: NOTE_MAX_CHARS + 100]},
            status_code=400,
        )
    return _back(session_id, "status")


@router.post("/dsl/sessions/{session_id}/assign")
def assign(
    request: Request,
    user: CurrentUser,
    session_id: str,
    assignee: Annotated[str, Form()] = "",
) -> Response:
    web = web_context(request)
    try:
        dsl_views.assign(web, user, session_id, assignee_id=assignee or None)
    except cases.CaseError as exc:
        return _evidence_page(
            request, user, session_id, problem={"assign": str(exc)}, status_code=400
        )
    return _back(session_id, "assign")


@router.post("/dsl/sessions/{session_id}/notes")
def add_note(
    request: Request,
    user: CurrentUser,
    session_id: str,
    text: Annotated[str, Form()] = "",
) -> Response:
    web = web_context(request)
    try:
        dsl_views.add_note(web, user, session_id, text=text)
    except cases.CaseError as exc:
        return _evidence_page(
            request,
            user,
            session_id,
            problem={"note": str(exc)},
            form={"note": text[: NOTE_MAX_CHARS + 100]},
            status_code=400,
        )
    return _back(session_id, "note")


def _handoff_context(request: Request) -> dict[str, Any]:
    return {
        "names": dsl_views.roster(request).names,
        "timezone": web_context(request).settings.school_day.timezone,
        "school_names": web_context(request).school_names,
    }


@router.get("/dsl/sessions/{session_id}/handoff")
def handoff_page(request: Request, user: CurrentUser, session_id: str) -> Response:
    evidence = dsl_views.evidence_for(request, user, session_id, action="handoff_print")
    context = _handoff_context(request)
    return render(
        request,
        "dsl/handoff.html",
        {
            "title": "Hand-off summary",
            "prepared_at": web_context(request).clock(),
            "e": evidence,
            "status_labels": dsl_views.STATUS_LABELS,
            "resolutions": dsl_views.RESOLUTION_CHOICES,
            "note_kind_labels": {
                kind.value: label for kind, label in cases.NOTE_KIND_LABELS.items()
            },
            "names": context["names"],
            "school_name": context["school_names"].get(evidence.session.school or "", ""),
            "quote": _quote,
        },
    )


@router.get("/dsl/sessions/{session_id}/handoff.csv")
def handoff_csv(request: Request, user: CurrentUser, session_id: str) -> Response:
    evidence = dsl_views.evidence_for(request, user, session_id, action="handoff_csv")
    context = _handoff_context(request)
    body = to_csv(handoff_rows(evidence, **context))
    filename = csv_filename(evidence, timezone=context["timezone"])
    return Response(
        # A byte-order mark, so Excel reads the UTF-8 names and subjects correctly.
        content="\ufeff" + body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
