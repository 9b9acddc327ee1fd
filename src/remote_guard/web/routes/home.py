"""``/``: the landing page for visitors, and each member of staff's way to their home page."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from remote_guard.web.access import home_path
from remote_guard.web.auth import optional_user
from remote_guard.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(request: Request) -> Response:
    user = optional_user(request)
    if user is None:
        return render(request, "landing.html", {"title": "Sign in"})
    return RedirectResponse(home_path(user), status_code=303)
