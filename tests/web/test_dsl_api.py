"""The DSL's JSON API: the queue, a session's evidence, and the case actions, typed in the
OpenAPI document, CSRF-checked, with the same moves and limits as the pages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import csrf_token, sign_in
from tests.web.dsl_support import DslTenant, dsl_tenant

pytestmark = pytest.mark.database


@pytest.fixture(scope="module")
def dsl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DslTenant]:
    with dsl_tenant(tmp_path_factory.mktemp("dsl-api")) as tenant:
        yield tenant


@pytest.fixture
def as_dsl(dsl: DslTenant) -> Iterator[TestClient]:
    with dsl.web.client() as client:
        sign_in(client, dsl.web, "dsl")
        yield client


def test_the_queue(as_dsl: TestClient) -> None:
    answer = as_dsl.get("/api/v1/dsl/queue")
    assert answer.status_code == 200
    body = answer.json()
    assert body["total"] == 4
    first = body["items"][0]
    assert first["subject"] == "Elm maths"
    assert (first["organizer_name"], first["school"], first["case_status"]) == (
        "Ellis Elm",
        "south",
        "new",
    )
    assert first["counts"]["high"] == 1
    assert first["evidence_url"] == f"/dsl/sessions/{first['session_id']}"
    paged = as_dsl.get("/api/v1/dsl/queue", params={"per_page": 1, "page": 2}).json()
    assert (paged["pages"], paged["page"], len(paged["items"])) == (4, 2, 1)
    assert paged["items"][0]["subject"] == "Reading catch-up with Amelia K."
    south = as_dsl.get("/api/v1/dsl/queue", params={"school": "south"}).json()
    assert [item["subject"] for item in south["items"]] == ["Elm maths"]
    assert as_dsl.get("/api/v1/dsl/queue", params={"severity": "urgent"}).status_code == 422
    assert as_dsl.get("/api/v1/dsl/queue", params={"start": "yesterday"}).status_code == 422


def test_a_sessions_evidence(dsl: DslTenant, as_dsl: TestClient) -> None:
    session_id = dsl.session_id("oak-class")
    before = len(dsl.audit("web.viewed"))
    body = as_dsl.get(f"/api/v1/sessions/{session_id}").json()
    assert body["session"]["organizer_name"] == "Olive Oak"
    kinds = {person["name"]: person["kind"] for person in body["people"]}
    assert kinds == {
        "Olive Oak": "staff",
        "Amelia K.": "pupil",
        "Noah B.": "pupil",
        "Gus Guest": "guest",
    }
    assert [(line["who"], line["what"], line["text"]) for line in body["chat"]] == [
        ("Noah B.", "message", None)
    ]
    assert body["recordings"] == []
    assert {pupil["name"]: pupil["consent"] for pupil in body["pupils"]} == {
        "Amelia K.": "None recorded",
        "Noah B.": "None recorded",
    }
    outsider = next(f for f in body["findings"] if f["rule_id"] == "outsider_in_pupil_session")
    assert outsider["status"] == "warn"
    assert outsider["exempted"] is False
    assert outsider["clause_text"].startswith("Pupils should not pass on invitations")
    assert body["case"]["status"] == "new"
    assert len(dsl.audit("web.viewed")) == before + 1


def test_case_actions(dsl: DslTenant, as_dsl: TestClient) -> None:
    session_id = dsl.session_id("oak-1to1")
    case_id = as_dsl.get(f"/api/v1/sessions/{session_id}").json()["case"]["id"]
    url = f"/api/v1/cases/{case_id}"
    headers = {"X-CSRF-Token": csrf_token(as_dsl)}
    # Without the CSRF header nothing changes.
    assert as_dsl.post(f"{url}/status", json={"status": "in_review"}).status_code == 403
    too_soon = as_dsl.post(
        f"{url}/status", json={"status": "closed", "resolution": "no_concern"}, headers=headers
    )
    assert too_soon.status_code == 409
    assert too_soon.json() == {"detail": "A case that is new cannot be moved to closed."}
    started = as_dsl.post(f"{url}/status", json={"status": "in_review"}, headers=headers)
    assert started.status_code == 200
    assert started.json()["status"] == "in_review"
    no_resolution = as_dsl.post(f"{url}/status", json={"status": "closed"}, headers=headers)
    assert no_resolution.json() == {"detail": "Choose a resolution to close the case."}
    deputy = dsl.web.person_id("deputy")
    # The deputy is in South's groups only: not someone a North case can be given to.
    refused = as_dsl.post(f"{url}/assign", json={"assignee_id": deputy}, headers=headers)
    assert refused.status_code == 422
    noted = as_dsl.post(f"{url}/notes", json={"text": "Called the parent."}, headers=headers)
    assert [n["text"] for n in noted.json()["notes"]] == ["Called the parent."]
    assert noted.json()["notes"][0]["author_name"] == "Dev Safeguard"
    assert as_dsl.post(f"{url}/notes", json={"text": ""}, headers=headers).status_code == 422
    long = as_dsl.post(f"{url}/notes", json={"text": "x" * 10_001}, headers=headers)
    assert long.status_code == 422
    closed = as_dsl.post(
        f"{url}/status",
        json={"status": "closed", "resolution": "false_positive", "note": "A TA's login."},
        headers=headers,
    )
    body = closed.json()
    assert (body["status"], body["resolution"], body["closed_by"]) == (
        "closed",
        "false_positive",
        dsl.web.person_id("dsl"),
    )
    assert body["notes"][-1]["kind"] == "status_change"
    queue = as_dsl.get("/api/v1/dsl/queue", params={"case_status": "closed"}).json()
    assert [item["session_id"] for item in queue["items"]] == [session_id]


def test_the_openapi_document_describes_the_dsl_api(as_dsl: TestClient) -> None:
    document = as_dsl.get("/api/v1/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/api/v1/dsl/queue",
        "/api/v1/sessions/{session_id}",
        "/api/v1/sessions/{session_id}/case",
        "/api/v1/cases/{case_id}/status",
        "/api/v1/cases/{case_id}/assign",
        "/api/v1/cases/{case_id}/notes",
    ):
        assert path in paths, path
    schemas = document["components"]["schemas"]
    assert schemas["StatusIn"]["properties"]["status"]["enum"] == ["in_review", "closed"]
    assert schemas["NoteIn"]["properties"]["text"]["maxLength"] == 10_000
    assert "409" in paths["/api/v1/cases/{case_id}/status"]["post"]["responses"]
    # The pages are not in the API document.
    assert not any(path.startswith("/dsl") for path in paths)
