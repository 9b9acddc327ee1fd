"""Recurring meetings and ad-hoc ("Meet now") meetings as Graph serves them: a series is one
Teams meeting (one join URL, one onlineMeeting, one chat) with an attendance report and a call
record for each time it ran; an ad-hoc meeting has no calendar event at all."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

WINDOW = "startDateTime=2026-11-16T00:00:00Z&endDateTime=2026-11-20T00:00:00Z"


def _lesson(key: str, day: int, **changes: Any) -> dict[str, Any]:
    start, end = f"2026-11-{day}T10:00:00Z", f"2026-11-{day}T10:30:00Z"
    return {
        "key": key,
        "subject": "Reading",
        "organizer": "teacher",
        "invitees": ["pupil1"],
        "series": "weekly-reading",
        "start": start,
        "end": end,
        "attendance": [
            {"who": "teacher", "intervals": [[start, end]]},
            {"who": "pupil1", "intervals": [[start, end]]},
        ],
        "chat": [{"at": f"2026-11-{day}T10:05:00Z", "sender": "pupil1", "text": f"day {day}"}],
        **changes,
    }


SERIES = [_lesson("r1", 16), _lesson("r2", 17)]


def _online_meetings(graph: Any, user_id: str, join_url: str) -> list[dict[str, Any]]:
    literal = quote(f"'{join_url}'", safe="")
    response = graph.get(f"/users/{user_id}/onlineMeetings?$filter=JoinWebUrl%20eq%20{literal}")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["value"]
    return items


def test_a_series_is_one_online_meeting_with_a_report_per_occurrence(
    start_server: Any, graph_for: Any
) -> None:
    server = start_server(meetings=SERIES)
    graph = graph_for(server)
    teacher = server.scenario.person_id("teacher")
    join_url = server.join_url("r1")

    assert server.join_url("r2") == join_url
    (meeting,) = _online_meetings(graph, teacher, join_url)
    base = f"/users/{teacher}/onlineMeetings/{meeting['id']}"
    reports = graph.get(f"{base}/attendanceReports").json()["value"]
    assert [(r["meetingStartDateTime"], r["meetingEndDateTime"]) for r in reports] == [
        ("2026-11-16T10:00:00.0000000Z", "2026-11-16T10:30:00.0000000Z"),
        ("2026-11-17T10:00:00.0000000Z", "2026-11-17T10:30:00.0000000Z"),
    ]
    # One chat for the series, holding every occurrence's messages.
    thread = meeting["chatInfo"]["threadId"]
    messages = graph.get(f"/chats/{thread}/messages").json()["value"]
    assert sorted(m["createdDateTime"] for m in messages) == [
        "2026-11-16T10:05:00.000Z",
        "2026-11-17T10:05:00.000Z",
    ]
    # A call record for each occurrence, all with the series' join URL.
    records = graph.get(
        "/communications/callRecords?$filter=startDateTime ge 2026-11-16T00:00:00Z"
    ).json()["value"]
    meetings = [r for r in records if r["joinWebUrl"] == join_url]
    assert [r["startDateTime"] for r in meetings] == [
        "2026-11-16T10:00:00.0000000Z",
        "2026-11-17T10:00:00.0000000Z",
    ]
    assert len({r["id"] for r in meetings}) == 2


def test_occurrences_carry_their_original_start(start_server: Any, graph_for: Any) -> None:
    """Each occurrence's calendar event says where it sits in the series (originalStart, UTC);
    moved, it becomes an exception and keeps it. A single event has none."""
    server = start_server(
        meetings=[
            *SERIES,
            {"key": "one-off", "subject": "Catch-up", "organizer": "teacher", "start": "2026-11-18T10:00:00Z", "end": "2026-11-18T10:30:00Z"},
        ]
    )  # fmt: skip
    server.state.update_meeting("r2", start=datetime(2026, 11, 17, 11, 0, tzinfo=UTC))
    graph = graph_for(server)
    teacher = server.scenario.person_id("teacher")

    events = graph.get(f"/users/{teacher}/calendarView?{WINDOW}").json()["value"]

    by_subject = sorted(
        (e["type"], e.get("originalStart"), e["onlineMeeting"]["joinUrl"] == server.join_url("r1"))
        for e in events
        if e["subject"] == "Reading"
    )
    assert by_subject == [
        ("exception", "2026-11-17T10:00:00Z", True),
        ("occurrence", "2026-11-16T10:00:00Z", True),
    ]
    one_off = next(e for e in events if e["subject"] == "Catch-up")
    assert "originalStart" not in one_off


def test_an_ad_hoc_meeting_has_no_calendar_event(start_server: Any, graph_for: Any) -> None:
    """A "Meet now": nobody's calendar shows it, but its onlineMeeting, chat, call record (a
    groupCall with the join URL and organizer_v2) and attendance report exist."""
    server = start_server(
        meetings=[{**_lesson("meet-now", 17), "series": None, "invitees": [], "calendar": False}]
    )
    graph = graph_for(server)
    teacher = server.scenario.person_id("teacher")
    join_url = server.join_url("meet-now")
    assert join_url is not None

    events = graph.get(f"/users/{teacher}/calendarView?{WINDOW}").json()["value"]
    (meeting,) = _online_meetings(graph, teacher, join_url)
    records = graph.get(
        "/communications/callRecords?$filter=startDateTime ge 2026-11-17T00:00:00Z"
    ).json()["value"]
    reports = graph.get(
        f"/users/{teacher}/onlineMeetings/{meeting['id']}/attendanceReports"
    ).json()["value"]

    assert events == []
    (record,) = [r for r in records if r["joinWebUrl"] == join_url]
    assert record["type"] == "groupCall"
    assert record["organizer_v2"]["identity"]["user"]["id"] == teacher
    assert len(reports) == 1
