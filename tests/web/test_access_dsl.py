"""The DSL's access decisions, and every DSL route and API endpoint against every kind of user:
teacher (the organiser of the session), another school's teacher, SLT, DSL, deputy DSL (South
only, so refused a North session), and a signed-out visitor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from remote_guard.web import access
from remote_guard.web.access import Role, User
from tests.web.conftest import csrf_token, sign_in
from tests.web.dsl_support import DslTenant, dsl_tenant

pytestmark = pytest.mark.database

FEDERATION = frozenset({"north", "south"})


def _user(user_id: str, *roles: Role, schools: tuple[str, ...]) -> User:
    return User(
        id=user_id,
        name=user_id,
        username=f"{user_id}@school.example",
        roles=frozenset({Role.STAFF, *roles}),
        schools=frozenset(schools),
        federation=FEDERATION,
    )


TEACHER = _user("teacher", Role.TEACHER, schools=("north",))
SOUTH_TEACHER = _user("south-teacher", Role.TEACHER, schools=("south",))
SLT = _user("slt", Role.SLT, schools=("north", "south"))
DSL = _user("dsl", Role.DSL, schools=("north", "south"))
DEPUTY = _user("deputy", Role.DEPUTY_DSL, schools=("south",))
BOTH_DEPUTY = _user("deputy2", Role.DEPUTY_DSL, schools=("north", "south"))


@dataclass(frozen=True)
class Row:
    organizer_id: str | None
    school: str | None


NORTH = Row("teacher", "north")
SOUTH = Row("south-teacher", "south")
UNKNOWN_SCHOOL = Row("teacher", None)


@pytest.mark.parametrize(
    ("user", "row", "allowed"),
    [
        (TEACHER, NORTH, False),  # their own session: their page is "My sessions", not the case
        (SOUTH_TEACHER, NORTH, False),
        (SLT, NORTH, False),  # a case is the DSL's safeguarding record
        (DSL, NORTH, True),
        (DSL, SOUTH, True),
        (DSL, UNKNOWN_SCHOOL, True),  # the DSL sees every school
        (DEPUTY, NORTH, False),  # another school
        (DEPUTY, SOUTH, True),
        (DEPUTY, UNKNOWN_SCHOOL, False),
    ],
)
def test_open_change_and_export_a_case(user: User, row: Row, allowed: bool) -> None:
    assert access.can_open_case(user, row) is allowed
    assert access.can_change_case(user, row) is allowed
    assert access.can_export_case(user, row) is allowed


@pytest.mark.parametrize(
    ("user", "assignee", "current", "allowed"),
    [
        (DSL, "deputy2", None, True),
        (DSL, "deputy2", "dsl", True),  # the DSL hands out work
        (DSL, None, "deputy2", True),
        (BOTH_DEPUTY, "deputy2", None, True),  # a deputy takes an unassigned case
        (BOTH_DEPUTY, None, "deputy2", True),  # and gives back their own
        (BOTH_DEPUTY, "dsl", None, False),  # but assigns nobody else
        (BOTH_DEPUTY, "deputy2", "dsl", False),  # nor takes the DSL's case
        (BOTH_DEPUTY, None, "dsl", False),
        (SLT, "slt", None, False),
        (TEACHER, "teacher", None, False),
        (DEPUTY, "deputy", None, False),  # North is not their school
    ],
)
def test_assign_a_case(
    user: User, assignee: str | None, current: str | None, allowed: bool
) -> None:
    assert access.can_assign_case(user, NORTH, assignee_id=assignee, current_id=current) is allowed


# --- the routes ---------------------------------------------------------------------------------

ROLES = ("t.oak", "t.elm", "head", "dsl", "deputy", None)  # None: signed out


@pytest.fixture(scope="module")
def dsl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DslTenant]:
    with dsl_tenant(tmp_path_factory.mktemp("dsl-access")) as tenant:
        yield tenant


@pytest.fixture(scope="module")
def clients(dsl: DslTenant) -> Iterator[dict[str | None, tuple[TestClient, str]]]:
    """A signed-in client (and its CSRF token) per role."""
    made: dict[str | None, tuple[TestClient, str]] = {}
    for key in ROLES:
        client = dsl.web.client()
        client.__enter__()
        token = ""
        if key is not None:
            sign_in(client, dsl.web, key)
            token = csrf_token(client)
        made[key] = (client, token)
    yield made
    for client, _ in made.values():
        client.__exit__(None, None, None)


def _request(
    client: TestClient,
    token: str,
    *,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    api: bool,
) -> int:
    if method == "GET":
        return client.get(path, follow_redirects=False).status_code
    if api:
        headers = {"X-CSRF-Token": token} if token else {}
        return client.post(path, json=body, headers=headers, follow_redirects=False).status_code
    data = {**(body or {}), **({"csrf_token": token} if token else {})}
    return client.post(path, data=data, follow_redirects=False).status_code


# Refused: 403. Signed out: pages send the visitor to sign-in (303), the API answers 401, and
# a POST without a session is refused by the CSRF check (403).
REFUSED = 403


# Every DSL route and API endpoint: tried as each of ROLES (test_access_routes.py checks that
# every route of the app is in a table like this one).
ROUTE_TABLE: list[tuple[str, str, dict[str, str] | None, bool, int]] = [
    ("GET", "/dsl", None, False, 200),
    ("GET", "/dsl/sessions/{north}", None, False, 200),
    ("GET", "/dsl/sessions/{north}/handoff", None, False, 200),
    ("GET", "/dsl/sessions/{north}/handoff.csv", None, False, 200),
    # A move the case cannot make: allowed users get the page back with the problem (400).
    ("POST", "/dsl/sessions/{north}/status", {"to": "bogus"}, False, 400),
    ("POST", "/dsl/sessions/{north}/notes", {"text": "Matrix note."}, False, 303),
    ("POST", "/dsl/sessions/{north}/assign", {"assignee": "{dsl_id}"}, False, 303),
    ("GET", "/api/v1/dsl/queue", None, True, 200),
    ("GET", "/api/v1/sessions/{north}", None, True, 200),
    ("POST", "/api/v1/sessions/{north}/case", None, True, 200),
    ("POST", "/api/v1/cases/{case}/status", {"status": "closed"}, True, 409),
    ("POST", "/api/v1/cases/{case}/notes", {"text": "Matrix note."}, True, 200),
    ("POST", "/api/v1/cases/{case}/assign", {"assignee_id": "{dsl_id}"}, True, 200),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "api", "allowed_status"), ROUTE_TABLE)
def test_dsl_routes_for_every_role(  # noqa: PLR0917 (pytest passes fixtures and parameters by name)
    dsl: DslTenant,
    clients: dict[str | None, tuple[TestClient, str]],
    role: str | None,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    api: bool,
    allowed_status: int,
) -> None:
    north = dsl.session_id("oak-1to1")
    case_id = _case_id(dsl, north)
    values = {"north": north, "case": str(case_id), "dsl_id": dsl.web.person_id("dsl")}
    filled = path.format(**values)
    filled_body = {k: v.format(**values) for k, v in body.items()} if body else None
    client, token = clients[role]
    status = _request(client, token, method=method, path=filled, body=filled_body, api=api)
    # The deputy is in South's groups only: the queue yes, this North session's case no.
    allowed = role == "dsl" or (role == "deputy" and "{north}" not in path and "{case}" not in path)
    if allowed:
        assert status == allowed_status, (role, method, filled, status)
    elif role is None:
        # A POST has no session, so no CSRF token: refused before anything else.
        expected = REFUSED if method == "POST" else (401 if api else 303)
        assert status == expected, (role, method, filled, status)
    else:
        assert status == REFUSED, (role, method, filled, status)


def _case_id(dsl: DslTenant, session_id: str) -> int:
    from remote_guard.cases.service import case_for_session

    with dsl.web.db() as db:
        case_row = case_for_session(db, session_id)
        assert case_row is not None  # opened by the poller after its cycle
        return case_row.id


@pytest.mark.parametrize(
    ("method", "path", "body", "api", "expected"),
    [
        ("GET", "/dsl/sessions/{south}", None, False, 200),
        ("GET", "/dsl/sessions/{south}/handoff.csv", None, False, 200),
        ("POST", "/dsl/sessions/{south}/notes", {"text": "Deputy note."}, False, 303),
        ("GET", "/api/v1/sessions/{south}", None, True, 200),
        ("POST", "/api/v1/cases/{case}/notes", {"text": "Deputy note."}, True, 200),
        # A deputy takes an unassigned case for themselves, but gives it to nobody else.
        ("POST", "/api/v1/cases/{case}/assign", {"assignee_id": "{dsl_id}"}, True, 403),
        ("POST", "/api/v1/cases/{case}/assign", {"assignee_id": "{deputy_id}"}, True, 200),
    ],
)
def test_the_deputy_works_their_own_schools_cases(  # noqa: PLR0917 (as above)
    dsl: DslTenant,
    clients: dict[str | None, tuple[TestClient, str]],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    api: bool,
    expected: int,
) -> None:
    south = dsl.session_id("elm-1to1")
    values = {
        "south": south,
        "case": str(_case_id(dsl, south)),
        "dsl_id": dsl.web.person_id("dsl"),
        "deputy_id": dsl.web.person_id("deputy"),
    }
    client, token = clients["deputy"]
    filled_body = {k: v.format(**values) for k, v in body.items()} if body else None
    status = _request(
        client, token, method=method, path=path.format(**values), body=filled_body, api=api
    )
    assert status == expected


def test_the_deputy_queue_holds_only_their_schools(
    dsl: DslTenant, clients: dict[str | None, tuple[TestClient, str]]
) -> None:
    client, _ = clients["deputy"]
    items = client.get("/api/v1/dsl/queue").json()["items"]
    assert {item["school"] for item in items} == {"south"}
    # Asking for a school they are not in shows their own schools, not the other's.
    asked = client.get("/dsl", params={"school": "north"}).text
    assert "Elm maths" in asked
    assert "Reading catch-up" not in asked


def test_unknown_sessions_and_cases(
    dsl: DslTenant, clients: dict[str | None, tuple[TestClient, str]]
) -> None:
    client, token = clients["dsl"]
    assert client.get("/dsl/sessions/no-such-session").status_code == 404
    assert client.get("/api/v1/sessions/no-such-session").status_code == 404
    headers = {"X-CSRF-Token": token}
    assert (
        client.post("/api/v1/cases/999999/notes", json={"text": "x"}, headers=headers).status_code
        == 404
    )
    assert (
        client.post("/api/v1/cases/0/notes", json={"text": "x"}, headers=headers).status_code == 422
    )
    too_big = client.post(f"/api/v1/cases/{2**70}/notes", json={"text": "x"}, headers=headers)
    assert too_big.status_code == 422
    # A teacher learns nothing about which sessions exist: refused before the lookup.
    teacher, _ = clients["t.oak"]
    assert teacher.get("/dsl/sessions/no-such-session").status_code == 403
