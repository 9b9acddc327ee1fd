"""calendarView/delta as frugal polling uses it: paged by Prefer, read through $batch, moved
events delivered or removed, and a bad token refusing a whole batch."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from remote_guard.fakegraph.scenario import Scenario
from remote_guard.fakegraph.server import FakeTenantServer
from tests.fakegraph.conftest import Graph

WINDOW = "startDateTime=2026-11-16T00:00:00Z&endDateTime=2026-11-20T00:00:00Z"


def _relative(link: str, server: FakeTenantServer) -> str:
    return link.removeprefix(server.graph_base_url)


def _batched_round(graph: Graph, server: FakeTenantServer, url: str) -> tuple[list[Any], str]:
    """A whole delta round with each page read as a $batch item (maxpagesize 1)."""
    items: list[Any] = []
    while True:
        answer = graph.post(
            "/$batch",
            {
                "requests": [
                    {
                        "id": "1",
                        "method": "GET",
                        "url": url,
                        "headers": {"Prefer": "odata.maxpagesize=1"},
                    }
                ]
            },
        ).json()["responses"][0]
        assert answer["status"] == 200, answer
        assert answer["headers"]["Preference-Applied"] == "odata.maxpagesize=1"
        items.extend(answer["body"]["value"])
        if "@odata.deltaLink" in answer["body"]:
            return items, answer["body"]["@odata.deltaLink"]
        url = _relative(answer["body"]["@odata.nextLink"], server)


def test_a_delta_round_can_be_read_page_by_page_in_batches(
    graph: Graph, scenario: Scenario, server: FakeTenantServer
) -> None:
    """Each page holds one event (Prefer odata.maxpagesize=1), its next link works as a batch
    item's URL, and the delta link asks only for what changed since."""
    teacher = scenario.person_id("teacher")
    events, delta_link = _batched_round(
        graph, server, f"/users/{teacher}/calendarView/delta?{WINDOW}"
    )
    again, _ = _batched_round(graph, server, _relative(delta_link, server))
    assert len(events) == 4
    assert again == []


def test_an_event_moved_out_of_the_window_is_removed_and_back_in_is_delivered(
    graph: Graph, scenario: Scenario, server: FakeTenantServer
) -> None:
    """Graph's delta tracks the window it began with: an event moved out of it comes as
    @removed (Graph documents removals for events outside the range), and one moved back in
    comes whole."""
    teacher = scenario.person_id("teacher")
    _, link = _batched_round(graph, server, f"/users/{teacher}/calendarView/delta?{WINDOW}")
    server.state.update_meeting(
        "later",
        start=datetime(2026, 11, 25, 10, tzinfo=UTC),
        end=datetime(2026, 11, 25, 11, tzinfo=UTC),
    )
    moved_out, link = _batched_round(graph, server, _relative(link, server))
    server.state.update_meeting(
        "later",
        start=datetime(2026, 11, 19, 9, tzinfo=UTC),
        end=datetime(2026, 11, 19, 10, tzinfo=UTC),
    )
    moved_in, _ = _batched_round(graph, server, _relative(link, server))
    assert [item.get("@removed") for item in moved_out] == [{"reason": "deleted"}]
    assert [(item["subject"], item["start"]["dateTime"][:16]) for item in moved_in] == [
        ("Tomorrow's lesson", "2026-11-19T09:00")
    ]


def test_a_batch_sent_with_an_expired_token_is_refused_whole(
    graph: Graph, scenario: Scenario, server: FakeTenantServer
) -> None:
    """The envelope carries the token its items run with: Graph answers 401 for the batch,
    so a client renews the token once for all of them."""
    server.state.expire_tokens()
    response = graph.post(
        "/$batch",
        {
            "requests": [
                {
                    "id": "1",
                    "method": "GET",
                    "url": f"/users/{scenario.person_id('teacher')}/calendarView/delta?{WINDOW}",
                }
            ]
        },
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
