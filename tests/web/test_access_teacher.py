"""The teacher's routes against every kind of user: the teacher, another teacher of the same
school, another school's teacher, SLT, the DSL, a deputy DSL (of the other school) and a
signed-out visitor; and the access decisions behind them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from remote_guard.cases.models import CaseRow
from remote_guard.consent.models import ConsentRow
from remote_guard.web import access
from remote_guard.web.access import Role, User
from tests.web.conftest import csrf_token, sign_in
from tests.web.teacher_tenant import TeacherTenant, teacher_tenant

pytestmark = pytest.mark.database

__all__ = ["teacher_tenant"]  # the module-scoped fixture, used by name

PEOPLE = ("t.oak", "t.ash", "t.elm", "head", "dsl", "deputy")
TEACHERS = {"t.oak", "t.ash", "t.elm"}

# The routes the matrix below tries as each of PEOPLE and as a signed-out visitor; keep in step
# with the tests (test_access_routes.py checks every route of the app is in a table).
ROUTES = [
    ("GET", "/my-sessions"),
    ("GET", "/my-sessions/one-to-ones"),
    ("GET", "/my-sessions/one-to-ones/new"),
    ("POST", "/my-sessions/one-to-ones/new"),
    ("GET", "/my-sessions/sessions/{session_id}"),
    ("POST", "/my-sessions/sessions/{session_id}/context"),
    ("GET", "/my-sessions/consents/{consent_id}/withdraw"),
    ("POST", "/my-sessions/consents/{consent_id}/withdraw"),
    ("GET", "/api/v1/my-sessions"),
    ("GET", "/api/v1/one-to-ones"),
    ("GET", "/api/v1/one-to-ones/choices"),
    ("POST", "/api/v1/one-to-ones"),
    ("POST", "/api/v1/sessions/{session_id}/context-notes"),
    ("POST", "/api/v1/consents/{consent_id}/withdrawal"),
]


@pytest.fixture(scope="module")
def clients(teacher_tenant: TeacherTenant) -> Iterator[dict[str, TestClient]]:
    """One signed-in client per person (signing in is the slow part)."""
    signed: dict[str, TestClient] = {}
    for person in PEOPLE:
        client = teacher_tenant.web.client()
        client.__enter__()
        sign_in(client, teacher_tenant.web, person)
        signed[person] = client
    yield signed
    for client in signed.values():
        client.__exit__(None, None, None)


def _noah_consent_id(tenant: TeacherTenant) -> str:
    with tenant.web.db() as db:
        consent_id = db.scalars(
            select(ConsentRow.id).where(ConsentRow.pupil_id == tenant.person_id("p2"))
        ).first()
    assert consent_id is not None
    return consent_id


def _expected(allowed: set[str], person: str, ok: int, refused: int = 403) -> int:
    return ok if person in allowed else refused


@pytest.mark.parametrize("person", PEOPLE)
def test_page_matrix(
    clients: dict[str, TestClient], teacher_tenant: TeacherTenant, person: str
) -> None:
    """Pages: anyone may open their own My sessions and one-to-ones; only teachers register;
    a session's page and context only for its organiser; a consent for the teacher of the
    pupil's class and SLT and DSLs of the pupil's school."""
    client = clients[person]
    token = csrf_token(client)
    oak_session = teacher_tenant.sessions["oak-lesson-yesterday"]
    consent = _noah_consent_id(teacher_tenant)
    consent_people = {"t.oak", "head", "dsl"}  # Noah is at North; the deputy is South's

    def get(path: str) -> int:
        return client.get(path, follow_redirects=False).status_code

    def post(path: str, **data: str) -> int:
        return client.post(
            path, data={"csrf_token": token, **data}, follow_redirects=False
        ).status_code

    assert get("/my-sessions") == 200
    assert get("/my-sessions/one-to-ones") == 200
    assert get("/my-sessions/one-to-ones/new") == _expected(TEACHERS, person, 200)
    # An empty form: a teacher gets the form back with problems, anyone else is refused.
    assert post("/my-sessions/one-to-ones/new") == _expected(TEACHERS, person, 422)
    assert get(f"/my-sessions/sessions/{oak_session}") == _expected({"t.oak"}, person, 200)
    assert post(f"/my-sessions/sessions/{oak_session}/context", text="") == _expected(
        {"t.oak"}, person, 422
    )
    assert get(f"/my-sessions/consents/{consent}/withdraw") == _expected(
        consent_people, person, 200
    )
    assert post(f"/my-sessions/consents/{consent}/withdraw", told_by="") == _expected(
        consent_people, person, 422
    )
    # Only the DSL and deputy DSLs move a case (their tests cover that); nobody else can,
    # not even the teacher whose session it is.
    if person not in {"dsl", "deputy"}:
        closing = post(f"/dsl/sessions/{oak_session}/status", to="closed", resolution="no_concern")
        assert closing == 403


@pytest.mark.parametrize("person", PEOPLE)
def test_api_matrix(
    clients: dict[str, TestClient], teacher_tenant: TeacherTenant, person: str
) -> None:
    client = clients[person]
    headers = {"X-CSRF-Token": csrf_token(client)}
    oak_session = teacher_tenant.sessions["oak-lesson-yesterday"]
    consent = _noah_consent_id(teacher_tenant)
    consent_people = {"t.oak", "head", "dsl"}
    registration: dict[str, Any] = {
        "pupil_id": teacher_tenant.person_id("p1"),
        "activity": "no such activity",  # never saved, whoever sends it
        "session_id": teacher_tenant.sessions["oak-1to1-soon"],
        "consent": {
            "given_by": "A Parent",
            "relationship": "mother",
            "given_on": "2026-11-01",
            "method": "email",
            "evidence_ref": "ref",
        },
    }

    mine = client.get("/api/v1/my-sessions")
    assert mine.status_code == 200
    subjects = {s["subject"] for group in ("live", "upcoming", "past") for s in mine.json()[group]}
    assert ("Reading with Amelia" in subjects) is (person == "t.oak")
    assert ("Catch-up with Isla" in subjects) is (person == "t.elm")
    assert client.get("/api/v1/one-to-ones").status_code == 200
    assert client.get("/api/v1/one-to-ones/choices").status_code == _expected(TEACHERS, person, 200)
    assert client.post(
        "/api/v1/one-to-ones", json=registration, headers=headers
    ).status_code == _expected(TEACHERS, person, 422)
    assert client.post(
        f"/api/v1/sessions/{oak_session}/context-notes", json={"text": " "}, headers=headers
    ).status_code == _expected({"t.oak"}, person, 422)
    assert client.post(
        f"/api/v1/consents/{consent}/withdrawal",
        json={"told_by": "x", "withdrawn_at": "2030-01-01T09:00:00Z"},
        headers=headers,
    ).status_code == _expected(consent_people, person, 422)


def test_signed_out_visitors_are_sent_to_sign_in_or_refused(
    teacher_tenant: TeacherTenant,
) -> None:
    oak_session = teacher_tenant.sessions["oak-lesson-yesterday"]
    consent = _noah_consent_id(teacher_tenant)
    with teacher_tenant.web.client() as client:
        for path in (
            "/my-sessions",
            "/my-sessions/one-to-ones",
            "/my-sessions/one-to-ones/new",
            f"/my-sessions/sessions/{oak_session}",
            f"/my-sessions/consents/{consent}/withdraw",
        ):
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/sign-in?next=/my-sessions"), path
        for path in ("/api/v1/my-sessions", "/api/v1/one-to-ones", "/api/v1/one-to-ones/choices"):
            assert client.get(path).status_code == 401, path
        # No session, so no CSRF token: every change is refused before anything else.
        for path in (
            "/my-sessions/one-to-ones/new",
            f"/my-sessions/sessions/{oak_session}/context",
            f"/my-sessions/consents/{consent}/withdraw",
            "/api/v1/one-to-ones",
            f"/api/v1/sessions/{oak_session}/context-notes",
            f"/api/v1/consents/{consent}/withdrawal",
        ):
            assert client.post(path, data={"text": "x"}).status_code == 403, path
    with teacher_tenant.web.db() as db:
        assert (
            db.scalars(select(ConsentRow.withdrawn_at).where(ConsentRow.id == consent)).one()
            is None
        )


def test_a_teachers_context_never_changes_the_case(
    clients: dict[str, TestClient], teacher_tenant: TeacherTenant
) -> None:
    """Context is all a teacher can add: the case stays as the DSL left it."""
    client = clients["t.oak"]
    session_id = teacher_tenant.sessions["oak-lesson-live"]

    answer = client.post(
        f"/api/v1/sessions/{session_id}/context-notes",
        json={"text": "The TA moderated the chat."},
        headers={"X-CSRF-Token": csrf_token(client)},
    )
    closing = client.post(
        f"/dsl/sessions/{session_id}/status",
        data={"csrf_token": csrf_token(client), "to": "closed", "resolution": "no_concern"},
    )

    assert answer.status_code == 201, answer.text
    assert closing.status_code == 403
    with teacher_tenant.web.db() as db:
        case = db.scalars(select(CaseRow).where(CaseRow.session_id == session_id)).one()
    assert (case.status, case.resolution, case.closed_by) == ("new", None, None)


# --- the decisions ----------------------------------------------------------------------------

FEDERATION = frozenset({"north", "south"})


def _user(user_id: str, *roles: Role, school: str = "north", pupils: tuple[str, ...] = ()) -> User:
    return User(
        id=user_id,
        name="Someone",
        username="someone@school.example",
        roles=frozenset({Role.STAFF, *roles}),
        schools=frozenset({school}),
        class_pupil_ids=frozenset(pupils),
        federation=FEDERATION,
    )


TEACHER = _user("teacher", Role.TEACHER, pupils=("pupil-a",))
OTHER_TEACHER = _user("other-teacher", Role.TEACHER, pupils=("pupil-b",))
SOUTH_TEACHER = _user("south-teacher", Role.TEACHER, school="south", pupils=("pupil-s",))
SLT = _user("slt", Role.SLT)
DSL = User(
    id="dsl",
    name="D",
    username="d",
    roles=frozenset({Role.STAFF, Role.DSL}),
    schools=FEDERATION,
    federation=FEDERATION,
)
DEPUTY = _user("deputy", Role.DEPUTY_DSL, school="south")
TA_WITHOUT_CLASS = _user("ta")


class _Session:
    def __init__(self, organizer_id: str | None, school: str | None) -> None:
        self.organizer_id = organizer_id
        self.school = school


def test_runs_session_is_the_organiser_only() -> None:
    own = _Session(TEACHER.id, "north")
    assert access.runs_session(TEACHER, own)
    assert not access.runs_session(OTHER_TEACHER, own)
    assert not access.runs_session(SOUTH_TEACHER, own)
    # SLT and DSLs see every session elsewhere, but "My sessions" holds only their own.
    assert not access.runs_session(SLT, own)
    assert not access.runs_session(DSL, own)
    assert access.runs_session(DSL, _Session(DSL.id, "south"))
    assert not access.runs_session(TEACHER, _Session(None, "north"))


def test_registering_needs_a_class_and_the_pupil_in_it() -> None:
    assert [
        access.can_register_one_to_ones(u)
        for u in (TEACHER, OTHER_TEACHER, SOUTH_TEACHER, SLT, DSL, DEPUTY, TA_WITHOUT_CLASS)
    ] == [True, True, True, False, False, False, False]
    assert access.can_register_one_to_one(TEACHER, "pupil-a")
    assert not access.can_register_one_to_one(OTHER_TEACHER, "pupil-a")
    assert not access.can_register_one_to_one(SOUTH_TEACHER, "pupil-a")


def test_managing_a_consent() -> None:
    def allowed(user: User, runs: bool = False) -> bool:
        return access.can_manage_consent(user, "pupil-a", "north", runs_registration=runs)

    assert allowed(TEACHER)
    assert not allowed(OTHER_TEACHER)
    assert allowed(OTHER_TEACHER, runs=True)  # runs the registered one-to-one
    assert not allowed(SOUTH_TEACHER)
    assert allowed(SLT)
    assert allowed(DSL)
    assert not allowed(DEPUTY)  # the other school's deputy
    assert not access.can_manage_consent(
        User(id="x", name="x", username="x", roles=frozenset()), "pupil-a", "north"
    )


def test_a_teacher_cannot_review_or_close_even_their_own_session() -> None:
    own = _Session(TEACHER.id, "north")
    assert access.can_add_context(TEACHER, own)
    assert not access.can_review_findings(TEACHER, own)
    assert not access.can_add_context(OTHER_TEACHER, own)
    assert not access.can_add_context(SLT, own)
