"""A teacher's pages: the sessions they run (placeholder until the teacher pages land)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from remote_guard.web import access
from remote_guard.web.access import User
from remote_guard.web.auth import requires
from remote_guard.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/my-sessions")
def my_sessions(
    request: Request, user: Annotated[User, Depends(requires(access.can_see_my_sessions))]
) -> Response:
    return render(
        request,
        "placeholder.html",
        {
            "title": "My sessions",
            "summary": "The remote sessions you run, upcoming, live and past, with anything "
            "found before or after each.",
        },
    )
