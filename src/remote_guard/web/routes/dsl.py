"""The DSL's pages: the review queue of findings (placeholder until the DSL pages land)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from remote_guard.web import access
from remote_guard.web.access import User
from remote_guard.web.auth import requires
from remote_guard.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/dsl")
def review_queue(
    request: Request, user: Annotated[User, Depends(requires(access.can_see_dsl_queue))]
) -> Response:
    return render(
        request,
        "placeholder.html",
        {
            "title": "DSL review queue",
            "summary": "Findings grouped by session, to review, assign and close.",
        },
    )
