"""The JSON API under ``/api/v1``: the same actions as the pages, for scripts and tests.

It uses the browser's session cookie; a state-changing call must send the session's CSRF token
in the ``X-CSRF-Token`` header (``GET /api/v1/me`` returns it). Access is decided by the same
``access`` functions as the pages. Errors are ``{"detail": "..."}`` with no internals.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from remote_guard.web import dsl_api
from remote_guard.web.access import home_path
from remote_guard.web.auth import CurrentUser, request_session

router = APIRouter(prefix="/api/v1", tags=["api"])


class Me(BaseModel):
    """The signed-in member of staff, as remote_guard sees them."""

    id: str
    name: str
    username: str
    role: str
    roles: list[str]
    schools: list[str]
    class_team_ids: list[str]
    home: str
    csrf_token: str


@router.get("/me", response_model=Me, summary="Who is signed in, and what they may do")
def me(request: Request, user: CurrentUser) -> Me:
    session = request_session(request)
    return Me(
        id=user.id,
        name=user.name,
        username=user.username,
        role=user.role.value,
        roles=sorted(role.value for role in user.roles),
        schools=sorted(user.schools),
        class_team_ids=sorted(user.class_team_ids),
        home=home_path(user),
        csrf_token=session.csrf_token if session is not None else "",
    )


# The DSL's queue, evidence and case actions (web/dsl_api.py).
router.include_router(dsl_api.router)
