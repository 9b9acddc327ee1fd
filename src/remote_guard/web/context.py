"""What every request of the web app can reach: settings, database, Graph, clock and helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.clock import Clock
from remote_guard.graph.client import GraphClient
from remote_guard.settings import Settings

if TYPE_CHECKING:
    from jinja2 import Environment

    from remote_guard.web.auth import SignInFlow
    from remote_guard.web.people import PeopleSource
    from remote_guard.web.security import SessionStore


@dataclass(frozen=True)
class WebContext:
    """Built once by ``create_app``; a route reaches it with :func:`web_context`."""

    settings: Settings
    db: sessionmaker[Session]
    graph: GraphClient
    clock: Clock
    sessions: SessionStore
    sign_in: SignInFlow
    people: PeopleSource
    templates: Environment

    @property
    def school_names(self) -> dict[str, str]:
        """``[[schools]]`` key -> name, for showing a school to a person."""
        return {school.key: school.name for school in self.settings.schools}


def web_context(request: Request) -> WebContext:
    """The app's :class:`WebContext` (usable as a FastAPI dependency)."""
    return cast(WebContext, request.app.state.web)
