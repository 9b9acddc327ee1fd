"""Who may use SLT's pages and API: each new access decision for each kind of user, and every
SLT route against every role (teacher, another school's teacher, SLT, another school's SLT,
DSL, deputy DSL, signed-out visitor)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from remote_guard.web import access
from remote_guard.web.access import Role, User
from tests.web.conftest import csrf_token, sign_in
from tests.web.slt_tenant import SltTenant, slt_tenant

pytestmark = pytest.mark.database

__all__ = ["slt_tenant"]  # the module-scoped fixture, used by name

FEDERATION = frozenset({"north", "south"})


def _user(*roles: Role, schools: tuple[str, ...] = ("north",), name: str = "") -> User:
    return User(
        id=name or f"user-{'-'.join(roles)}-{'-'.join(schools)}",
        name="Someone",
        username="someone@school.example",
        roles=frozenset({Role.STAFF, *roles}),
        schools=frozenset(schools),
        federation=FEDERATION,
    )


TEACHER = _user(Role.TEACHER)
OTHER_SCHOOL_TEACHER = _user(Role.TEACHER, schools=("south",))
SLT = _user(Role.SLT)
OTHER_SCHOOL_SLT = _user(Role.SLT, schools=("south",))
SLT_BOTH = _user(Role.SLT, schools=("north", "south"))
DSL = _user(Role.DSL, schools=("north", "south"))
DEPUTY = _user(Role.DEPUTY_DSL, schools=("south",))


@dataclass(frozen=True)
class Session:
    organizer_id: str | None
    school: str | None


@dataclass(frozen=True)
class DropIn:
    slt_user_id: str
    school: str | None


NORTH_LESSON = Session("a-teacher", "north")
SLTS_OWN_LESSON = Session(SLT.id, "north")
SLTS_DROP_IN = DropIn(SLT.id, "north")
COLLEAGUES_DROP_IN = DropIn("another-slt", "north")


@pytest.mark.parametrize(
    ("user", "allowed"),
    [
        (TEACHER, False),
        (OTHER_SCHOOL_TEACHER, False),
        (SLT, True),
        (OTHER_SCHOOL_SLT, False),  # a North lesson is not theirs to monitor
        (DSL, False),
        (DEPUTY, False),
    ],
)
def test_can_schedule_drop_in_into_a_north_lesson(user: User, allowed: bool) -> None:
    assert access.can_schedule_drop_in(user, NORTH_LESSON) is allowed


def test_no_drop_in_into_ones_own_session() -> None:
    """Monitoring oneself is no monitoring."""
    assert not access.can_schedule_drop_in(SLT, SLTS_OWN_LESSON)


@pytest.mark.parametrize(
    ("user", "see", "manage"),
    [
        (SLT, True, True),
        (SLT_BOTH, True, False),  # a colleague's drop-in: seen, not changed
        (OTHER_SCHOOL_SLT, False, False),
        (TEACHER, False, False),
        (DSL, False, False),
        (DEPUTY, False, False),
    ],
)
def test_drop_ins_are_seen_by_slt_and_changed_by_their_owner(
    user: User, see: bool, manage: bool
) -> None:
    assert access.can_see_drop_in(user, SLTS_DROP_IN) is see
    assert access.can_manage_drop_in(user, SLTS_DROP_IN) is manage


def test_a_colleagues_drop_in_cannot_be_changed() -> None:
    assert access.can_see_drop_in(SLT, COLLEAGUES_DROP_IN)
    assert not access.can_manage_drop_in(SLT, COLLEAGUES_DROP_IN)


@pytest.mark.parametrize(
    ("user", "staff_id", "school", "allowed"),
    [
        (SLT, "a-teacher", "north", True),
        (SLT, SLT.id, "north", False),  # their own one-to-one
        (SLT, "a-teacher", "south", False),
        (SLT, "a-teacher", None, False),  # pupil's school unknown in a federation
        (SLT_BOTH, "a-teacher", None, True),
        (OTHER_SCHOOL_SLT, "a-teacher", "north", False),
        (TEACHER, "a-teacher", "north", False),
        (DSL, "a-teacher", "north", False),
        (DEPUTY, "a-teacher", "south", False),
    ],
)
def test_can_decide_registration(
    user: User, staff_id: str, school: str | None, allowed: bool
) -> None:
    assert access.can_decide_registration(user, staff_id=staff_id, school=school) is allowed
    if allowed:
        assert access.can_see_registration(user, school)


def test_coverage_is_for_slt() -> None:
    assert [access.can_see_coverage(u) for u in (SLT, OTHER_SCHOOL_SLT, TEACHER, DSL, DEPUTY)] == [
        True,
        True,
        False,
        False,
        False,
    ]


# --- every SLT route against every role ------------------------------------------------------

PAGES = (
    "/slt",
    "/slt/one-to-ones",
    "/slt/activities",
    "/slt/drop-ins",
    "/slt/coverage",
)
API = (
    "/api/v1/board",
    "/api/v1/approvals",
    "/api/v1/activities",
    "/api/v1/drop-ins",
    "/api/v1/coverage",
)
# SLT (of either school) open every SLT page; the DSL and deputies see findings in their own
# queue, not the board (least privilege: the board is SLT's monitoring tool).
SLT_PEOPLE = {
    "head": True,
    "head.s": True,
    "t.oak": False,
    "t.elm": False,
    "dsl": False,
    "deputy": False,
}


@pytest.mark.parametrize("person", sorted(SLT_PEOPLE))
def test_slt_route_matrix(slt_tenant: SltTenant, person: str) -> None:
    """Every SLT page and API read answers 200 to SLT and 403 to everyone else, and only SLT
    are offered the pages in the navigation."""
    with slt_tenant.web.client() as client:
        sign_in(client, slt_tenant.web, person)
        expected = 200 if SLT_PEOPLE[person] else 403
        for path in PAGES + API:
            assert client.get(path).status_code == expected, (person, path)
        home = client.get("/", follow_redirects=True).text
        nav = home.split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
        assert ('href="/slt/one-to-ones"' in nav) is SLT_PEOPLE[person]


@pytest.mark.parametrize("person", ["t.oak", "t.elm", "dsl", "deputy"])
def test_slt_changes_are_refused_to_others(slt_tenant: SltTenant, person: str) -> None:
    """Teachers, the DSL and deputies cannot approve, keep the activity list or drop in, by
    page or API, even with a valid CSRF token."""
    session_id = slt_tenant.sessions["oak-live"]
    with slt_tenant.web.client() as client:
        sign_in(client, slt_tenant.web, person)
        token = csrf_token(client)
        form = {"csrf_token": token}
        posts = [
            ("/slt/one-to-ones/registration-amelia/approve", form),
            ("/slt/one-to-ones/registration-amelia/decline", {**form, "reason": "no"}),
            ("/slt/activities", {**form, "name": "Chess"}),
            ("/slt/activities/retire", {**form, "name": "reading"}),
            ("/slt/drop-ins", {**form, "session_id": session_id}),
        ]
        for path, data in posts:
            assert client.post(path, data=data).status_code == 403, (person, path)
        headers = {"X-CSRF-Token": token}
        api = [
            ("/api/v1/approvals/registration-amelia/approve", None),
            ("/api/v1/activities", {"name": "Chess"}),
            ("/api/v1/drop-ins", {"session_id": session_id}),
        ]
        for path, body in api:
            assert client.post(path, json=body, headers=headers).status_code == 403, path
        assert client.get(f"/slt/drop-ins/new?session_id={session_id}").status_code == 403


def test_slt_routes_signed_out(client: TestClient) -> None:
    """A visitor is sent to sign in from every SLT page, and the API answers 401."""
    for path in PAGES:
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/sign-in?next=")
    for path in API:
        assert client.get(path).status_code == 401, path


def test_another_schools_slt_cannot_reach_north_objects(slt_tenant: SltTenant) -> None:
    """South's SLT do not see North's registrations, sessions or board rows, and cannot act
    on them: unknown to them (404), whatever they send."""
    north_session = slt_tenant.sessions["oak-live"]
    with slt_tenant.web.client() as client:
        sign_in(client, slt_tenant.web, "head.s")
        token = csrf_token(client)
        board = client.get("/api/v1/board").json()
        assert [row["subject"] for row in board] == ["Elm Class science"]
        approvals = client.get("/api/v1/approvals").json()
        assert [item["pupil_name"] for item in approvals["pending"]] == ["Isla M."]
        assert "Amelia" not in client.get("/slt/one-to-ones").text
        refused = client.post(
            "/slt/one-to-ones/registration-amelia/approve", data={"csrf_token": token}
        )
        assert refused.status_code == 404
        scheduled = client.post(
            "/api/v1/drop-ins", json={"session_id": north_session}, headers={"X-CSRF-Token": token}
        )
        assert scheduled.status_code == 404
        assert client.get("/slt?school=north").status_code == 403
        assert client.get("/api/v1/coverage?school=north").status_code == 403
