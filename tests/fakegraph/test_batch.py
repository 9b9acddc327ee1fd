"""POST /$batch: envelope validation, per-item auth and faults, dependsOn, in-process items."""

from __future__ import annotations

from typing import Any

import requests

from remote_guard.fakegraph.scenario import Scenario
from remote_guard.fakegraph.server import FakeTenantServer

WINDOW = "startDateTime=2026-11-16T00:00:00Z&endDateTime=2026-11-20T00:00:00Z"


def post_batch(graph: Any, requests_: list[dict[str, Any]]) -> requests.Response:
    response: requests.Response = graph.post("/$batch", {"requests": requests_})
    return response


def calendar_item(item_id: str, user_id: str) -> dict[str, Any]:
    return {"id": item_id, "method": "GET", "url": f"/users/{user_id}/calendarView?{WINDOW}"}


def test_more_than_twenty_requests_is_a_bad_request(graph: Any, scenario: Scenario) -> None:
    """A batch of 21 is refused as a whole with a 400."""
    teacher = scenario.person_id("teacher")

    response = post_batch(graph, [calendar_item(str(n), teacher) for n in range(21)])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_duplicate_ids_and_bodies_without_content_type_are_refused(
    graph: Any, scenario: Scenario
) -> None:
    """Item ids must be unique, and a body needs a Content-Type header."""
    teacher = scenario.person_id("teacher")

    duplicate = post_batch(graph, [calendar_item("1", teacher), calendar_item("1", teacher)])
    no_type = post_batch(
        graph,
        [
            {
                "id": "1",
                "method": "POST",
                "url": f"/users/{teacher}/events",
                "body": {"subject": "x"},
            }
        ],
    )

    assert duplicate.status_code == 400
    assert (no_type.status_code, no_type.json()["error"]["message"]) == (
        400,
        "Write request id : 1 does not contain Content-Type header or body.",
    )


def test_each_item_is_served_as_its_own_request(
    graph: Any, scenario: Scenario, server: FakeTenantServer
) -> None:
    """Items get their own status, headers and body; the log marks them in_batch."""
    teacher, pupil = scenario.person_id("teacher"), scenario.person_id("pupil1")

    response = post_batch(
        graph,
        [
            calendar_item("a", teacher),
            calendar_item("b", pupil),
            {"id": "c", "method": "GET", "url": "/users/nobody@nowhere.example"},
        ],
    )

    by_id = {item["id"]: item for item in response.json()["responses"]}
    assert response.status_code == 200
    assert {key: item["status"] for key, item in by_id.items()} == {"a": 200, "b": 200, "c": 404}
    assert [e["subject"] for e in by_id["b"]["body"]["value"]] == ["Year 5 reading"]
    assert by_id["c"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert by_id["a"]["headers"]["Content-Type"].startswith("application/json")
    batch_log = [
        (r.method, r.in_batch, r.status) for r in server.requests if "$batch" not in r.path
    ]
    assert batch_log[-3:] == [("GET", True, 200), ("GET", True, 200), ("GET", True, 404)]
    assert next(r.path for r in server.requests if r.in_batch) == (
        f"/v1.0/users/{teacher}/calendarView?{WINDOW}"
    )


def test_a_throttled_item_has_its_own_retry_after(
    graph: Any, scenario: Scenario, server: FakeTenantServer
) -> None:
    """One item answers 429 with Retry-After in its headers while the batch itself is 200."""
    teacher, pupil = scenario.person_id("teacher"), scenario.person_id("pupil1")
    server.state.inject(f"/users/{pupil}/calendarView", 429, count=1, retry_after=1.5)

    response = post_batch(graph, [calendar_item("1", teacher), calendar_item("2", pupil)])

    by_id = {item["id"]: item for item in response.json()["responses"]}
    assert response.status_code == 200
    assert (by_id["1"]["status"], by_id["2"]["status"]) == (200, 429)
    assert by_id["2"]["headers"]["Retry-After"] == "1.5"
    assert by_id["2"]["body"]["error"]["code"] == "TooManyRequests"


def test_a_failed_dependency_gives_424(graph: Any, scenario: Scenario) -> None:
    """An item whose dependsOn failed is not run and answers 424."""
    teacher = scenario.person_id("teacher")

    response = post_batch(
        graph,
        [
            {"id": "1", "method": "GET", "url": "/users/nobody@nowhere.example"},
            {**calendar_item("2", teacher), "dependsOn": ["1"]},
        ],
    )

    by_id = {item["id"]: item for item in response.json()["responses"]}
    assert (by_id["1"]["status"], by_id["2"]["status"]) == (404, 424)


def test_items_are_checked_for_permission_one_by_one(start_server: Any, graph_for: Any) -> None:
    """Without Chat.Read.All only the chat item is refused; the others still succeed."""
    server: FakeTenantServer = start_server(
        app={"permissions": ["User.Read.All", "Calendars.Read"]}
    )
    graph = graph_for(server)
    teacher = server.scenario.person_id("teacher")

    response = post_batch(
        graph,
        [
            {"id": "1", "method": "GET", "url": f"/users/{teacher}"},
            {"id": "2", "method": "GET", "url": f"/users/{teacher}/chats"},
        ],
    )

    by_id = {item["id"]: item for item in response.json()["responses"]}
    assert (by_id["1"]["status"], by_id["2"]["status"]) == (200, 403)
    assert by_id["2"]["body"]["error"]["code"] == "Forbidden"


def test_batch_creates_an_event_with_a_json_body(graph: Any, scenario: Scenario) -> None:
    """A POST item with Content-Type and a JSON body runs like a direct POST (201)."""
    head = scenario.person_id("head")

    response = post_batch(
        graph,
        [
            {
                "id": "1",
                "method": "POST",
                "url": f"/users/{head}/events",
                "headers": {"Content-Type": "application/json"},
                "body": {
                    "subject": "Drop-in",
                    "start": {"dateTime": "2026-11-19T10:00:00", "timeZone": "UTC"},
                    "end": {"dateTime": "2026-11-19T10:15:00", "timeZone": "UTC"},
                },
            }
        ],
    )

    item = response.json()["responses"][0]
    assert (item["status"], item["body"]["subject"]) == (201, "Drop-in")
