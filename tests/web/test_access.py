"""Who may see and do what: each access decision for each kind of user, the roster read from
the fake tenant, and every route of the foundation against every role."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from remote_guard.clock import utc_now
from remote_guard.graph.client import GraphClient
from remote_guard.web import access
from remote_guard.web.access import Role, User
from remote_guard.web.people import Refusal, load_roster
from tests.web.conftest import WebTenant, sign_in

pytestmark = pytest.mark.database

FEDERATION = frozenset({"north", "south"})


def _user(
    *roles: Role, schools: tuple[str, ...] = ("north",), pupils: tuple[str, ...] = ()
) -> User:
    return User(
        id=f"user-{'-'.join(roles) or 'none'}-{'-'.join(schools)}",
        name="Someone",
        username="someone@school.example",
        roles=frozenset(roles),
        schools=frozenset(schools),
        class_team_ids=frozenset({"team-1"}) if pupils else frozenset(),
        class_pupil_ids=frozenset(pupils),
        federation=FEDERATION,
    )


TEACHER = _user(Role.STAFF, Role.TEACHER, pupils=("pupil-a",))
OTHER_SCHOOL_TEACHER = _user(Role.STAFF, Role.TEACHER, schools=("south",), pupils=("pupil-s",))
SLT = _user(Role.STAFF, Role.SLT)
DSL = _user(Role.STAFF, Role.DSL, schools=("north", "south"))
DEPUTY = _user(Role.STAFF, Role.DEPUTY_DSL, schools=("south",))
STAFF = _user(Role.STAFF)
NOBODY = _user()  # not in the staff groups


@dataclass(frozen=True)
class Row:
    organizer_id: str | None
    school: str | None


TEACHERS_LESSON = Row(TEACHER.id, "north")
COLLEAGUES_LESSON = Row("someone-else", "north")
SOUTH_LESSON = Row(OTHER_SCHOOL_TEACHER.id, "south")
SCHOOL_UNKNOWN = Row("someone-else", None)


@pytest.mark.parametrize(
    ("user", "row", "allowed"),
    [
        (TEACHER, TEACHERS_LESSON, True),
        (TEACHER, COLLEAGUES_LESSON, False),
        (TEACHER, SOUTH_LESSON, False),
        (OTHER_SCHOOL_TEACHER, TEACHERS_LESSON, False),
        (OTHER_SCHOOL_TEACHER, SOUTH_LESSON, True),
        (SLT, COLLEAGUES_LESSON, True),
        (SLT, SOUTH_LESSON, False),  # another school of the federation
        (SLT, SCHOOL_UNKNOWN, False),  # unknown school: only for who sees every school
        (DSL, SOUTH_LESSON, True),
        (DSL, COLLEAGUES_LESSON, True),
        (DSL, SCHOOL_UNKNOWN, True),
        (DEPUTY, SOUTH_LESSON, True),
        (DEPUTY, COLLEAGUES_LESSON, False),
        (STAFF, COLLEAGUES_LESSON, False),
        (NOBODY, Row(NOBODY.id, "north"), False),
    ],
)
def test_can_see_session(user: User, row: Row, allowed: bool) -> None:
    assert access.can_see_session(user, row) is allowed
    assert access.can_see_findings_of(user, row) is allowed


def test_only_dsls_review_and_only_the_dsl_assigns() -> None:
    assert [
        access.can_review_findings(u, SOUTH_LESSON)
        for u in (DSL, DEPUTY, SLT, OTHER_SCHOOL_TEACHER)
    ] == [
        True,
        True,
        False,
        False,
    ]
    assert [access.can_assign_findings(u) for u in (DSL, DEPUTY, SLT, TEACHER)] == [
        True,
        False,
        False,
        False,
    ]


def test_a_teacher_adds_context_only_to_their_own_sessions() -> None:
    assert access.can_add_context(TEACHER, TEACHERS_LESSON)
    assert not access.can_add_context(TEACHER, COLLEAGUES_LESSON)
    assert not access.can_add_context(DSL, TEACHERS_LESSON)


def test_pupils_a_teacher_may_see_are_those_of_their_classes() -> None:
    assert access.can_see_pupil(TEACHER, "pupil-a", "north")
    assert not access.can_see_pupil(TEACHER, "pupil-b", "north")
    assert not access.can_see_pupil(OTHER_SCHOOL_TEACHER, "pupil-a", "north")
    assert access.can_see_pupil(SLT, "pupil-b", "north")
    assert not access.can_see_pupil(SLT, "pupil-s", "south")
    assert access.can_see_pupil(DSL, "pupil-s", "south")
    assert access.visible_pupils(TEACHER, ["pupil-a", "pupil-b"]) == ["pupil-a"]
    assert access.visible_pupils(DSL, ["pupil-a", "pupil-b"]) == ["pupil-a", "pupil-b"]


def test_one_to_ones_drop_ins_and_pages() -> None:
    assert access.can_register_one_to_one(TEACHER, "pupil-a")
    assert not access.can_register_one_to_one(TEACHER, "pupil-s")
    assert not access.can_register_one_to_one(SLT, "pupil-a")
    assert [access.can_decide_registrations(u) for u in (SLT, DSL, TEACHER)] == [True, False, False]
    assert [access.can_schedule_drop_ins(u) for u in (SLT, DSL, TEACHER)] == [True, False, False]
    assert [access.home_path(u) for u in (DSL, DEPUTY, SLT, TEACHER, STAFF)] == [
        "/dsl",
        "/dsl",
        "/slt",
        "/my-sessions",
        "/my-sessions",
    ]
    assert not access.can_use_app(NOBODY)


def test_without_a_federation_every_school_check_passes() -> None:
    single = User(id="u", name="n", username="u", roles=frozenset({Role.STAFF, Role.SLT}))
    assert access.can_see_school(single, None)
    assert access.can_see_session(single, Row("x", None))
    assert access.visible_schools(single) is None
    assert access.visible_schools(SLT) == frozenset({"north"})


def test_roster_from_the_fake_tenant(web_tenant: WebTenant) -> None:
    """Groups and class-team owners, read with the app's own Graph client."""
    roster = load_roster(
        GraphClient(web_tenant.settings.tenant), web_tenant.settings, now=utc_now()
    )
    pid = web_tenant.person_id

    oak = roster.user(pid("t.oak"), name="", username="")
    head = roster.user(pid("head"), name="", username="")
    dsl = roster.user(pid("dsl"), name="", username="")

    assert isinstance(oak, User)
    assert isinstance(head, User)
    assert isinstance(dsl, User)
    assert oak.roles == {Role.STAFF, Role.TEACHER}
    assert oak.class_pupil_ids == {pid("p1"), pid("p2")}
    assert oak.name == "Olive Oak"  # from the group listing when the token has no name
    # Owning the staff team (no pupils in it) does not make the head a teacher.
    assert head.roles == {Role.STAFF, Role.SLT}
    assert dsl.schools == {"north", "south"}
    assert roster.user(pid("p1"), name="", username="") is Refusal.PUPIL
    assert roster.user(pid("visitor"), name="", username="") is Refusal.NOT_STAFF


# --- every route of the foundation against every role ------------------------------------------

PAGES = ("/dsl", "/slt", "/my-sessions")
ALLOWED = {
    "dsl": {"/dsl", "/my-sessions"},
    "deputy": {"/dsl", "/my-sessions"},
    "head": {"/slt", "/my-sessions"},
    "t.oak": {"/my-sessions"},
    "t.elm": {"/my-sessions"},
    "it": {"/my-sessions"},
}


@pytest.mark.parametrize("person", sorted(ALLOWED))
def test_route_matrix(client: TestClient, web_tenant: WebTenant, person: str) -> None:
    """Each page answers 200 to the roles it is for and 403 to the others; the navigation
    offers exactly the pages allowed."""
    sign_in(client, web_tenant, person)

    for path in PAGES:
        expected = 200 if path in ALLOWED[person] else 403
        assert client.get(path).status_code == expected, (person, path)
    home = client.get("/", follow_redirects=True).text
    nav = home.split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
    assert {path for path in PAGES if f'href="{path}"' in nav} == ALLOWED[person]
    assert client.get("/api/v1/me").status_code == 200


def test_route_matrix_signed_out(client: TestClient) -> None:
    """A visitor is sent to sign in from every page, and the API answers 401."""
    for path in PAGES:
        answer = client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, f"/sign-in?next={path}")
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/").status_code == 200
