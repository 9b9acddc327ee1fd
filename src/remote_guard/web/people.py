"""Who is who for the web app: the configured groups and the class teams, read through Graph.

Roles are read with the app's own Graph client (application permissions), never from the
browser or the id token: the members of each ``[directory]`` group and ``[[schools]]`` group
(transitively), and each team's owners and members. A team with pupils among its members is a
class team; its owners (teacher, teaching assistants) are that class's teachers.

The whole roster is read at once and kept for ``ROSTER_MAX_AGE``; sign-in asks for one no
older than a minute, so a change of group takes effect at the next sign-in. If Graph cannot be
reached, the last roster read is used (a stale answer beats locking every DSL out); if there
is none, :class:`RosterUnavailableError` is raised.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import structlog

from remote_guard.clock import Clock
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphError
from remote_guard.settings import Settings
from remote_guard.web.access import Role, User

log = structlog.get_logger(__name__)

ROSTER_MAX_AGE = timedelta(minutes=10)
SIGN_IN_MAX_AGE = timedelta(minutes=1)
_PAGE = {"$select": "id,displayName", "$top": "999"}


class RosterUnavailableError(Exception):
    """Graph could not be read and no earlier roster is known, so nobody can be told apart."""


class Refusal(StrEnum):
    """Why someone who signed in with the school's Entra ID may not use remote_guard."""

    PUPIL = "pupil"
    NOT_STAFF = "not_staff"


@dataclass(frozen=True)
class ClassTeam:
    id: str
    name: str
    owner_ids: frozenset[str]
    pupil_ids: frozenset[str]


@dataclass(frozen=True)
class Roster:
    """The members of every configured group and the class teams, as read at ``loaded_at``."""

    staff_ids: frozenset[str]
    pupil_ids: frozenset[str]
    role_ids: Mapping[Role, frozenset[str]]
    school_ids: Mapping[str, frozenset[str]]  # [[schools]] key -> member ids
    class_teams: tuple[ClassTeam, ...]
    names: Mapping[str, str] = field(default_factory=dict)
    loaded_at: datetime | None = None

    def user(self, user_id: str, *, name: str, username: str) -> User | Refusal:
        """The signed-in person as a :class:`User`, or why they are refused.

        A pupil is refused even if also in a staff group (a child wrongly listed as staff must
        never see other children's records).
        """
        if user_id in self.pupil_ids:
            return Refusal.PUPIL
        if user_id not in self.staff_ids:
            return Refusal.NOT_STAFF
        owned = [team for team in self.class_teams if user_id in team.owner_ids]
        roles = {Role.STAFF}
        roles.update(role for role, ids in self.role_ids.items() if user_id in ids)
        if owned:
            roles.add(Role.TEACHER)
        return User(
            id=user_id,
            name=name or self.names.get(user_id, "") or username,
            username=username,
            roles=frozenset(roles),
            schools=frozenset(key for key, ids in self.school_ids.items() if user_id in ids),
            class_team_ids=frozenset(team.id for team in owned),
            class_pupil_ids=frozenset().union(*(team.pupil_ids for team in owned)),
            federation=frozenset(self.school_ids),
        )


class PeopleSource(Protocol):
    """Where the web app gets the roster from (a :class:`RosterCache`, or a fixed one in tests)."""

    def roster(self, *, max_age: timedelta = ROSTER_MAX_AGE) -> Roster: ...


def _members(graph: GraphClient, group_id: str, names: dict[str, str]) -> set[str]:
    """The users in a group, directly or through nested groups.

    Raises:
        GraphError: the members could not be read.
    """
    found: set[str] = set()
    for item in graph.iter_items(f"/groups/{group_id}/transitiveMembers", params=_PAGE):
        kind = item.get("@odata.type")
        user_id = item.get("id")
        if kind in (None, "#microsoft.graph.user") and isinstance(user_id, str):
            found.add(user_id)
            if isinstance(item.get("displayName"), str):
                names[user_id] = item["displayName"]
    return found


def _owners(graph: GraphClient, group_id: str) -> set[str]:
    return {
        item["id"]
        for item in graph.iter_items(f"/groups/{group_id}/owners", params=_PAGE)
        if item.get("@odata.type") in (None, "#microsoft.graph.user")
        and isinstance(item.get("id"), str)
    }


def load_roster(graph: GraphClient, settings: Settings, *, now: datetime) -> Roster:
    """Read every configured group and every team's owners and members.

    Raises:
        GraphError: a group or team could not be read.
    """
    cache: dict[str, set[str]] = {}
    names: dict[str, str] = {}

    def read(group_ids: Iterable[str]) -> frozenset[str]:
        ids: set[str] = set()
        for group_id in group_ids:
            if group_id not in cache:
                cache[group_id] = _members(graph, group_id, names)
            ids |= cache[group_id]
        return frozenset(ids)

    directory = settings.directory
    pupils = read(directory.pupil_group_ids)
    staff = read(directory.staff_group_ids)
    roles = {
        Role.SLT: read(directory.slt_group_ids),
        Role.DSL: read(directory.dsl_group_ids),
        Role.DEPUTY_DSL: read(directory.deputy_dsl_group_ids),
    }
    schools = {school.key: read(school.group_ids) for school in settings.schools}
    class_teams: list[ClassTeam] = []
    for team in graph.iter_items("/teams", params={"$select": "id,displayName"}):
        team_id = team.get("id")
        if not isinstance(team_id, str):
            continue
        members = read([team_id])
        team_pupils = members & pupils
        if team_pupils:
            class_teams.append(
                ClassTeam(
                    id=team_id,
                    name=str(team.get("displayName") or ""),
                    owner_ids=frozenset(_owners(graph, team_id)),
                    pupil_ids=team_pupils,
                )
            )
    return Roster(
        staff_ids=staff,
        pupil_ids=pupils,
        role_ids=roles,
        school_ids=schools,
        class_teams=tuple(class_teams),
        names=names,
        loaded_at=now,
    )


class RosterCache:
    """The roster, read through Graph when older than asked for, shared by every request.

    One request reads Graph at a time; while it does, the others carry on with the roster they
    had (if there is one) rather than queue behind it.
    """

    def __init__(self, graph: GraphClient, settings: Settings, clock: Clock) -> None:
        self._graph = graph
        self._settings = settings
        self._clock = clock
        self._reading = threading.Lock()
        self._roster: Roster | None = None

    def _fresh(self, roster: Roster | None, max_age: timedelta) -> bool:
        return (
            roster is not None
            and roster.loaded_at is not None
            and self._clock() - roster.loaded_at < max_age
        )

    def roster(self, *, max_age: timedelta = ROSTER_MAX_AGE) -> Roster:
        """A roster no older than ``max_age`` if Graph can be read, else the last one.

        Raises:
            RosterUnavailableError: Graph cannot be read and no roster was read before.
        """
        current = self._roster
        if current is not None and self._fresh(current, max_age):
            return current
        if current is not None and max_age >= ROSTER_MAX_AGE:
            if not self._reading.acquire(blocking=False):
                return current  # another request is reading Graph right now
        else:
            self._reading.acquire()
        try:
            current = self._roster
            if current is not None and self._fresh(current, max_age):
                return current  # read by another request while this one waited
            try:
                self._roster = load_roster(self._graph, self._settings, now=self._clock())
            except GraphError as exc:
                log.warning("web.roster_unreadable", reason=str(exc), stale=current is not None)
                if current is None:
                    raise RosterUnavailableError(str(exc)) from exc
                return current
            return self._roster
        finally:
            self._reading.release()
