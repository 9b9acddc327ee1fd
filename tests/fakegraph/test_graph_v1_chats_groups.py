"""The fake's chats, group lookups by address, meeting series and bots, as Graph serves them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from remote_guard.fakegraph.scenario import Scenario
from remote_guard.fakegraph.server import FakeTenantServer
from tests.fakegraph.conftest import SCENARIO

WINDOW = "startDateTime=2026-11-16T00:00:00Z&endDateTime=2026-11-20T00:00:00Z"
PUPILS = [f"pupil{n}" for n in range(1, 8)]


def _big_chat_people() -> list[dict[str, Any]]:
    return [{"key": f"kid{n}", "name": f"Kid {n}", "kind": "pupil"} for n in range(1, 26)]


# --- groups by address -----------------------------------------------------------------------------


def test_group_found_by_its_mail_address(graph: Any, server: FakeTenantServer) -> None:
    """mail eq '...' matches the group's address whatever its case; others give an empty list."""
    group = server.state.groups[server.scenario.group_id("year5")]
    query = quote(f"mail eq '{group.mail.upper()}'")

    found = graph.get(f"/groups?$filter={query}&$select=id,displayName,mail").json()["value"]
    nothing = graph.get("/groups?$filter=" + quote("mail eq 'parent@gmail.com'")).json()["value"]

    assert found == [{"id": group.id, "displayName": "Year 5", "mail": group.mail}]
    assert nothing == []


def test_group_list_refuses_filters_it_does_not_evaluate(graph: Any) -> None:
    response = graph.get("/groups?$filter=" + quote("startswith(mail,'year')"))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_group_invitation_is_one_attendee_with_the_groups_address(
    graph: Any, scenario: Scenario, server: FakeTenantServer
) -> None:
    """Outlook keeps an invited group as one attendee, named by its mail address."""
    teacher = scenario.person_id("teacher")
    events = graph.get(f"/users/{teacher}/calendarView?{WINDOW}").json()["value"]
    lesson = next(e for e in events if e["subject"] == "Year 5 reading")
    group = server.state.groups[scenario.group_id("year5")]

    addresses = [a["emailAddress"]["address"] for a in lesson["attendees"]]

    assert addresses == [group.mail, "parent@gmail.com"]


# --- chats -----------------------------------------------------------------------------------------


def test_expanded_chat_members_stop_at_25_and_the_member_list_has_them_all(
    start_server: Any, graph_for: Any
) -> None:
    """Graph's known issue: a chat list with $expand=members gives at most 25 members."""
    kids = _big_chat_people()
    server = start_server(
        people=[*SCENARIO["people"], *kids],
        chats=[{"key": "class-chat", "members": ["teacher", *(k["key"] for k in kids)]}],
    )
    graph = graph_for(server)
    teacher = server.scenario.person_id("teacher")
    chat_id = server.chat_id("class-chat")

    chats = [c for page in graph.all_pages(f"/users/{teacher}/chats?$expand=members") for c in page]
    listed = next(c for c in chats if c["id"] == chat_id)
    members = graph.get(f"/chats/{chat_id}/members").json()

    assert listed["chatType"] == "group"
    assert len(listed["members"]) == 25
    assert len(members["value"]) == 26
    assert "@odata.nextLink" not in members
    assert {m["userId"] for m in members["value"]} >= {m["userId"] for m in listed["members"]}


def test_user_chats_page_with_next_links(start_server: Any, graph_for: Any) -> None:
    """Nine chats at the scenario's page size of five: two pages, the second by nextLink."""
    server = start_server(
        chats=[{"key": f"dm{n}", "members": ["teacher", f"pupil{n}"]} for n in range(1, 8)]
    )
    graph = graph_for(server)
    teacher = server.scenario.person_id("teacher")

    pages = graph.all_pages(f"/users/{teacher}/chats?$expand=members")

    # Seven direct chats and the chats of the teacher's two private Teams meetings.
    assert [len(page) for page in pages] == [5, 4]
    assert {c["chatType"] for page in pages for c in page} == {"oneOnOne", "meeting"}


def test_chat_members_need_a_chat_permission(start_server: Any, graph_for: Any) -> None:
    """Without any chat permission the member list is a 403; ChatMember.Read.All alone is enough."""
    only_members = [
        p for p in SCENARIO.get("app", {}).get("permissions", []) if not p.startswith("Chat")
    ]
    server = start_server(app={"permissions": ["User.Read.All", *only_members]})
    graph = graph_for(server)
    chat_id = server.chat_id("dm")

    assert graph.get(f"/chats/{chat_id}/members").status_code == 403

    allowed = start_server(app={"permissions": ["ChatMember.Read.All"]})
    assert graph_for(allowed).get(f"/chats/{chat_id}/members").status_code == 200


def test_chat_messages_newest_first_by_creation(start_server: Any, graph_for: Any) -> None:
    """$orderby=createdDateTime desc with $filter createdDateTime lt: Graph's documented pair."""
    server = start_server(
        chats=[
            {
                "key": "dm",
                "members": ["teacher", "pupil1"],
                "messages": [
                    {"at": "2026-11-17T16:10:00Z", "sender": "teacher", "text": "one"},
                    {"at": "2026-11-17T16:12:00Z", "sender": "pupil1", "text": "two"},
                    {"at": "2026-11-18T08:00:00Z", "sender": "teacher", "text": "three"},
                ],
            }
        ]
    )
    graph = graph_for(server)
    chat_id = server.chat_id("dm")
    base = f"/chats/{chat_id}/messages?$top=50&$orderby=createdDateTime desc"

    newest_first = graph.get(base).json()["value"]
    before = graph.get(base + "&$filter=createdDateTime lt 2026-11-18T00:00:00Z").json()["value"]

    assert [m["body"]["content"] for m in newest_first] == [
        "<p>three</p>",
        "<p>two</p>",
        "<p>one</p>",
    ]
    assert [m["body"]["content"] for m in before] == ["<p>two</p>", "<p>one</p>"]
    assert newest_first[0]["chatId"] == chat_id
    assert newest_first[1]["from"]["user"]["id"] == server.scenario.person_id("pupil1")


# --- series --------------------------------------------------------------------------------------


def test_occurrences_of_a_series_name_their_master_per_mailbox(
    start_server: Any, graph_for: Any
) -> None:
    """Each mailbox has its own copy of the series master, so its own seriesMasterId."""
    lesson = {
        "subject": "Reading",
        "organizer": "teacher",
        "invitees": ["pupil1"],
        "series": "weekly-reading",
    }
    server = start_server(
        meetings=[
            {**lesson, "key": "r1", "start": "2026-11-17T10:00:00Z", "end": "2026-11-17T10:30:00Z"},
            {**lesson, "key": "r2", "start": "2026-11-19T10:00:00Z", "end": "2026-11-19T10:30:00Z"},
            {"key": "one-off", "subject": "Catch-up", "organizer": "teacher", "start": "2026-11-18T10:00:00Z", "end": "2026-11-18T10:30:00Z"},
        ]
    )  # fmt: skip
    graph = graph_for(server)
    scenario = server.scenario

    def events_of(key: str) -> list[dict[str, Any]]:
        user = scenario.person_id(key)
        return graph.get(f"/users/{user}/calendarView?{WINDOW}").json()["value"]

    teacher_events, pupil_events = events_of("teacher"), events_of("pupil1")

    teacher_masters = {e["seriesMasterId"] for e in teacher_events if e["subject"] == "Reading"}
    pupil_masters = {e["seriesMasterId"] for e in pupil_events}
    assert teacher_masters == {server.series_id("r1")}
    assert len(pupil_masters) == 1
    assert pupil_masters != teacher_masters
    assert {e["type"] for e in teacher_events if e["subject"] == "Reading"} == {"occurrence"}
    one_off = next(e for e in teacher_events if e["subject"] == "Catch-up")
    assert (one_off["type"], one_off["seriesMasterId"]) == ("singleInstance", None)
    assert server.series_id("one-off") is None


# --- bots ----------------------------------------------------------------------------------------


def test_a_bot_joiner_is_an_application_identity(start_server: Any, graph_for: Any) -> None:
    """In the call record and in the attendance report a bot is an application, not a user."""
    server = start_server(
        externals=[*SCENARIO["externals"], {"key": "notes", "kind": "bot", "name": "Notes Bot"}],
        meetings=[
            {
                "key": "lesson",
                "subject": "Reading",
                "organizer": "teacher",
                "start": "2026-11-17T10:00:00Z",
                "end": "2026-11-17T11:00:00Z",
                "invitees": ["pupil1"],
                "attendance": [
                    {"who": "teacher", "intervals": [["2026-11-17T10:00:00Z", "2026-11-17T11:00:00Z"]]},
                    {"who": "notes", "intervals": [["2026-11-17T10:00:00Z", "2026-11-17T11:00:00Z"]]},
                ],
                "chat": [{"at": "2026-11-17T10:05:00Z", "sender": "notes", "text": "Recording notes"}],
            }
        ],
    )  # fmt: skip
    graph = graph_for(server)
    scenario = server.scenario
    teacher = scenario.person_id("teacher")
    event = graph.get(f"/users/{teacher}/calendarView?{WINDOW}").json()["value"][0]
    join_url = event["onlineMeeting"]["joinUrl"]
    meeting = graph.get(
        f"/users/{teacher}/onlineMeetings?$filter=" + quote(f"JoinWebUrl eq '{join_url}'")
    ).json()["value"][0]
    base = f"/users/{teacher}/onlineMeetings/{meeting['id']}/attendanceReports"
    report_id = graph.get(base).json()["value"][0]["id"]
    records = graph.get(f"{base}/{report_id}/attendanceRecords").json()["value"]
    call_id = graph.get(
        "/communications/callRecords?$filter=startDateTime ge 2026-11-17T00:00:00Z and "
        "startDateTime lt 2026-11-18T00:00:00Z"
    ).json()["value"][0]["id"]
    participants = graph.get(f"/communications/callRecords/{call_id}/participants_v2").json()[
        "value"
    ]
    messages = graph.get(f"/chats/{meeting['chatInfo']['threadId']}/messages?$top=50").json()[
        "value"
    ]

    bot_record = next(r for r in records if r["identity"]["displayName"] == "Notes Bot")
    assert (
        bot_record["identity"]["@odata.type"]
        == "#microsoft.graph.communicationsApplicationIdentity"
    )
    bot_participant = next(
        p
        for p in participants
        if (p["identity"]["application"] or {}).get("displayName") == "Notes Bot"
    )
    assert bot_participant["identity"]["user"] is None
    bot_message = next(m for m in messages if m["body"]["content"] == "<p>Recording notes</p>")
    assert bot_message["from"]["user"] is None
    assert bot_message["from"]["application"]["displayName"] == "Notes Bot"
