"""SLT's pages: the board of live and upcoming sessions (placeholder until the SLT pages land)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from remote_guard.web import access
from remote_guard.web.access import User
from remote_guard.web.auth import requires
from remote_guard.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/slt")
def board(
    request: Request, user: Annotated[User, Depends(requires(access.can_see_slt_board))]
) -> Response:
    return render(
        request,
        "placeholder.html",
        {
            "title": "SLT board",
            "summary": "Live and upcoming sessions, one-to-one approvals and monitoring drop-ins.",
        },
    )
