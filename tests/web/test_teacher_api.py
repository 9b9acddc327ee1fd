"""The teacher's JSON API: the same actions as the pages, typed, with the same checks."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from remote_guard.consent.models import ConsentRow, RegistrationRow
from tests.web.conftest import csrf_token, sign_in
from tests.web.teacher_tenant import HOSTILE_NOTE, TeacherTenant, teacher_tenant

pytestmark = pytest.mark.database

__all__ = ["teacher_tenant"]  # the module-scoped fixture, used by name

ONE_TO_ONE = "one_to_one_without_consent"


def _client(tenant: TeacherTenant, person: str) -> tuple[TestClient, dict[str, str]]:
    client = tenant.web.client()
    sign_in(client, tenant.web, person)
    return client, {"X-CSRF-Token": csrf_token(client)}


def _consent(**overrides: Any) -> dict[str, Any]:
    return {
        "given_by": "Grace K.",
        "relationship": "mother",
        "given_on": "2026-11-17",
        "method": "phone_call",
        "evidence_ref": "Call log 17 Nov",
        **overrides,
    }


def _registrations(tenant: TeacherTenant) -> int:
    with tenant.web.db() as db:
        return int(db.scalar(select(func.count()).select_from(RegistrationRow)) or 0)


def test_my_sessions_as_json(teacher_tenant: TeacherTenant) -> None:
    client, _ = _client(teacher_tenant, "t.oak")

    body = client.get("/api/v1/my-sessions").json()

    assert [s["subject"] for s in body["live"]] == ["Oak Class maths"]
    assert [s["subject"] for s in body["upcoming"]] == [
        "Reading with Amelia",
        "Reading with Noah",
        "Year 3 and 5 planning",
    ]
    soon = body["upcoming"][0]
    assert soon["phase"] == "upcoming"
    assert soon["start"].startswith("2026-11-18T14:00:00")
    [problem] = soon["problems"]
    assert problem["rule_id"] == ONE_TO_ONE
    assert problem["status"] == "fail"
    assert problem["status_label"] == "Breach"
    assert problem["next_step"].startswith("Teacher: register this one-to-one")
    [exempted] = body["live"][0]["problems"]
    assert exempted["exempted"] is True
    assert (
        exempted["exemption_reason"] == "Chat moderated by the teaching assistant for this lesson"
    )


def test_choices_are_the_teachers_own(teacher_tenant: TeacherTenant) -> None:
    client, _ = _client(teacher_tenant, "t.oak")

    body = client.get("/api/v1/one-to-ones/choices").json()

    assert {pupil["name"] for pupil in body["pupils"]} == {"Amelia K.", "Noah B."}
    assert set(body["activities"]) == {"reading", "Talk Times"}
    by_subject = {meeting["subject"]: meeting for meeting in body["meetings"]}
    assert set(by_subject) == {"Reading with Amelia", "Reading with Noah", "Year 3 and 5 planning"}
    assert by_subject["Reading with Amelia"]["invited_pupil_ids"] == [
        teacher_tenant.person_id("p1")
    ]
    assert by_subject["Year 3 and 5 planning"]["invited_pupil_ids"] == []


def test_registering_a_time_window_re_evaluates_at_once(teacher_tenant: TeacherTenant) -> None:
    client, headers = _client(teacher_tenant, "t.oak")

    answer = client.post(
        "/api/v1/one-to-ones",
        json={
            "pupil_id": teacher_tenant.person_id("p1"),
            "activity": "READING",  # stored with the approved list's spelling
            "starts_at": "2026-11-18T13:30:00",  # school local time
            "ends_at": "2026-11-18T15:00:00Z",
            "consent": _consent(contact_email="grace.k@parents.example"),
        },
        headers=headers,
    )

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "pending"
    assert teacher_tenant.sessions["oak-1to1-soon"] in body["reevaluated"]["session_ids"]
    [finding] = teacher_tenant.findings("oak-1to1-soon", ONE_TO_ONE)
    assert "waiting for SLT approval" in finding.message
    listed = {item["id"]: item for item in client.get("/api/v1/one-to-ones").json()}
    mine = listed[body["registration_id"]]
    assert (mine["activity"], mine["covers"], mine["status"]) == ("reading", "window", "pending")
    assert mine["starts_at"].startswith("2026-11-18T13:30:00")
    assert mine["consent"]["method"] == "phone_call"
    assert mine["consent"]["contact_email"] == "grace.k@parents.example"


def test_wrong_fields_answer_422_with_where_and_why(teacher_tenant: TeacherTenant) -> None:
    client, headers = _client(teacher_tenant, "t.oak")
    before = _registrations(teacher_tenant)

    answer = client.post(
        "/api/v1/one-to-ones",
        json={
            "pupil_id": teacher_tenant.person_id("p4"),  # another teacher's class
            "activity": "reading",
            "session_id": teacher_tenant.sessions["oak-1to1-soon"],
            "starts_at": "2026-11-18T13:00:00Z",  # and a window: one or the other
            "ends_at": "2026-11-18T14:00:00Z",
            "consent": _consent(given_on="2026-11-19", expires_on="2026-11-18"),
        },
        headers=headers,
    )
    too_long = client.post(
        "/api/v1/one-to-ones",
        json={
            "pupil_id": teacher_tenant.person_id("p1"),
            "activity": "reading",
            "session_id": teacher_tenant.sessions["oak-1to1-soon"],
            "consent": _consent(given_by="x" * 201),
        },
        headers=headers,
    )

    assert answer.status_code == 422
    problems = {tuple(item["loc"]): item["msg"] for item in answer.json()["detail"]}
    assert problems[("body", "pupil_id")] == "Choose a pupil from one of your classes."
    assert problems[("body", "session_id")].startswith("Give either session_id")
    assert problems[("body", "consent", "given_on")] == (
        "The date consent was given cannot be in the future."
    )
    assert problems[("body", "consent", "expires_on")] == (
        "The expiry date must be after the date consent was given."
    )
    assert too_long.status_code == 422
    assert ["body", "consent", "given_by"] in [item["loc"] for item in too_long.json()["detail"]]
    assert "x" * 201 not in too_long.text  # the value sent is never echoed
    assert _registrations(teacher_tenant) == before


def test_withdrawal_by_api_defaults_to_now(teacher_tenant: TeacherTenant) -> None:
    client, headers = _client(teacher_tenant, "t.oak")
    with teacher_tenant.web.db() as db:
        consent = db.scalars(
            select(ConsentRow).where(ConsentRow.pupil_id == teacher_tenant.person_id("p2"))
        ).one()

    answer = client.post(
        f"/api/v1/consents/{consent.id}/withdrawal",
        json={"told_by": "Sarah B. by e-mail", "note": HOSTILE_NOTE},
        headers=headers,
    )
    missing = client.post(
        "/api/v1/consents/no-such-consent/withdrawal", json={"told_by": "x"}, headers=headers
    )

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["withdrawn_at"].startswith("2026-11-18T12:")
    assert teacher_tenant.sessions["oak-1to1-tomorrow"] in body["reevaluated"]["session_ids"]
    assert body["reevaluated"]["findings_changed"] >= 1
    assert teacher_tenant.status("oak-1to1-tomorrow", ONE_TO_ONE, "p2") == "fail"
    assert missing.status_code == 404


def test_context_notes_by_api(teacher_tenant: TeacherTenant) -> None:
    client, headers = _client(teacher_tenant, "t.oak")
    own = teacher_tenant.sessions["oak-lesson-yesterday"]

    added = client.post(
        f"/api/v1/sessions/{own}/context-notes", json={"text": HOSTILE_NOTE}, headers=headers
    )
    others = client.post(
        f"/api/v1/sessions/{teacher_tenant.sessions['elm-1to1-soon']}/context-notes",
        json={"text": "Not mine"},
        headers=headers,
    )
    unknown = client.post(
        "/api/v1/sessions/no-such-session/context-notes", json={"text": "x"}, headers=headers
    )
    no_token = client.post(f"/api/v1/sessions/{own}/context-notes", json={"text": "x"})

    assert added.status_code == 201, added.text
    assert added.json()["text"] == HOSTILE_NOTE.strip()
    assert (others.status_code, unknown.status_code, no_token.status_code) == (403, 404, 403)
    past = client.get("/api/v1/my-sessions").json()["past"]
    notes = next(s["context_notes"] for s in past if s["id"] == own)
    assert [(note["text"], note["mine"]) for note in notes][-1] == (HOSTILE_NOTE.strip(), True)


def test_the_openapi_document_describes_the_teachers_api(teacher_tenant: TeacherTenant) -> None:
    with teacher_tenant.web.client() as client:
        document = client.get("/api/v1/openapi.json").json()

    for path in (
        "/api/v1/my-sessions",
        "/api/v1/one-to-ones",
        "/api/v1/one-to-ones/choices",
        "/api/v1/consents/{consent_id}/withdrawal",
        "/api/v1/sessions/{session_id}/context-notes",
    ):
        assert path in document["paths"], path
    assert set(document["paths"]["/api/v1/one-to-ones"]) == {"get", "post"}
    schemas = document["components"]["schemas"]
    assert schemas["ConsentIn"]["properties"]["method"]["enum"] == [
        "signed_form",
        "email",
        "letter",
        "phone_call",
        "online_form",
    ]
    assert "422" in document["paths"]["/api/v1/one-to-ones"]["post"]["responses"]
    assert not any(path.startswith("/my-sessions") for path in document["paths"])


def test_control_characters_are_refused_not_stored(teacher_tenant: TeacherTenant) -> None:
    """NUL and other control characters (PostgreSQL cannot even store NUL) are a problem to
    fix, whatever the field; a note may keep its line breaks."""
    client, headers = _client(teacher_tenant, "t.oak")
    before = _registrations(teacher_tenant)
    own = teacher_tenant.sessions["oak-lesson-yesterday"]

    registration = client.post(
        "/api/v1/one-to-ones",
        json={
            "pupil_id": teacher_tenant.person_id("p1"),
            "activity": "reading",
            "session_id": teacher_tenant.sessions["oak-1to1-soon"],
            "consent": _consent(given_by="Grace\x00K.", evidence_ref="line\nbreak"),
        },
        headers=headers,
    )
    note = client.post(
        f"/api/v1/sessions/{own}/context-notes", json={"text": "a\x00b"}, headers=headers
    )
    lines = client.post(
        f"/api/v1/sessions/{own}/context-notes", json={"text": "first\nsecond"}, headers=headers
    )

    assert registration.status_code == 422
    assert {tuple(item["loc"]) for item in registration.json()["detail"]} == {
        ("body", "consent", "given_by"),
        ("body", "consent", "evidence_ref"),
    }
    assert _registrations(teacher_tenant) == before
    assert note.status_code == 422
    assert note.json()["detail"][0]["msg"] == "Remove the control characters from your note."
    assert lines.status_code == 201
