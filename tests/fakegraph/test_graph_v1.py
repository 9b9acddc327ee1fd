"""Graph v1.0 as the fake serves it to the real client stack (requests over HTTPS)."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import quote

import pytest

from remote_guard.fakegraph.scenario import Scenario
from remote_guard.fakegraph.server import FakeTenantServer

WINDOW = "startDateTime=2026-11-16T00:00:00Z&endDateTime=2026-11-20T00:00:00Z"
TENANT = "7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37"
INCLUDE_UNKNOWN = {"Prefer": "include-unknown-enum-members"}


def error_of(response: Any) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def pupil_lesson_event(graph: Any, scenario: Scenario) -> dict[str, Any]:
    pupil = scenario.person_id("pupil1")
    events = graph.get(f"/users/{pupil}/calendarView?{WINDOW}").json()["value"]
    assert [e["subject"] for e in events] == ["Year 5 reading"]
    event: dict[str, Any] = events[0]
    return event


def lesson_meeting(graph: Any, scenario: Scenario, **headers: str) -> dict[str, Any]:
    join_url = pupil_lesson_event(graph, scenario)["onlineMeeting"]["joinUrl"]
    teacher = scenario.person_id("teacher")
    response = graph.get(
        f"/users/{teacher}/onlineMeetings?$filter=" + quote(f"JoinWebUrl eq '{join_url}'"),
        headers=headers,
    )
    meetings = response.json()["value"]
    assert len(meetings) == 1
    meeting: dict[str, Any] = meetings[0]
    return meeting


# --- directory -----------------------------------------------------------------------------------


def test_transitive_members_page_to_the_end(graph: Any, scenario: Scenario) -> None:
    """Nested members come in pages of five with opaque skip tokens, users and groups typed."""
    pages = graph.all_pages(f"/groups/{scenario.group_id('pupils')}/transitiveMembers")

    members = [(m["@odata.type"], m["id"]) for page in pages for m in page]
    assert [len(page) for page in pages] == [5, 3]
    assert sorted(members) == sorted(
        [("#microsoft.graph.group", scenario.group_id("year5"))]
        + [("#microsoft.graph.user", scenario.person_id(f"pupil{n}")) for n in range(1, 8)]
    )


def test_top_and_maxpagesize_set_the_page_size(graph: Any, scenario: Scenario) -> None:
    """$top and Prefer: odata.maxpagesize each choose the page size; nextLinks keep it."""
    path = f"/groups/{scenario.group_id('pupils')}/transitiveMembers"

    by_top = graph.all_pages(f"{path}?$top=3")
    by_prefer = graph.all_pages(path, headers={"Prefer": "odata.maxpagesize=4"})

    assert [len(page) for page in by_top] == [3, 3, 2]
    assert [len(page) for page in by_prefer] == [4, 4]


def test_user_type_comes_only_with_select(graph: Any, scenario: Scenario) -> None:
    """userType is not a default property; $select and $filter=userType eq 'Guest' give it."""
    default = graph.get(f"/users/{scenario.person_id('visitor')}").json()
    guests = graph.get("/users?$select=id,userType,mail&$filter=userType eq 'Guest'").json()

    assert "userType" not in default
    assert default["userPrincipalName"] == "gus_example.com#EXT#@bramhamshadwell.onmicrosoft.com"
    assert guests["value"] == [
        {"id": scenario.person_id("visitor"), "userType": "Guest", "mail": "gus@example.com"}
    ]


def test_unknown_user_is_request_resource_not_found(graph: Any) -> None:
    """A user id the tenant does not have is a 404 with the directory's error code."""
    response = graph.get("/users/00000000-0000-0000-0000-000000000001")

    assert error_of(response) == (
        404,
        "Request_ResourceNotFound",
        "Resource '00000000-0000-0000-0000-000000000001' does not exist or one of its queried "
        "reference-property objects are not present.",
    )


# --- calendar ------------------------------------------------------------------------------------


def test_calendar_view_event_shape(graph: Any, scenario: Scenario) -> None:
    """An invited pupil's copy of a Teams lesson carries Outlook's properties and formats."""
    event = pupil_lesson_event(graph, scenario)
    teacher = scenario.person_id("teacher")
    organizer_copy = graph.get(f"/users/{teacher}/calendarView?{WINDOW}").json()["value"][0]

    assert event["start"] == {"dateTime": "2026-11-17T10:00:00.0000000", "timeZone": "UTC"}
    assert event["end"] == {"dateTime": "2026-11-17T11:00:00.0000000", "timeZone": "UTC"}
    assert event["organizer"] == {
        "emailAddress": {"name": "Tess Teacher", "address": "teacher@bramhamshadwell.sch.uk"}
    }
    assert [a["emailAddress"] for a in event["attendees"]] == [
        {"name": "Year 5", "address": "Year5@bramhamshadwell.sch.uk"},
        {"name": "parent@gmail.com", "address": "parent@gmail.com"},
    ]
    assert event["attendees"][0]["type"] == "required"
    assert (event["isOrganizer"], organizer_copy["isOrganizer"]) == (False, True)
    assert event["iCalUId"] == organizer_copy["iCalUId"]
    assert event["id"] != organizer_copy["id"]
    assert (event["isOnlineMeeting"], event["onlineMeetingProvider"]) == (True, "teamsForBusiness")
    assert event["onlineMeetingUrl"] is None
    assert (event["type"], event["seriesMasterId"], event["isCancelled"]) == (
        "singleInstance",
        None,
        False,
    )
    assert event["body"]["contentType"] == "html"
    assert "Bring your reading book." in event["body"]["content"]
    assert re.fullmatch(
        r"https://teams\.microsoft\.com/l/meetup-join/19%3ameeting_[A-Za-z0-9]+%40thread\.v2/0"
        r"\?context=%7b%22Tid%22%3a%22" + TENANT + r"%22%2c%22Oid%22%3a%22" + teacher + r"%22%7d",
        event["onlineMeeting"]["joinUrl"],
    )


def test_calendar_view_needs_a_time_window(graph: Any, scenario: Scenario) -> None:
    """Without startDateTime and endDateTime Outlook refuses calendarView."""
    response = graph.get(f"/users/{scenario.person_id('teacher')}/calendarView")

    assert error_of(response) == (
        400,
        "ErrorInvalidParameter",
        "This request requires a time window specified by the query string parameters "
        "StartDateTime and EndDateTime.",
    )


def test_calendar_view_pages_with_skip_and_may_end_on_an_empty_page(
    graph: Any, scenario: Scenario
) -> None:
    """A full page always offers a $skip nextLink, so four events in pages of two end empty."""
    teacher = scenario.person_id("teacher")
    first = graph.get(
        f"/users/{teacher}/calendarView?{WINDOW}", headers={"Prefer": "odata.maxpagesize=2"}
    ).json()
    pages = graph.all_pages(
        f"/users/{teacher}/calendarView?{WINDOW}", headers={"Prefer": "odata.maxpagesize=2"}
    )

    assert "$skip=2" in first["@odata.nextLink"]
    assert [len(page) for page in pages] == [2, 2, 0]
    assert [e["subject"] for page in pages for e in page] == [
        "Year 5 reading",
        "Class assembly",
        "Zoom catch-up",
        "Tomorrow's lesson",
    ]


def test_other_provider_event_keeps_its_link(graph: Any, scenario: Scenario) -> None:
    """A Zoom meeting is online but not Teams: the link Outlook found is its joinUrl."""
    pupil = scenario.person_id("pupil3")
    events = graph.get(f"/users/{pupil}/calendarView?{WINDOW}").json()["value"]
    event = next(e for e in events if e["subject"] == "Zoom catch-up")

    assert (event["isOnlineMeeting"], event["onlineMeetingProvider"]) == (True, "unknown")
    assert event["onlineMeeting"]["joinUrl"] == "https://zoom.us/j/123456789"
    assert "Join at https://zoom.us/j/123456789" in event["body"]["content"]


def test_outlook_timezone_preference_converts_times(graph: Any, scenario: Scenario) -> None:
    """Prefer: outlook.timezone returns start and end in that zone (London is GMT in November)."""
    pupil = scenario.person_id("pupil2")
    response = graph.get(
        f"/users/{pupil}/calendarView?{WINDOW}",
        headers={"Prefer": 'outlook.timezone="Pacific Standard Time"'},
    )

    events = {e["subject"]: e for e in response.json()["value"]}
    assert events["Tomorrow's lesson"]["start"] == {
        "dateTime": "2026-11-19T02:00:00.0000000",
        "timeZone": "Pacific Standard Time",
    }
    assert response.headers["Preference-Applied"] == 'outlook.timezone="Pacific Standard Time"'


# --- online meetings -----------------------------------------------------------------------------


def test_online_meeting_found_by_url_encoded_join_url(graph: Any, scenario: Scenario) -> None:
    """The join URL, URL-encoded inside the filter's quotes, finds the meeting and its chat."""
    meeting = lesson_meeting(graph, scenario)
    teacher = scenario.person_id("teacher")

    organizer_id, message_id, thread_id = (
        base64.b64decode(meeting["id"]).decode().removeprefix("1*").split("*0**")[0],
        "0",
        meeting["chatInfo"]["threadId"],
    )
    assert base64.b64decode(meeting["id"]).decode() == f"1*{teacher}*0**{thread_id}"
    assert organizer_id == teacher
    assert meeting["chatInfo"] == {
        "threadId": thread_id,
        "messageId": message_id,
        "replyChainMessageId": None,
    }
    assert re.fullmatch(r"19:meeting_[A-Za-z0-9]+@thread\.v2", thread_id)
    assert meeting["participants"]["organizer"]["upn"] == "teacher@bramhamshadwell.sch.uk"
    assert meeting["participants"]["organizer"]["role"] == "presenter"
    assert meeting["allowedPresenters"] == "organizer"
    assert meeting["subject"] == "Year 5 reading"


def test_join_url_sent_without_encoding_matches_nothing(graph: Any, scenario: Scenario) -> None:
    """A join URL pasted raw into the query is decoded once by the server and so not found."""
    join_url = pupil_lesson_event(graph, scenario)["onlineMeeting"]["joinUrl"]
    teacher = scenario.person_id("teacher")

    response = graph.get(f"/users/{teacher}/onlineMeetings?$filter=JoinWebUrl eq '{join_url}'")

    assert (response.status_code, response.json()["value"]) == (200, [])


def test_late_enum_members_need_the_prefer_header(graph: Any, scenario: Scenario) -> None:
    """lobbyBypassSettings.scope "invited" reads unknownFutureValue unless the client opts in."""
    without = lesson_meeting(graph, scenario)
    with_header = lesson_meeting(graph, scenario, **INCLUDE_UNKNOWN)

    assert without["lobbyBypassSettings"] == {
        "scope": "unknownFutureValue",
        "isDialInBypassEnabled": False,
    }
    assert with_header["lobbyBypassSettings"]["scope"] == "invited"


def test_missing_access_policy_is_forbidden(start_server: Any, graph_for: Any) -> None:
    """Without a Teams application access policy for the user, onlineMeetings are refused."""
    server: FakeTenantServer = start_server(
        app={"access_policy": ["head"]},
    )
    graph = graph_for(server)
    teacher = server.scenario.person_id("teacher")

    response = graph.get(f"/users/{teacher}/onlineMeetings?$filter=JoinWebUrl eq 'x'")

    assert error_of(response) == (
        403,
        "Forbidden",
        "No Application Access Policy found for this app.",
    )
    assert set(response.json()["error"]["innerError"]) == {
        "date",
        "request-id",
        "client-request-id",
    }


def test_channel_meeting_links_to_its_channel_post(start_server: Any, graph_for: Any) -> None:
    """A channel meeting's join URL and chatInfo name the channel thread and its post."""
    server: FakeTenantServer = start_server()
    server.state.app_permissions.add("ChannelMessage.Read.All")
    graph = graph_for(server)
    scenario = server.scenario
    teacher = scenario.person_id("teacher")
    team = scenario.team_id("y5")
    events = graph.get(f"/users/{teacher}/calendarView?{WINDOW}").json()["value"]
    join_url = next(e for e in events if e["subject"] == "Class assembly")["onlineMeeting"][
        "joinUrl"
    ]
    meeting = graph.get(
        f"/users/{teacher}/onlineMeetings?$filter=" + quote(f"JoinWebUrl eq '{join_url}'")
    ).json()["value"][0]
    post_id = meeting["chatInfo"]["messageId"]

    replies = graph.get(
        f"/teams/{team}/channels/19:y5general@thread.tacv2/messages/{post_id}/replies"
    ).json()["value"]
    as_chat = graph.get("/chats/19:y5general@thread.tacv2/messages")
    reports = graph.get(f"/users/{teacher}/onlineMeetings/{meeting['id']}/attendanceReports")

    assert join_url.startswith(
        f"https://teams.microsoft.com/l/meetup-join/19%3ay5general%40thread.tacv2/{post_id}?context="
    )
    assert post_id != "0"
    assert meeting["chatInfo"]["threadId"] == "19:y5general@thread.tacv2"
    assert [(r["from"]["user"]["id"], r["replyToId"]) for r in replies] == [
        (scenario.person_id("pupil2"), post_id)
    ]
    assert as_chat.status_code == 404
    assert error_of(reports)[:2] == (400, "BadRequest")


# --- permissions and tokens ----------------------------------------------------------------------


def test_missing_permissions_get_each_workloads_403(start_server: Any, graph_for: Any) -> None:
    """Directory, Outlook and Teams APIs each refuse a token without their permission."""
    server: FakeTenantServer = start_server(app={"permissions": ["Chat.Read.All"]})
    graph = graph_for(server)
    teacher = server.scenario.person_id("teacher")

    assert error_of(graph.get("/users")) == (
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    assert error_of(graph.get(f"/users/{teacher}/calendarView?{WINDOW}")) == (
        403,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    )
    assert error_of(graph.get("/communications/callRecords"))[:2] == (403, "Forbidden")


def test_calendars_read_write_satisfies_calendars_read(start_server: Any, graph_for: Any) -> None:
    """A higher permission (Calendars.ReadWrite) is accepted where Calendars.Read is needed."""
    server: FakeTenantServer = start_server(app={"permissions": ["Calendars.ReadWrite"]})
    graph = graph_for(server)

    response = graph.get(f"/users/{server.scenario.person_id('teacher')}/calendarView?{WINDOW}")

    assert response.status_code == 200


def test_expired_token_is_401(graph: Any, scenario: Scenario, clock: Any) -> None:
    """Once the tenant's clock passes the token's lifetime, Graph refuses it."""
    path = f"/users/{scenario.person_id('teacher')}"
    before = graph.get(path)
    clock.advance(seconds=3600)
    after = graph.get(path)

    assert before.status_code == 200
    assert error_of(after) == (
        401,
        "InvalidAuthenticationToken",
        "Access token has expired or is not yet valid.",
    )


def test_missing_token_is_401(server: FakeTenantServer) -> None:
    """A request with no Authorization header is told the token is empty."""
    import requests

    response = requests.get(
        f"{server.graph_base_url}/users", verify=str(server.ca_path), timeout=10
    )

    assert error_of(response) == (401, "InvalidAuthenticationToken", "Access token is empty.")


def test_response_headers(graph: Any) -> None:
    """Graph echoes client-request-id, sends a request-id, and OData's JSON content type."""
    response = graph.get("/users", headers={"client-request-id": "abc-123"})

    assert response.headers["client-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f-]{36}", response.headers["request-id"])
    assert response.headers["Content-Type"] == (
        "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
        "charset=utf-8"
    )


def test_unknown_segment_is_bad_request(graph: Any, scenario: Scenario) -> None:
    """A path Graph does not have names the first unknown segment."""
    response = graph.get(f"/users/{scenario.person_id('teacher')}/nonsense")

    assert error_of(response) == (
        400,
        "BadRequest",
        "Resource not found for the segment 'nonsense'.",
    )


# --- chats ---------------------------------------------------------------------------------------


def test_system_messages_read_unknown_future_value_without_prefer(
    graph: Any, scenario: Scenario
) -> None:
    """systemEventMessage is an evolvable enum member: hidden unless the client opts in."""
    thread = lesson_meeting(graph, scenario)["chatInfo"]["threadId"]

    plain = graph.get(f"/chats/{thread}/messages?$top=50").json()["value"]
    opted_in = graph.get(f"/chats/{thread}/messages?$top=50", headers=INCLUDE_UNKNOWN).json()[
        "value"
    ]

    assert [m["messageType"] for m in plain] == [
        "unknownFutureValue",
        "unknownFutureValue",
        "message",
    ]
    assert [m["messageType"] for m in opted_in] == [
        "systemEventMessage",
        "systemEventMessage",
        "message",
    ]
    assert [m["createdDateTime"] for m in plain] == [
        "2026-11-17T11:02:00.000Z",
        "2026-11-17T10:10:00.000Z",
        "2026-11-17T10:03:00.000Z",
    ]
    ended, recording, pupil_message = plain
    assert (ended["from"], ended["body"]) == (
        None,
        {"contentType": "html", "content": "<systemEventMessage/>"},
    )
    assert ended["eventDetail"]["@odata.type"] == "#microsoft.graph.callEndedEventMessageDetail"
    assert ended["eventDetail"]["callDuration"] == "PT1H4M"
    assert recording["eventDetail"]["@odata.type"] == (
        "#microsoft.graph.callRecordingEventMessageDetail"
    )
    assert recording["eventDetail"]["callRecordingStatus"] == "success"
    assert recording["eventDetail"]["callRecordingDuration"] == "PT30M"
    assert recording["eventDetail"]["initiator"]["user"]["id"] == scenario.person_id("teacher")
    assert pupil_message["from"]["user"] == {
        "@odata.type": "#microsoft.graph.teamworkUserIdentity",
        "id": scenario.person_id("pupil1"),
        "displayName": "Pupil 1",
        "userIdentityType": "aadUser",
        "tenantId": TENANT,
    }
    assert pupil_message["body"] == {"contentType": "html", "content": "<p>hello miss</p>"}


def test_chat_messages_appear_once_sent(graph: Any, scenario: Scenario, clock: Any) -> None:
    """Before a message's time has come, the chat does not show it."""
    from datetime import UTC, datetime

    thread = lesson_meeting(graph, scenario)["chatInfo"]["threadId"]
    clock.now = datetime(2026, 11, 17, 10, 5, tzinfo=UTC)
    graph.token = graph.new_token()  # the old one is not valid yet at this earlier time

    messages = graph.get(f"/chats/{thread}/messages").json()["value"]

    assert [m["createdDateTime"] for m in messages] == ["2026-11-17T10:03:00.000Z"]


def test_user_chats_with_members(graph: Any, scenario: Scenario) -> None:
    """A pupil's chats: the 1:1 with the teacher and the lesson's meeting chat."""
    pupil = scenario.person_id("pupil1")

    chats = graph.get(f"/users/{pupil}/chats?$expand=members").json()["value"]

    assert [c["chatType"] for c in chats] == ["oneOnOne", "meeting"]
    one_on_one, meeting_chat = chats
    assert one_on_one["id"] == (
        "19:" + "_".join(sorted([scenario.person_id("teacher"), pupil])) + "@unq.gbl.spaces"
    )
    assert {m["userId"] for m in one_on_one["members"]} == {scenario.person_id("teacher"), pupil}
    assert one_on_one["members"][0]["@odata.type"] == "#microsoft.graph.aadUserConversationMember"
    assert meeting_chat["topic"] == "Year 5 reading"
    assert meeting_chat["onlineMeetingInfo"]["organizer"]["id"] == scenario.person_id("teacher")


# --- attendance, call records, recordings --------------------------------------------------------


def test_attendance_report_lists_every_kind_of_joiner(graph: Any, scenario: Scenario) -> None:
    """The organiser's report: one per session, records for members, anonymous, federated, phone."""
    teacher = scenario.person_id("teacher")
    meeting_id = lesson_meeting(graph, scenario)["id"]
    base = f"/users/{teacher}/onlineMeetings/{meeting_id}/attendanceReports"

    reports = graph.get(base).json()["value"]
    report = graph.get(f"{base}/{reports[0]['id']}?$expand=attendanceRecords").json()

    assert [(r["totalParticipantCount"], r["attendanceRecords"]) for r in reports] == [(5, [])]
    assert (report["meetingStartDateTime"], report["meetingEndDateTime"]) == (
        "2026-11-17T09:58:00.0000000Z",
        "2026-11-17T11:02:00.0000000Z",
    )
    records = {r["identity"]["displayName"]: r for r in report["attendanceRecords"]}
    assert {name: (r["role"], r["identity"].get("tenantId")) for name, r in records.items()} == {
        "Tess Teacher": ("Organizer", TENANT),
        "Pupil 1": ("Attendee", TENANT),
        "Mystery Visitor": ("Attendee", None),
        "Pat Partner": ("Attendee", "11111111-2222-3333-4444-555555555555"),
        "+447XXXXXX123": ("Attendee", None),
    }
    # Someone who joined by link has no Entra account: an ACS identity, no tenant, no address.
    anonymous = records["Mystery Visitor"]
    assert anonymous["identity"]["@odata.type"] == (
        "#microsoft.graph.azureCommunicationServicesUserIdentity"
    )
    assert "tenantId" not in anonymous["identity"]
    assert anonymous["emailAddress"] is None
    assert records["Pupil 1"]["identity"]["@odata.type"] == (
        "#microsoft.graph.communicationsUserIdentity"
    )
    assert records["Pupil 1"]["totalAttendanceInSeconds"] == 3240
    assert records["Pupil 1"]["attendanceIntervals"] == [
        {
            "joinDateTime": "2026-11-17T10:01:00.0000000Z",
            "leaveDateTime": "2026-11-17T10:30:00.0000000Z",
            "durationInSeconds": 1740,
        },
        {
            "joinDateTime": "2026-11-17T10:35:00.0000000Z",
            "leaveDateTime": "2026-11-17T11:00:00.0000000Z",
            "durationInSeconds": 1500,
        },
    ]


def test_attendance_report_waits_for_the_meeting_to_end(
    graph: Any, scenario: Scenario, clock: Any
) -> None:
    """While the meeting runs there is no report; only the organiser's path serves it."""
    from datetime import UTC, datetime

    meeting_id = lesson_meeting(graph, scenario)["id"]
    teacher, pupil = scenario.person_id("teacher"), scenario.person_id("pupil1")
    clock.now = datetime(2026, 11, 17, 10, 30, tzinfo=UTC)
    graph.token = graph.new_token()  # the old one is not valid yet at this earlier time

    during = graph.get(f"/users/{teacher}/onlineMeetings/{meeting_id}/attendanceReports")
    as_pupil = graph.get(f"/users/{pupil}/onlineMeetings/{meeting_id}/attendanceReports")

    assert (during.status_code, during.json()["value"]) == (200, [])
    assert as_pupil.status_code == 404


def test_call_records_by_start_window(graph: Any, scenario: Scenario) -> None:
    """Ended calls in the window, meetings as groupCall with their join URL, direct calls peerToPeer."""
    records = graph.get(
        "/communications/callRecords?$filter=startDateTime ge 2026-11-17T00:00:00Z and "
        "startDateTime lt 2026-11-18T00:00:00Z"
    ).json()["value"]

    assert [(r["type"], r["startDateTime"], r["joinWebUrl"] is None) for r in records] == [
        ("groupCall", "2026-11-17T09:58:00.0000000Z", False),
        ("groupCall", "2026-11-17T13:00:00.0000000Z", False),
        ("peerToPeer", "2026-11-17T16:00:00.0000000Z", True),
    ]
    assert "participants_v2" not in records[0]
    assert records[2]["organizer_v2"]["identity"]["user"]["id"] == scenario.person_id("teacher")


def test_call_record_participants_name_each_identity_kind(graph: Any, scenario: Scenario) -> None:
    """participants_v2 holds exactly one of user, guest or phone for each attendee."""
    pupil = scenario.person_id("pupil1")
    records = graph.get(
        f"/communications/callRecords?$filter=participants_v2/any(p:p/id eq '{pupil}')"
    ).json()["value"]
    lesson = records[0]["id"]

    participants = [
        p
        for page in graph.all_pages(f"/communications/callRecords/{lesson}/participants_v2")
        for p in page
    ]

    assert [r["type"] for r in records] == ["groupCall", "peerToPeer"]
    kinds = [
        next((kind, value) for kind, value in p["identity"].items() if value is not None)
        for p in participants
    ]
    assert [(kind, value.get("displayName"), value.get("tenantId")) for kind, value in kinds] == [
        ("user", "Tess Teacher", TENANT),
        ("user", "Pupil 1", TENANT),
        ("guest", "Mystery Visitor", None),
        ("user", "Pat Partner", "11111111-2222-3333-4444-555555555555"),
        ("phone", "+447XXXXXX123", None),
    ]


def test_unknown_call_record_is_404(graph: Any) -> None:
    """A call record id Graph does not have is a 404."""
    response = graph.get("/communications/callRecords/00000000-0000-0000-0000-000000000000")

    assert error_of(response)[:2] == (404, "ResourceNotFound")


def test_recordings_list(graph: Any, scenario: Scenario) -> None:
    """A finished recording lists with its meeting, organiser and content URL; no OData options."""
    teacher = scenario.person_id("teacher")
    meeting_id = lesson_meeting(graph, scenario)["id"]
    base = f"/users/{teacher}/onlineMeetings/{meeting_id}/recordings"

    recordings = graph.get(base).json()["value"]
    with_top = graph.get(f"{base}?$top=1")

    assert [(r["meetingId"], r["createdDateTime"], r["endDateTime"]) for r in recordings] == [
        (meeting_id, "2026-11-17T10:10:00.0000000Z", "2026-11-17T10:40:00.0000000Z")
    ]
    assert recordings[0]["meetingOrganizer"]["user"]["id"] == teacher
    assert recordings[0]["recordingContentUrl"].endswith(
        f"/recordings/{recordings[0]['id']}/content"
    )
    assert with_top.status_code == 400


# --- delta ---------------------------------------------------------------------------------------


def _delta_round(graph: Any, url: str) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    next_url: str | None = url
    while True:
        body = graph.get(next_url).json()
        items.extend(body["value"])
        if "@odata.deltaLink" in body:
            return items, body["@odata.deltaLink"]
        next_url = body["@odata.nextLink"]


def test_delta_link_reports_changes_and_deletions(
    graph: Any, scenario: Scenario, server: FakeTenantServer
) -> None:
    """After a full round, the deltaLink returns only what changed: updates and @removed."""
    teacher = scenario.person_id("teacher")
    initial, delta_link = _delta_round(graph, f"/users/{teacher}/calendarView/delta?{WINDOW}")
    unchanged, delta_link_2 = _delta_round(graph, delta_link)
    lesson_id = next(e["id"] for e in initial if e["subject"] == "Year 5 reading")
    later_id = next(e["id"] for e in initial if e["subject"] == "Tomorrow's lesson")
    server.state.remove_meeting("lesson")
    server.state.cancel_meeting("later")

    changes, _ = _delta_round(graph, delta_link_2)

    assert len(initial) == 4
    assert unchanged == []
    assert [(c["id"], c.get("isCancelled"), c.get("@removed")) for c in changes] == [
        (later_id, True, None),
        (lesson_id, None, {"reason": "deleted"}),
    ]
    assert changes[1] == {
        "@odata.type": "#microsoft.graph.event",
        "id": lesson_id,
        "@removed": {"reason": "deleted"},
    }


def test_stale_delta_token_is_410(graph: Any, scenario: Scenario, server: FakeTenantServer) -> None:
    """A deltaLink the server has forgotten answers 410 SyncStateNotFound."""
    _, delta_link = _delta_round(
        graph, f"/users/{scenario.person_id('teacher')}/calendarView/delta?{WINDOW}"
    )
    server.state.invalidate_delta_tokens()

    response = graph.get(delta_link)

    assert error_of(response)[:2] == (410, "SyncStateNotFound")


def test_delta_refuses_select(graph: Any, scenario: Scenario) -> None:
    """calendarView delta does not support $select."""
    response = graph.get(
        f"/users/{scenario.person_id('teacher')}/calendarView/delta?{WINDOW}&$select=subject"
    )

    assert error_of(response)[:2] == (400, "ErrorInvalidUrlQuery")


# --- creating events -----------------------------------------------------------------------------


def test_post_event_is_deduplicated_by_transaction_id(
    graph: Any, scenario: Scenario, server: FakeTenantServer
) -> None:
    """Two POSTs with one transactionId make one event; the invitee gets a copy."""
    head, teacher = scenario.person_id("head"), scenario.person_id("teacher")
    event = {
        "subject": "SLT drop-in: Year 5 reading",
        "body": {"contentType": "html", "content": "<p>Join: https://teams.example/x</p>"},
        "start": {"dateTime": "2026-11-19T10:00:00", "timeZone": "Europe/London"},
        "end": {"dateTime": "2026-11-19T10:15:00", "timeZone": "Europe/London"},
        "location": {"displayName": "Online lesson"},
        "attendees": [
            {"type": "required", "emailAddress": {"address": "teacher@bramhamshadwell.sch.uk"}}
        ],
        "transactionId": "drop-in-1",
    }

    first = graph.post(f"/users/{head}/events", event)
    second = graph.post(f"/users/{head}/events", event)
    in_teacher_calendar = graph.get(f"/users/{teacher}/calendarView?{WINDOW}").json()["value"]

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["start"] == {
        "dateTime": "2026-11-19T10:00:00.0000000",
        "timeZone": "Europe/London",
    }
    assert first.json()["location"]["displayName"] == "Online lesson"
    assert first.json()["body"]["content"] == "<p>Join: https://teams.example/x</p>"
    assert [
        (c.user_id, c.transaction_id, c.created_teams_meeting) for c in server.state.created_events
    ] == [(head, "drop-in-1", False)]
    assert "SLT drop-in: Year 5 reading" in [e["subject"] for e in in_teacher_calendar]


def test_post_online_event_creates_a_teams_meeting(
    graph: Any, scenario: Scenario, server: FakeTenantServer
) -> None:
    """isOnlineMeeting true makes Graph create a new Teams meeting, which the state records."""
    response = graph.post(
        f"/users/{scenario.person_id('head')}/events",
        {
            "subject": "Oops",
            "start": {"dateTime": "2026-11-19T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-11-19T10:15:00", "timeZone": "UTC"},
            "isOnlineMeeting": True,
            "onlineMeetingProvider": "teamsForBusiness",
        },
    )

    created = server.state.created_events[0]
    assert response.status_code == 201
    assert created.created_teams_meeting is True
    assert response.json()["onlineMeeting"]["joinUrl"] == created.join_url
    assert created.join_url is not None
    assert created.join_url.startswith("https://teams.microsoft.com/l/meetup-join/19%3ameeting_")


# --- faults --------------------------------------------------------------------------------------


def test_injected_429_carries_retry_after(
    graph: Any, scenario: Scenario, server: FakeTenantServer
) -> None:
    """A forced 429 has Graph's error body and a decimal Retry-After; the retry succeeds."""
    server.state.inject(r"/calendarView\?", 429, count=1, retry_after=0.2)
    path = f"/users/{scenario.person_id('teacher')}/calendarView?{WINDOW}"

    throttled = graph.get(path)
    retried = graph.get(path)

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "0.2"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert retried.status_code == 200
    assert [r.status for r in server.requests if "calendarView" in r.path] == [429, 200]


def test_random_throttling_spares_the_token_endpoint(graph: Any, server: FakeTenantServer) -> None:
    """rate_429 = 1 throttles every Graph call but never the identity endpoints."""
    server.state.faults.rate_429 = 1.0

    token = graph.new_token()
    response = graph.get("/users")

    assert token
    assert (response.status_code, response.headers["Retry-After"]) == (429, "0.2")


@pytest.mark.parametrize("status", [503, 504])
def test_injected_server_errors(graph: Any, server: FakeTenantServer, status: int) -> None:
    """Forced 5xx answers use Graph's error shape."""
    server.state.inject(r"^/v1\.0/users$", status, count=1)

    response = graph.get("/users")

    assert response.status_code == status
    assert set(response.json()["error"]) == {"code", "message", "innerError"}
