"""Server-rendered pages: the Jinja2 environment and :func:`render`.

Templates live in ``web/templates``, extend ``base.html`` and fill ``{% block main %}``.
Autoescaping is on for every template (names, subjects and notes come from Teams and from
users); ``StrictUndefined`` makes a misspelt variable an error rather than an empty string.
Every template gets ``user`` (or None), ``nav`` (the pages the user may open), ``title``,
``csrf_input()`` (the hidden CSRF field for a POST form), and the ``local_time`` /
``local_date`` filters (school local time, e.g. "Wed 18 Nov 10:00").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from remote_guard.web import access
from remote_guard.web.access import User
from remote_guard.web.context import web_context
from remote_guard.web.security import CSRF_FIELD

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str
    allowed: Callable[[User], bool]


# The main navigation, in order; an item shows only to users its decision allows.
NAV: tuple[NavItem, ...] = (
    NavItem("/dsl", "DSL review queue", access.can_see_dsl_queue),
    NavItem("/slt", "SLT board", access.can_see_slt_board),
    NavItem("/slt/one-to-ones", "One-to-one approvals", access.can_decide_registrations),
    NavItem("/slt/drop-ins", "Drop-ins", access.can_schedule_drop_ins),
    NavItem("/slt/coverage", "Drop-in coverage", access.can_see_coverage),
    NavItem("/slt/activities", "Approved activities", access.can_decide_registrations),
    NavItem("/my-sessions", "My sessions", access.can_see_my_sessions),
    NavItem("/my-sessions/one-to-ones", "My one-to-ones", access.can_register_one_to_ones),
)


def make_templates(timezone: str) -> Environment:
    """The Jinja2 environment for the app's templates, with times shown in ``timezone``."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    zone = ZoneInfo(timezone)

    def local_time(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%a %-d %b %H:%M") if value else ""

    def local_date(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%a %-d %b %Y") if value else ""

    environment.filters["local_time"] = local_time
    environment.filters["local_date"] = local_date
    return environment


def nav_for(user: User | None, path: str) -> list[dict[str, Any]]:
    """The navigation links ``user`` may follow, the current one marked."""
    if user is None:
        return []
    return [
        {"href": item.href, "label": item.label, "current": path == item.href}
        for item in NAV
        if item.allowed(user)
    ]


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with the app's common context plus ``context``."""
    web = web_context(request)
    user: User | None = getattr(request.state, "user", None)
    session = getattr(request.state, "web_session", None)
    csrf_token = session.csrf_token if session is not None else ""

    def csrf_input() -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(
            CSRF_FIELD, escape(csrf_token)
        )

    values: dict[str, Any] = {
        "request": request,
        "user": user,
        "nav": nav_for(user, request.url.path),
        "title": "remote_guard",
        "csrf_token": csrf_token,
        "csrf_input": csrf_input,
        "school_names": web.school_names,
        **(context or {}),
    }
    body = web.templates.get_template(template).render(values)
    return HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))
