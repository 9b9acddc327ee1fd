"""Graph-like throttling in the fake tenant: published limits, 429 with Retry-After, batch items."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.fakegraph.throttling import (
    CALL_RECORDS,
    OUTLOOK_MAILBOX,
    TEAMS_MESSAGES,
    Throttling,
    identity_cost,
    rate_limits,
)

from .conftest import Graph

WINDOW = "startDateTime=2026-11-16T00:00:00Z&endDateTime=2026-11-20T00:00:00Z"


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def enabled(ticks: Ticks | None = None) -> Throttling:
    throttling = Throttling(clock=ticks) if ticks is not None else Throttling()
    throttling.enabled = True
    throttling.tenant_users = 600
    return throttling


def test_requests_are_classed_under_the_published_limits() -> None:
    """A calendar read counts per mailbox, a chat message read against Teams' 20 rps, a call
    record page against the tenant's call record budget."""
    calendar = rate_limits("GET", ["users", "U1", "calendarView"], {}, tenant_users=600)
    messages = rate_limits("GET", ["chats", "19:x", "messages"], {}, tenant_users=600)
    records = rate_limits("GET", ["communications", "callRecords"], {}, tenant_users=600)

    assert (OUTLOOK_MAILBOX, "u1", 1) in calendar
    assert (TEAMS_MESSAGES, "tenant", 1) in messages
    assert (CALL_RECORDS, "tenant", 1) in records


def test_identity_requests_cost_their_published_resource_units() -> None:
    """GET users costs 2 (1 with $select); transitiveMembers 5; $top under 20 takes one off."""
    assert identity_cost("GET", ["users"], {}) == 2
    assert identity_cost("GET", ["users"], {"$select": "id"}) == 1
    assert identity_cost("GET", ["groups", "g", "transitiveMembers"], {}) == 5
    assert identity_cost("GET", ["groups", "g", "transitiveMembers"], {"$top": "5"}) == 4
    assert identity_cost("GET", ["users", "u"], {"$select": "id", "$top": "1"}) == 1


def test_the_request_over_a_rate_limit_gets_429_with_retry_after() -> None:
    """The 1,501st call record request in 20 s is refused, and allowed once the window moved."""
    ticks = Ticks()
    throttling = enabled(ticks)
    path = ["communications", "callRecords"]

    answers = [throttling.check("GET", path, {}, in_batch=False) for _ in range(1500)]
    refused = throttling.check("GET", path, {}, in_batch=False)
    ticks.seconds += 20.5
    later = throttling.check("GET", path, {}, in_batch=False)

    assert answers == [None] * 1500
    assert refused is not None
    assert (refused.status, refused.code, refused.headers["Retry-After"]) == (
        429,
        "TooManyRequests",
        "20",
    )
    assert later is None
    assert throttling.counts[CALL_RECORDS.name] == 1


def test_throttling_is_off_unless_turned_on(graph: Graph, server: FakeTenantServer) -> None:
    """A burst far over Teams' 20 rps on a default tenant is served in full."""
    chat_id = server.chat_id("dm")

    statuses = {graph.get(f"/chats/{chat_id}/messages").status_code for _ in range(25)}

    assert statuses == {200}


def _concurrent_calendar_reads(server: FakeTenantServer, user_ids: list[str]) -> list[int]:
    """Read each user's calendar at the same moment, one connection each; the statuses."""
    clients = [Graph(server) for _ in user_ids]
    for client in clients:
        # Warm the connection, so the reads below arrive together.
        assert client.get("/users?$top=1").status_code == 200
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = [0] * len(clients)
    codes: list[str] = [""] * len(clients)

    def read(index: int) -> None:
        barrier.wait()
        answer = clients[index].get(f"/users/{user_ids[index]}/calendarView?{WINDOW}")
        statuses[index] = answer.status_code
        if answer.status_code == 429:
            assert answer.headers["Retry-After"] == "1"
            codes[index] = answer.json()["error"]["code"]

    threads = [threading.Thread(target=read, args=(n,)) for n in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert {code for code in codes if code} <= {"ApplicationThrottled"}
    return statuses


def test_a_fifth_concurrent_request_to_one_mailbox_gets_429(server: FakeTenantServer) -> None:
    """With four requests in flight to a mailbox, Outlook refuses a fifth to the same one."""
    server.state.throttling = enabled()
    server.state.faults.latency_ms = 1000
    teacher = server.scenario.person_id("teacher")

    statuses = _concurrent_calendar_reads(server, [teacher] * 5)

    assert sorted(statuses) == [200, 200, 200, 200, 429]


def test_concurrent_requests_to_different_mailboxes_are_served(server: FakeTenantServer) -> None:
    """The concurrency limit is per app and mailbox: five mailboxes at once are all served."""
    server.state.throttling = enabled()
    server.state.faults.latency_ms = 1000
    users = [
        server.scenario.person_id(key) for key in ("teacher", "head", "dsl", "pupil1", "pupil2")
    ]

    statuses = _concurrent_calendar_reads(server, users)

    assert statuses == [200] * 5


def _message_items(chat_id: str, count: int, first: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": str(first + n), "method": "GET", "url": f"/chats/{chat_id}/messages"}
        for n in range(count)
    ]


def test_batch_items_over_a_limit_get_their_own_429(graph: Graph, server: FakeTenantServer) -> None:
    """Twenty chat message reads in one second pass; the items of the next batch in that second
    are refused one by one, each with its own Retry-After, and logged as batch items."""
    ticks = Ticks()
    server.state.throttling = enabled(ticks)
    chat_id = server.chat_id("dm")
    assert chat_id is not None

    first = graph.post("/$batch", {"requests": _message_items(chat_id, 20)})
    second = graph.post("/$batch", {"requests": _message_items(chat_id, 2, first=20)})

    assert first.status_code == 200
    assert {item["status"] for item in first.json()["responses"]} == {200}
    assert second.status_code == 200
    refused = second.json()["responses"]
    assert [(item["status"], item["headers"]["Retry-After"]) for item in refused] == [
        (429, "1"),
        (429, "1"),
    ]
    logged = [r.status for r in server.requests if r.in_batch and r.status == 429]
    assert logged == [429, 429]


def test_an_outlook_batch_item_is_refused_while_its_mailbox_is_busy(
    graph: Graph, server: FakeTenantServer
) -> None:
    """A calendar item in a batch gets 429 when four requests to its mailbox are in flight."""
    server.state.throttling = enabled()
    teacher = server.scenario.person_id("teacher")
    head = server.scenario.person_id("head")
    server.state.throttling.hold(Counter({f"outlook:{teacher.lower()}": 4}))

    answer = graph.post(
        "/$batch",
        {
            "requests": [
                {"id": "t", "method": "GET", "url": f"/users/{teacher}/calendarView?{WINDOW}"},
                {"id": "h", "method": "GET", "url": f"/users/{head}/calendarView?{WINDOW}"},
            ]
        },
    )

    statuses = {item["id"]: item["status"] for item in answer.json()["responses"]}
    assert statuses == {"t": 429, "h": 200}


def test_batch_scopes_count_items_and_the_places_they_hold() -> None:
    """A batch of six reads of one calendar holds four places (Outlook runs four at a time)."""
    throttling = enabled()
    body = {
        "requests": [
            {"id": str(n), "method": "GET", "url": f"/users/U1/calendarView?{WINDOW}"}
            for n in range(6)
        ]
        + [{"id": "c", "method": "GET", "url": "/chats/19:x/messages"}]
    }

    count, held = throttling.batch_scopes(json.dumps(body).encode())

    assert count == 7
    assert dict(held) == {"outlook:u1": 4}
