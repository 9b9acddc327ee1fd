"""The Graph payload models, proven against Microsoft's published example responses.

Fixtures are verbatim copies of the API reference's examples (see
``tests/fixtures/graph/SOURCES.md``). Where a test needs a variant, it starts from a
fixture and changes one thing.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from remote_guard.graph import models
from remote_guard.graph.models import (
    AttendanceInterval,
    AttendanceRecord,
    Attendee,
    BatchResponse,
    BatchResponseItem,
    CallParticipantInfo,
    CallRecord,
    CallRecording,
    CallRecordParticipant,
    CallTranscript,
    Channel,
    ChannelIdentity,
    Chat,
    ChatInfo,
    ChatMessage,
    ChatMessageEventDetail,
    ChatMessageFrom,
    ConversationMember,
    DateTimeTimeZone,
    DirectoryObject,
    EmailAddress,
    Event,
    GraphError,
    GraphErrorBody,
    GraphInnerError,
    Identity,
    IdentitySet,
    ItemBody,
    JoinMeetingIdSettings,
    LobbyBypassSettings,
    Location,
    MeetingAttendanceReport,
    MeetingParticipantInfo,
    MeetingParticipants,
    OnlineMeeting,
    OnlineMeetingInfo,
    PayloadError,
    Recipient,
    RemovedInfo,
    ResponseStatus,
    Team,
    TeamworkOnlineMeetingInfo,
    User,
    parse,
    resolve_time_zone,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "graph"


def load(name: str) -> Any:
    with (FIXTURES / name).open(encoding="utf-8") as handle:
        return json.load(handle)


def items(name: str) -> list[Any]:
    value = load(name)["value"]
    assert isinstance(value, list)
    return value


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# The docs' system-message examples write "2021-03-1706:47:05.123Z" (no "T"). Tests
# that are about something else repair just that, so they can parse the rest.
def with_valid_times(message: dict[str, Any]) -> dict[str, Any]:
    return {
        **message,
        "createdDateTime": "2021-03-17T06:47:05.123Z",
        "lastModifiedDateTime": "2021-03-17T06:47:05.123Z",
    }


# ======================================================================================
# Calendar events.
# ======================================================================================


def test_calendarview_events_parse_with_utc_times_and_attendees() -> None:
    """A group calendarView page parses into events with UTC instants and attendees."""
    first, second = (
        parse(Event, item, what="calendarView event") for item in items("calendarview_list.json")
    )

    assert first.id == "AAMkAGI5MWYJOwAAEA=="
    assert first.i_cal_u_id == (
        "040000008200E00074C5B7101A82E00807E1080E824DDB122F0AD30100000000000000001000"
        "0000824A8905B038D54AA7735F117B3442ED"
    )
    assert first.subject == "New Training Plans"
    assert first.start_utc == utc(2017, 8, 14, 21, 0)
    assert first.end_utc == utc(2017, 8, 14, 22, 0)
    assert second.start_utc == utc(2017, 8, 16, 21, 0)
    assert first.created_date_time == datetime(2017, 7, 31, 18, 59, 1, 982289, tzinfo=UTC)
    # 7 fractional digits: the 100 ns digit is dropped, not rounded.
    assert first.last_modified_date_time == datetime(2017, 9, 6, 4, 29, 38, 664768, tzinfo=UTC)
    assert first.type == "singleInstance"
    assert first.series_master_id is None
    assert first.is_cancelled is False
    assert first.online_meeting_url is None
    assert first.online_meeting is None
    assert first.is_removed is False
    assert first.location == Location.model_validate({"displayName": "HR Taskforce / Facilities"})
    assert first.organizer is not None
    assert first.organizer.email_address == EmailAddress.model_validate(
        {"name": "HR Taskforce", "address": "HRTaskforce@contoso.com"}
    )
    assert [a.email_address.address for a in first.attendees if a.email_address] == [
        "HRTaskforce@contoso.com",
        "MeganB@contoso.com",
    ]
    assert first.attendees[1].type == "required"
    assert first.attendees[1].status == ResponseStatus.model_validate(
        {"response": "none", "time": "0001-01-01T00:00:00Z"}
    )
    assert first.attendees[1].status is not None
    assert first.attendees[1].status.time == utc(1, 1, 1)
    assert first.body is not None
    assert first.body.content_type == "text"
    assert first.body.content is not None
    assert "meetup-join/19%3a900876baa3134907b0dcb41a0d220e31%40thread.skype" in first.body.content


def test_teams_event_exposes_join_url_and_converts_pacific_time_to_utc() -> None:
    """An event created as a Teams meeting carries onlineMeeting, with times in a Windows zone."""
    event = parse(Event, load("event_online_meeting_created.json"), what="event")

    assert event.id == "AAMkAGI1AAAt8AHjAAA="
    assert event.is_online_meeting is True
    assert event.online_meeting_provider == "teamsForBusiness"
    assert event.online_meeting_url is None
    assert event.online_meeting == OnlineMeetingInfo.model_validate(
        {
            "joinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NzIyNzhlMGEtM2YyZC00ZmY0LTlhNzUtZmZjNWFmZGNlNzE2%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%22bc55b173-cff6-457d-b7a1-64bda7d7581a%22%7d",
            "conferenceId": "177513992",
            "tollNumber": "+1 425 555 0123",
        }
    )
    assert event.start == DateTimeTimeZone.model_validate(
        {"dateTime": "2017-04-15T11:00:00.0000000", "timeZone": "Pacific Standard Time"}
    )
    # 15 April 2017 is daylight time in Los Angeles (UTC-7).
    assert event.start_utc == utc(2017, 4, 15, 18, 0)
    assert event.end_utc == utc(2017, 4, 15, 19, 0)


def test_delta_page_keeps_removed_tombstone_beside_changed_event() -> None:
    """A calendarView delta page yields an @removed tombstone and a full event."""
    tombstone, changed = (
        parse(Event, item, what="delta event") for item in items("calendarview_delta_removed.json")
    )

    assert tombstone.id == "AAMkADk0MGFkODE3LWE4MmYtNDRhOS04OGQLkRkXbBznTvAADb6ytyAAA="
    assert tombstone.removed == RemovedInfo.model_validate({"reason": "deleted"})
    assert tombstone.is_removed is True
    assert tombstone.start is None
    assert tombstone.attendees == []
    assert changed.id == "AAMkADj1HvAAA="
    assert changed.is_removed is False
    assert changed.subject == "Attend service"
    assert changed.start_utc == utc(2016, 12, 25, 6, 0)
    assert changed.end_utc == utc(2016, 12, 25, 7, 30)


def test_delta_first_page_events_parse() -> None:
    """The first page of a calendarView delta round parses event by event."""
    events = [
        parse(Event, item, what="delta event")
        for item in items("calendarview_delta_first_page.json")
    ]

    assert [(e.id, e.subject, e.start_utc) for e in events] == [
        ("AAMkADNVxRAAA=", "Plan shopping list", utc(2016, 12, 9, 20, 30)),
        ("AAMkADVxSAAA=", "Pick up car", utc(2016, 12, 10, 1, 0)),
    ]


@pytest.mark.parametrize("name", ["calendarview_list_truncated.json", "event_delta_truncated.json"])
def test_docs_shortened_event_without_id_is_rejected(name: str) -> None:
    """The docs' shortened examples have no event id; an event without one is refused."""
    with pytest.raises(PayloadError) as caught:
        parse(Event, items(name)[0], what="calendarView event")

    assert caught.value.location == "id"
    assert caught.value.what == "calendarView event"
    assert (
        str(caught.value) == "unexpected Graph payload for calendarView event: id: Field required"
    )


# ======================================================================================
# DateTimeTimeZone and instants.
# ======================================================================================


@pytest.mark.parametrize(
    ("date_time", "time_zone", "expected"),
    [
        ("2026-11-21T09:00:00.0000000", "UTC", utc(2026, 11, 21, 9, 0)),
        ("2026-11-21T09:00:00.0000000", None, utc(2026, 11, 21, 9, 0)),
        ("2026-11-21T09:00:00.0000000", "tzone://Microsoft/Utc", utc(2026, 11, 21, 9, 0)),
        # Winter: London is on GMT.
        ("2026-11-21T09:00:00.0000000", "GMT Standard Time", utc(2026, 11, 21, 9, 0)),
        ("2026-11-21T09:00:00.0000000", "Europe/London", utc(2026, 11, 21, 9, 0)),
        # Summer: London is on BST (UTC+1); "GMT Standard Time" is London, not fixed GMT.
        ("2026-06-15T09:00:00.0000000", "GMT Standard Time", utc(2026, 6, 15, 8, 0)),
        ("2026-06-15T09:00:00.0000000", "Europe/London", utc(2026, 6, 15, 8, 0)),
        ("2026-06-15T09:00:00.0000000", "gmt standard time", utc(2026, 6, 15, 8, 0)),
        ("2026-06-15T09:00:00.0000000", "W. Europe Standard Time", utc(2026, 6, 15, 7, 0)),
        ("2026-11-21T09:00:00.1234567", "UTC", datetime(2026, 11, 21, 9, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-21T09:00:00", "UTC", utc(2026, 11, 21, 9, 0)),
        # An explicit offset in dateTime wins over the zone name.
        ("2026-06-15T09:00:00+02:00", "Europe/London", utc(2026, 6, 15, 7, 0)),
    ],
)
def test_date_time_time_zone_converts_to_utc(
    date_time: str, time_zone: str | None, expected: datetime
) -> None:
    """Calendar-style times in UTC, Windows and IANA zones convert to the right instant."""
    value = parse(DateTimeTimeZone, {"dateTime": date_time, "timeZone": time_zone}, what="start")

    converted = value.to_utc()

    assert converted == expected
    assert converted.tzinfo is UTC


@pytest.mark.parametrize(
    ("time_zone", "date_time"),
    [
        ("Mars Standard Time", "2026-11-21T09:00:00"),
        ("../../etc/passwd", "2026-11-21T09:00:00"),
        ("Europe", "2026-11-21T09:00:00"),
        ("UTC", "21/11/2026 09:00"),
        ("UTC", "2021-03-1706:47:05.123Z"),
        # Tokyo is ahead of UTC, so the first wall time of year 1 is before year 1 in UTC.
        ("Asia/Tokyo", "0001-01-01T00:00:00"),
    ],
)
def test_date_time_time_zone_that_cannot_convert_is_rejected(
    time_zone: str, date_time: str
) -> None:
    """An unknown zone, a bad wall time or an out-of-range instant is a PayloadError."""
    with pytest.raises(PayloadError) as caught:
        parse(DateTimeTimeZone, {"dateTime": date_time, "timeZone": time_zone}, what="start")

    assert caught.value.location == ""
    assert caught.value.count == 1


def test_every_mapped_windows_zone_resolves_to_a_real_iana_zone() -> None:
    """Each Windows name in the table maps to a zone the tz database knows."""
    resolved = {name: resolve_time_zone(name) for name in models._WINDOWS_TO_IANA}

    assert resolved.pop("UTC") is UTC
    assert resolved == {
        name: ZoneInfo(iana) for name, iana in models._WINDOWS_TO_IANA.items() if name != "UTC"
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T09:00:00Z", utc(2026, 11, 21, 9, 0)),
        ("2026-11-21T09:00:00+01:00", utc(2026, 11, 21, 8, 0)),
        ("2026-11-21T09:00:00-0500", utc(2026, 11, 21, 14, 0)),
        ("2020-02-25T18:52:21.2169889Z", datetime(2020, 2, 25, 18, 52, 21, 216988, tzinfo=UTC)),
        ("2021-10-05T04:43:49.77Z", datetime(2021, 10, 5, 4, 43, 49, 770000, tzinfo=UTC)),
        # No offset: Graph's convention is UTC.
        ("2026-11-21T09:00:00", utc(2026, 11, 21, 9, 0)),
    ],
)
def test_instants_become_aware_utc(text: str, expected: datetime) -> None:
    """Instant properties accept Z, offsets and 7-digit fractions, and end up in UTC."""
    report = parse(
        MeetingAttendanceReport, {"id": "r1", "meetingStartDateTime": text}, what="report"
    )

    assert report.meeting_start_date_time == expected
    assert report.meeting_start_date_time is not None
    assert report.meeting_start_date_time.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2021-03-1706:47:05.123Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2026-13-01T00:00:00Z",
        "2026-11-21",
        "yesterday",
        "2026-11-21T09:00:00Z" + "0" * 100,
        "",
    ],
)
def test_malformed_instants_are_rejected(text: str) -> None:
    """A date-time that is malformed or overflows once in UTC is a PayloadError."""
    with pytest.raises(PayloadError) as caught:
        parse(MeetingAttendanceReport, {"id": "r1", "meetingStartDateTime": text}, what="report")

    assert caught.value.location == "meetingStartDateTime"


# ======================================================================================
# onlineMeeting.
# ======================================================================================


def test_online_meeting_found_by_join_web_url() -> None:
    """The JoinWebUrl filter's single result parses with its organizer and lobby settings."""
    (meeting,) = (
        parse(OnlineMeeting, item, what="onlineMeeting")
        for item in items("onlinemeeting_filter_joinweburl.json")
    )

    assert (
        meeting.id
        == "dc17674c-81d9-4adb-bfb2-8f6a442e4622_19:meeting_MGQ4MDQyNTEtNTQVkODYxODYzMmY2@thread.v2"
    )
    assert meeting.join_web_url is not None
    assert meeting.join_web_url.startswith(
        "https://teams.microsoft.com/l/meetup-join/19%3ameeting_"
    )
    assert meeting.subject is None
    assert meeting.creation_date_time == datetime(2020, 9, 29, 22, 35, 33, 159451, tzinfo=UTC)
    assert meeting.start_date_time == datetime(2020, 9, 29, 22, 35, 31, 389759, tzinfo=UTC)
    assert meeting.end_date_time == datetime(2020, 9, 29, 23, 35, 31, 389759, tzinfo=UTC)
    assert meeting.allowed_presenters == "everyone"
    assert meeting.is_entry_exit_announced is True
    assert meeting.lobby_bypass_settings == LobbyBypassSettings.model_validate(
        {"scope": "organization", "isDialInBypassEnabled": False}
    )
    assert meeting.join_meeting_id_settings == JoinMeetingIdSettings.model_validate(
        {"isPasscodeRequired": False, "joinMeetingId": "1234567890", "passcode": None}
    )
    assert meeting.participants is not None
    assert meeting.participants.attendees == []
    organizer = meeting.participants.organizer
    assert organizer is not None
    assert organizer.role == "presenter"
    assert organizer.upn == "(redacted)"
    assert organizer.identity is not None
    assert organizer.identity.kind() == "user"
    assert organizer.identity.primary() == Identity.model_validate(
        {
            "id": "dc17674c-81d9-4adb-bf442e4622",
            "displayName": None,
            "tenantId": "909c6581-5130-43e93582cde38",
            "identityProvider": "AAD",
        }
    )


def test_online_meeting_by_id_and_by_vtc_id_parse() -> None:
    """The by-id (base64 id) and by-VTC examples parse, including chatInfo and attendees."""
    by_id = parse(OnlineMeeting, load("onlinemeeting_get_by_id.json"), what="onlineMeeting")
    by_vtc = parse(OnlineMeeting, load("onlinemeeting_get_vtc.json"), what="onlineMeeting")

    assert by_id.id == "MSpkYzE3Njc0Yy04MWQiMi04ZdFpHRTNaR1F6WGhyZWFkLnYy"
    assert by_id.video_teleconference_id == "(redacted)"
    assert (
        by_vtc.id
        == "112f7296-5fa4-42ca-bae8-6a692b15d4b8_19:cbee7c1c860e465f8258e3cebf7bee0d@thread.skype"
    )
    assert by_vtc.chat_info == ChatInfo.model_validate(
        {"threadId": "19:cbee7c1c860e465cebf7bee0d@thread.skype", "messageId": "153367081"}
    )
    assert by_vtc.lobby_bypass_settings is not None
    assert by_vtc.lobby_bypass_settings.scope == "everyone"
    assert by_vtc.participants is not None
    assert [
        p.identity.primary().display_name
        for p in by_vtc.participants.attendees
        if p.identity and p.identity.primary()
    ] == ["Tyler Stein"]
    assert by_vtc.participants.organizer is not None
    assert by_vtc.participants.organizer.upn == "upn-value"
    assert by_vtc.creation_date_time == datetime(2018, 5, 30, 0, 12, 19, 72608, tzinfo=UTC)


# ======================================================================================
# Attendance.
# ======================================================================================


def test_attendance_report_list_has_no_records_until_expanded() -> None:
    """Reports from the list call carry an empty attendanceRecords, as documented."""
    reports = [
        parse(MeetingAttendanceReport, item, what="report")
        for item in items("attendance_reports_list.json")
    ]

    assert [(r.id, r.total_participant_count, r.attendance_records) for r in reports] == [
        ("c9b6db1c-d5eb-427d-a5c0-20088d9b22d7", 1, []),
        ("2c2c2454-7613-4d6e-9c7c-4cf7a6cdce89", 2, []),
    ]
    assert reports[0].meeting_start_date_time == datetime(
        2021, 10, 5, 4, 38, 23, 945000, tzinfo=UTC
    )
    assert reports[0].meeting_end_date_time == datetime(2021, 10, 5, 4, 43, 49, 770000, tzinfo=UTC)


def test_expanded_attendance_report_has_records_with_intervals() -> None:
    """A report fetched with $expand=attendanceRecords carries each attendee's intervals."""
    report = parse(
        MeetingAttendanceReport, load("attendance_report_get_expanded.json"), what="report"
    )

    assert report.attendance_records is not None
    (record,) = report.attendance_records
    assert record.email_address == "frederick.cormier@contoso.com"
    assert record.role == "Presenter"
    assert record.total_attendance_in_seconds == 1152
    assert record.identity == Identity.model_validate(
        {
            "id": "dc17674c-81d9-4adb-bfb2-8f6a442e4623",
            "displayName": "Frederick Cormier",
            "tenantId": None,
        }
    )
    assert record.attendance_intervals == [
        AttendanceInterval.model_validate(
            {"joinDateTime": join, "leaveDateTime": leave, "durationInSeconds": seconds}
        )
        for join, leave, seconds in [
            ("2021-03-16T18:59:52.2782182Z", "2021-03-16T19:06:47.7218491Z", 415),
            ("2021-03-16T19:09:23.9834702Z", "2021-03-16T19:16:31.1381195Z", 427),
            ("2021-03-16T19:20:27.7094382Z", "2021-03-16T19:25:37.7121956Z", 310),
        ]
    ]
    assert record.attendance_intervals[0].join_date_time == datetime(
        2021, 3, 16, 18, 59, 52, 278218, tzinfo=UTC
    )
    assert sum(i.duration_in_seconds or 0 for i in record.attendance_intervals) == 1152


def test_attendance_records_list_parses() -> None:
    """The attendanceRecords list endpoint's items parse with roles and totals."""
    records = [
        parse(AttendanceRecord, item, what="attendance record")
        for item in items("attendance_records_list.json")
    ]

    assert [(r.email_address, r.role, r.total_attendance_in_seconds) for r in records] == [
        ("frederick.cormier@contoso.com", "Organizer", 322),
        ("lisa.adkins@contoso.com", "Presenter", 314),
    ]
    assert records[1].identity is not None
    assert records[1].identity.tenant_id is None
    assert records[1].attendance_intervals[0].leave_date_time == datetime(
        2021, 10, 4, 23, 18, 57, 563933, tzinfo=UTC
    )


# ======================================================================================
# Call records.
# ======================================================================================


def test_call_record_list_reads_organizer_v2_not_the_deprecated_organizer() -> None:
    """List items fill `organizer` from organizer_v2, including a phone organizer."""
    first, second = (
        parse(CallRecord, item, what="callRecord") for item in items("callrecords_list.json")
    )

    assert first.id == "3cf3bbc8-b21d-4f2e-bfd0-b13603ae6c65"
    assert first.version == 2
    assert first.type == "unknown"
    assert first.modalities == ["audio"]
    assert first.start_date_time == utc(2023, 9, 25, 9, 28, 38)
    assert first.end_date_time == utc(2023, 9, 25, 9, 28, 41)
    assert first.last_modified_date_time == utc(2023, 9, 25, 10, 36, 40)
    assert first.join_web_url is None
    assert first.participants is None
    assert first.organizer is not None
    assert first.organizer.id == "821809f5-0000-0000-0000-3b5136c0e777"
    assert first.organizer.identity is not None
    assert first.organizer.identity.kind() == "user"
    assert second.organizer is not None
    assert second.organizer.id == "+5564981205182"
    assert second.organizer.identity is not None
    assert second.organizer.identity.kind() == "phone"
    assert second.organizer.identity.kinds() == ("phone",)
    assert second.organizer.identity.primary() == Identity.model_validate(
        {"id": "+5564981205182", "displayName": None, "tenantId": None}
    )


def test_call_record_without_organizer_v2_does_not_read_deprecated_organizer() -> None:
    """Only organizer_v2 fills `organizer`; the deprecated property is ignored."""
    item = items("callrecords_list.json")[0]
    without_v2 = {key: value for key, value in item.items() if key != "organizer_v2"}

    record = parse(CallRecord, without_v2, what="callRecord")

    assert record.organizer is None


def test_call_record_get_and_expanded_participants() -> None:
    """A fetched record parses; with $expand=participants_v2 it lists people and the next page."""
    basic = parse(CallRecord, load("callrecord_get.json"), what="callRecord")
    expanded = parse(
        CallRecord, load("callrecord_get_expand_participants_v2.json"), what="callRecord"
    )

    assert basic.id == "e523d2ed-2966-4b6b-925b-754a88034cc5"
    assert basic.type == "peerToPeer"
    assert basic.version == 1
    assert basic.start_date_time == datetime(2020, 2, 25, 18, 52, 21, 216988, tzinfo=UTC)
    assert basic.end_date_time == datetime(2020, 2, 25, 18, 52, 46, 764001, tzinfo=UTC)
    assert basic.participants is None
    assert basic.participants_next_link is None
    assert expanded.participants is not None
    assert [
        (p.id, p.identity.primary().user_principal_name, p.identity.primary().tenant_id)
        for p in expanded.participants
        if p.identity is not None and p.identity.primary() is not None
    ] == [
        (
            "821809f5-0000-0000-0000-3b5136c0e777",
            "abbie.wilkins@contoso.com",
            "dc368399-474c-4d40-900c-6265431fd81f",
        ),
        (
            "821809f5-0000-0000-0000-3b5136c0e777",
            "owen.franklin@contoso.com",
            "dc368399-474c-4d40-900c-6265431fd81f",
        ),
    ]
    assert expanded.participants_next_link == (
        "https://graph.microsoft.com/v1.0/$metadata#communications/callRecords("
        "'e523d2ed-2966-4b6b-925b-754a88034cc5')/participants_v2?$skiptoken=abc"
    )


def test_call_record_participants_v2_items_with_many_null_identity_kinds() -> None:
    """participants_v2 items name every identity kind, all null but `user`."""
    participants = [
        parse(CallRecordParticipant, item, what="participant")
        for item in items("callrecord_participants_v2_list.json")
    ]

    assert [(p.id, p.identity.kind() if p.identity else None) for p in participants] == [
        ("00005994-851d-4988-bbc3-413bbf089e13", "user"),
        ("13fd6bf0-f646-4b82-b0ad-cd28ce10d6e3", "user"),
    ]
    assert participants[0].identity is not None
    assert participants[0].identity.user == Identity.model_validate(
        {
            "@odata.type": "#microsoft.graph.userIdentity",
            "id": "00005994-851d-4988-bbc3-413bbf089e13",
            "displayName": "Anette Thomsen",
            "tenantId": "dc368399-474c-4d40-900c-6265431fd81f",
            "userPrincipalName": "anette.thomsen@contoso.com",
        }
    )


@pytest.mark.parametrize(
    ("identity_set", "kind"),
    [
        ({"guest": {"id": "g1", "displayName": "Visitor"}}, "guest"),
        ({"acsUser": {"id": "8:acs:1"}}, "acsUser"),
        ({"azureCommunicationServicesUser": {"id": "8:acs:2"}}, "azureCommunicationServicesUser"),
        ({"spoolUser": {"id": "s1"}}, "spoolUser"),
        ({"encrypted": {"id": "e1"}}, "encrypted"),
        ({"onPremises": {"id": "o1"}}, "onPremises"),
        ({"application": {"id": "a1"}}, "application"),
        ({"applicationInstance": {"id": "ai1"}}, "applicationInstance"),
        ({"device": {"id": "d1"}}, "device"),
        ({"user": None, "phone": None}, "none"),
        ({}, "none"),
        # Several set: the person wins over the software.
        ({"application": {"id": "a1"}, "user": {"id": "u1"}}, "user"),
    ],
)
def test_identity_set_kind_names_the_member_that_is_set(
    identity_set: dict[str, Any], kind: str
) -> None:
    """kind() returns Graph's name of the set member, people first, or "none"."""
    parsed = parse(IdentitySet, identity_set, what="identity")

    assert parsed.kind() == kind
    assert (parsed.primary() is None) == (kind == "none")


# ======================================================================================
# Chat messages.
# ======================================================================================


def test_person_message_in_chat_has_a_sender_and_is_not_system() -> None:
    """An ordinary chat message names its sending user and is not a system event."""
    message = parse(ChatMessage, load("chatmessage_get.json"), what="chatMessage")

    assert message.id == "1612289992105"
    assert message.message_type == "message"
    assert message.created_date_time == datetime(2021, 2, 2, 18, 19, 52, 105000, tzinfo=UTC)
    assert (
        message.chat_id
        == "19:8ea0e38b-efb3-4757-924a-5f94061cf8c2_97f62344-57dc-409c-88ad-c4af14158ff5@unq.gbl.spaces"
    )
    assert message.deleted_date_time is None
    assert message.sender_user_id == "8ea0e38b-efb3-4757-924a-5f94061cf8c2"
    assert message.from_ is not None
    assert message.from_.kind() == "user"
    assert message.from_.user is not None
    assert message.from_.user.tenant_id == "e61ef81e-8bd8-476a-92e8-4a62f8426fca"
    assert message.from_.user.user_identity_type == "aadUser"
    assert message.body == ItemBody.model_validate({"contentType": "text", "content": "test"})
    assert message.is_system is False
    assert message.is_application is False
    assert message.event_detail is None


@pytest.mark.parametrize(
    ("name", "message_type"),
    [
        ("chat_messages_list.json", "unknownFutureValue"),
        ("chat_messages_list_include_unknown_enum.json", "systemEventMessage"),
    ],
)
def test_chat_message_list_separates_people_from_system_events(
    name: str, message_type: str
) -> None:
    """Both spellings of a system message (with or without the Prefer header) read as system."""
    hello, image, system_raw = items(name)

    people = [parse(ChatMessage, m, what="chatMessage") for m in (hello, image)]
    system = parse(ChatMessage, with_valid_times(system_raw), what="chatMessage")

    assert [(m.id, m.is_system, m.sender_user_id) for m in people] == [
        ("1616964509832", False, "8ea0e38b-efb3-4757-924a-5f94061cf8c2"),
        ("1615971548136", False, "8ea0e38b-efb3-4757-924a-5f94061cf8c2"),
    ]
    assert people[0].created_date_time == datetime(2021, 3, 28, 20, 48, 29, 832000, tzinfo=UTC)
    assert system.id == "1615943825123"
    assert system.message_type == message_type
    assert system.from_ is None
    assert system.is_system is True
    assert system.sender_user_id is None
    assert system.event_detail is not None
    assert system.event_detail.event_type == "chatRenamedEventMessageDetail"
    assert system.event_detail.chat_display_name == "Graph Members"
    assert system.event_detail.initiator is not None
    assert system.event_detail.initiator.kind() == "user"


def test_docs_system_message_with_malformed_timestamp_is_rejected() -> None:
    """The docs' own system message has "2021-03-1706:47:05.123Z"; that is a PayloadError."""
    system_raw = items("chat_messages_list.json")[2]

    with pytest.raises(PayloadError) as caught:
        parse(ChatMessage, system_raw, what="chatMessage")

    assert caught.value.location == "createdDateTime"
    assert caught.value.count == 2


def test_unknown_future_value_is_system_by_body_alone() -> None:
    """Without eventDetail, the <systemEventMessage/> body still marks a system message."""
    raw = with_valid_times(items("chat_messages_list.json")[2])
    without_detail = {key: value for key, value in raw.items() if key != "eventDetail"}

    message = parse(ChatMessage, without_detail, what="chatMessage")

    assert message.is_system is True


def test_unknown_future_value_with_sender_is_not_system() -> None:
    """A message that names a sending user is never a system message."""
    raw = with_valid_times(items("chat_messages_list.json")[2])
    with_sender = {**raw, "from": items("chat_messages_list.json")[0]["from"]}

    message = parse(ChatMessage, with_sender, what="chatMessage")

    assert message.is_system is False
    assert message.sender_user_id == "8ea0e38b-efb3-4757-924a-5f94061cf8c2"


def test_empty_from_identity_set_counts_as_no_sender() -> None:
    """A `from` whose members are all null names nobody, like a null `from`."""
    raw = with_valid_times(items("chat_messages_list.json")[2])
    empty_from = {**raw, "from": {"application": None, "device": None, "user": None}}

    message = parse(ChatMessage, empty_from, what="chatMessage")

    assert message.is_system is True
    assert message.sender_user_id is None
    assert message.is_application is False


def test_bot_message_is_from_an_application() -> None:
    """A message whose `from` is an application is flagged as such, not as a person."""
    raw = load("chatmessage_get.json")
    from_bot = {
        **raw,
        "from": {"application": {"id": "app-1", "displayName": "Quiz bot"}, "user": None},
    }

    message = parse(ChatMessage, from_bot, what="chatMessage")

    assert message.is_application is True
    assert message.sender_user_id is None
    assert message.is_system is False


def test_call_ended_event_detail() -> None:
    """callEndedEventMessageDetail gives the call id, duration and participants."""
    message = parse(ChatMessage, load("chatmessage_call_ended.json"), what="chatMessage")

    assert message.is_system is True
    assert message.chat_id is None
    assert message.channel_identity == ChannelIdentity.model_validate(
        {
            "teamId": "fbe2bf47-16c8-47cf-b4a5-4b9b187c508b",
            "channelId": "19:4a95f7d8db4c4e7fae857bcebe0623e6@thread.tacv2",
        }
    )
    detail = message.event_detail
    assert detail is not None
    assert detail.odata_type == "#microsoft.graph.callEndedEventMessageDetail"
    assert detail.event_type == "callEndedEventMessageDetail"
    assert detail.call_id == "9c848c0e-f906-4dfc-b22e-c68a785a587c"
    assert detail.call_duration == timedelta(seconds=59)
    assert detail.call_event_type == "meeting"
    assert detail.call_participants == [
        CallParticipantInfo.model_validate(
            {
                "participant": {
                    "application": None,
                    "device": None,
                    "user": {
                        "id": "1fb8890f-423e-4154-8fbf-db6809bc8756",
                        "displayName": "Adele Vance ",
                        "userIdentityType": "aadUser",
                    },
                }
            }
        )
    ]
    assert detail.initiator is not None
    assert detail.initiator.user is not None
    assert detail.initiator.user.id == "1fb8890f-423e-4154-8fbf-db6809bc8756"


def test_call_recording_event_detail() -> None:
    """callRecordingEventMessageDetail gives status, URL, duration and organizer."""
    message = parse(ChatMessage, load("chatmessage_call_recording.json"), what="chatMessage")

    detail = message.event_detail
    assert detail is not None
    assert detail.event_type == "callRecordingEventMessageDetail"
    assert detail.call_recording_status == "success"
    assert detail.call_recording_display_name == "Meeting Recording.mp4"
    assert detail.call_recording_url == (
        "https://testtenant.sharepoint.com/sites/TestTeam/Shared%20Documents/General/Recordings/"
        "Meeting%20Recording.mp4?web=1"
    )
    assert detail.call_recording_duration == timedelta(minutes=40, seconds=19.26)
    assert detail.meeting_organizer is not None
    assert detail.meeting_organizer.kind() == "user"


@pytest.mark.parametrize(
    ("name", "event_type", "call_id"),
    [
        (
            "chatmessage_call_started.json",
            "callStartedEventMessageDetail",
            "9c848c0e-f906-4dfc-b22e-c68a785a587c",
        ),
        (
            "chatmessage_call_transcript.json",
            "callTranscriptEventMessageDetail",
            "5b927778-760b-429e-8c4e-65b1802dd6c9",
        ),
    ],
)
def test_call_started_and_transcript_event_details(
    name: str, event_type: str, call_id: str
) -> None:
    """Call started and transcript events parse once the docs' timestamp typo is repaired."""
    message = parse(ChatMessage, with_valid_times(load(name)), what="chatMessage")

    assert message.is_system is True
    assert message.chat_id == "19:2da4c29f6d7041eca70b638b43d45437@thread.v2"
    assert message.event_detail is not None
    assert message.event_detail.event_type == event_type
    assert message.event_detail.call_id == call_id


def test_members_joined_and_left_list_member_identities() -> None:
    """Members joined/left details list identities, including an anonymous guest."""
    joined = parse(ChatMessage, load("chatmessage_members_joined.json"), what="chatMessage")
    left = parse(ChatMessage, load("chatmessage_members_left.json"), what="chatMessage")

    assert joined.event_detail is not None
    assert [(m.id, m.display_name, m.user_identity_type) for m in joined.event_detail.members] == [
        ("2c3f5f34-ac9f-42e7-8b35-442ccac166cb", "Alex (Guest)", "aadUser")
    ]
    assert left.event_detail is not None
    assert [(m.id, m.user_identity_type) for m in left.event_detail.members] == [
        ("ee8af8acd3184068a935a1f207865620", "anonymousGuest")
    ]
    assert left.created_date_time == datetime(2021, 5, 3, 13, 52, 56, 741000, tzinfo=UTC)


def test_meeting_policy_updated_reports_chat_enabled() -> None:
    """meetingPolicyUpdatedEventMessageDetail says whether meeting chat is on."""
    message = parse(
        ChatMessage, load("chatmessage_meeting_policy_updated.json"), what="chatMessage"
    )

    assert message.event_detail is not None
    assert message.event_detail.meeting_chat_enabled is True
    assert (
        message.event_detail.meeting_chat_id
        == "19:meeting_OTFkNDQzMjMtZWQyYi00ZjI4LTk1ZmUtZmI2NjBmNTFmMzg1@thread.v2"
    )


# ======================================================================================
# Chats, recordings, transcripts, directory, errors, batches.
# ======================================================================================


def test_chat_list_with_members() -> None:
    """Chats listed with $expand=members carry their members' user ids and emails."""
    chats = [parse(Chat, item, what="chat") for item in items("chats_list_expand_members.json")]

    assert [(c.id, c.chat_type, c.topic, len(c.members or [])) for c in chats] == [
        (
            "19:meeting_MjdhNjM4YzUtYzExZi00OTFkLTkzZTAtNTVlNmZmMDhkNGU2@thread.v2",
            "meeting",
            "Meeting chat sample",
            3,
        ),
        ("19:561082c0f3f847a58069deb8eb300807@thread.v2", "group", "Group chat sample", 5),
        (
            "19:d74fc2ed-cb0e-4288-a219-b5c71abaf2aa_8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca@unq.gbl.spaces",
            "oneOnOne",
            None,
            2,
        ),
    ]
    assert chats[0].created_date_time == datetime(2020, 12, 8, 23, 53, 5, 801000, tzinfo=UTC)
    assert chats[0].online_meeting_info is None
    assert chats[0].members is not None
    assert chats[0].members[1] == ConversationMember.model_validate(
        {
            "@odata.type": "#microsoft.graph.aadUserConversationMember",
            "id": "MmFiOWM3OTYtMjkwMi00NWY4LWI3MTItN2M1YTYzY2Y0MWM0IyNlZWY5Y2IzNi0wNmRlLTQ2OWItODdjZC03MGY0Y2JlMz6Jk45=",
            "roles": [],
            "displayName": "Peter Parker",
            "userId": "d74fc2ed-cb0e-4288-a219-b5c71abaf2aa",
            "email": "parkerp@teamsgraph.onmicrosoft.com",
        }
    )


def test_chat_online_meeting_info_parses_when_present() -> None:
    """A meeting chat's onlineMeetingInfo (absent from the docs' example) parses."""
    chat = items("chats_list_expand_members.json")[0]
    info = {
        "calendarEventId": "AAMkAD",
        "joinWebUrl": "https://teams.microsoft.com/l/meetup-join/x",
        "organizer": {"id": "u1"},
    }

    parsed = parse(Chat, {**chat, "onlineMeetingInfo": info}, what="chat")

    assert parsed.online_meeting_info == TeamworkOnlineMeetingInfo.model_validate(info)


def test_recordings_and_transcripts_parse() -> None:
    """Recording and transcript lists parse with ids, times and the organizer."""
    (recording,) = (
        parse(CallRecording, item, what="recording") for item in items("recordings_list.json")
    )
    transcripts = [
        parse(CallTranscript, item, what="transcript") for item in items("transcripts_list.json")
    ]

    assert recording.id == "7e31db25-bc6e-4fd8-96c7-e01264e9b6fc"
    assert recording.meeting_id == (
        "MSpiOTM1ZTY3NS01ZTY3LTQ4YjktOGQ0NS0yNDlkNWY4OGU5NjQqMCoqMTk6bWVldGluZ19ZbU0zTnpJNU9USXRZakU0"
        "WlMwME1tUTNMVGt6TVRRdFkyWm1PRGRtWmpsaVptRTNAdGhyZWFkLnYy"
    )
    assert recording.created_date_time == datetime(2023, 4, 10, 8, 13, 17, 599096, tzinfo=UTC)
    assert recording.end_date_time is None
    assert recording.recording_content_url is not None
    assert recording.recording_content_url.endswith(
        "/recordings/('7e31db25-bc6e-4fd8-96c7-e01264e9b6fc')/content"
    )
    assert recording.meeting_organizer is not None
    assert recording.meeting_organizer.user is not None
    assert recording.meeting_organizer.user.id == "b935e675-5e67-48b9-8d45-249d5f88e964"
    assert (
        recording.meeting_organizer.user.odata_type
        == "#Microsoft.Teams.GraphSvc.teamworkUserIdentity"
    )
    assert [(t.id, t.created_date_time) for t in transcripts] == [
        (
            "MSMjMCMjZDAwYWU3NjUtNmM2Yi00NjQxLTgwMWQtMTkzMmFmMjEzNzdh",
            datetime(2021, 9, 17, 6, 9, 24, 896803, tzinfo=UTC),
        ),
        (
            "MSMjMCMjMzAxNjNhYTctNWRmZi00MjM3LTg5MGQtNWJhYWZjZTZhNWYw",
            datetime(2021, 9, 16, 18, 58, 58, 676069, tzinfo=UTC),
        ),
        (
            "MSMjMCMjNzU3ODc2ZDYtOTcwMi00MDhkLWFkNDItOTE2ZDNmZjkwZGY4",
            datetime(2021, 9, 16, 18, 56, 0, 903830, tzinfo=UTC),
        ),
    ]


def test_users_and_guest_users_parse() -> None:
    """User lists parse, including a B2B guest found by its #EXT# UPN."""
    users = [parse(User, item, what="user") for item in items("users_list.json")]
    (guest,) = (parse(User, item, what="user") for item in items("users_list_b2b_guests.json"))

    assert [(u.id, u.display_name, u.user_principal_name, u.mail, u.job_title) for u in users] == [
        (
            "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0",
            "Conf Room Adams",
            "Adams@contoso.com",
            "Adams@contoso.com",
            None,
        ),
        (
            "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e",
            "MOD Administrator",
            "admin@contoso.com",
            None,
            None,
        ),
    ]
    assert users[0].user_type is None
    assert (guest.id, guest.display_name, guest.mail) == (
        "39807bd1-3dde-48f3-8165-81ddd4e46de0",
        "Adele Vance",
        "AdeleV@adatum.com",
    )


def test_group_transitive_members_parse_users_and_groups() -> None:
    """transitiveMembers items keep @odata.type so users and groups can be told apart."""
    (member,) = (
        parse(DirectoryObject, item, what="member")
        for item in items("group_transitivemembers_list.json")
    )
    groups = [
        parse(DirectoryObject, item, what="member")
        for item in items("group_transitivemembers_groups_cast.json")
    ]

    assert (member.odata_type, member.id, member.mail) == (
        "#microsoft.graph.user",
        "11111111-2222-3333-4444-555555555555",
        "group1@contoso.com",
    )
    assert [(g.odata_type, g.id, g.display_name) for g in groups] == [
        (None, "4d0ef681-e88f-42a3-a2db-e6bf1e249e10", "Executives"),
        (None, "d9fb0c47-c783-40a1-bce1-53b52ada51fc", "Project Falcon"),
    ]


def test_channel_list_parses() -> None:
    """The channel list's (placeholder) example parses into a Channel."""
    (channel,) = (parse(Channel, item, what="channel") for item in items("channels_list.json"))

    assert (
        channel.id,
        channel.display_name,
        channel.description,
        channel.email,
        channel.web_url,
    ) == (
        "id-value",
        "display-name-value",
        "description-value",
        "email-value",
        "webUrl-value",
    )


def test_team_parses() -> None:
    """A team with the properties remote_guard reads parses."""
    team = parse(Team, {"id": "t1", "displayName": "Year 6", "isArchived": False}, what="team")

    assert (team.id, team.display_name, team.is_archived) == ("t1", "Year 6", False)


def test_throttling_error_body() -> None:
    """The 429 error body gives the code and the inner request id."""
    body = parse(GraphErrorBody, load("error_429_throttling.json"), what="error body")

    assert body.error.code == "TooManyRequests"
    assert body.error.message == "Please retry again later."
    assert body.error.inner_error == GraphInnerError.model_validate(
        {
            "code": "429",
            "date": "2020-08-18T12:51:51",
            "message": "Please retry after",
            "request-id": "94fb3b52-452a-4535-a601-69e0a90e3aa2",
            "status": "429",
        }
    )


def test_error_body_accepts_lowercase_innererror() -> None:
    """errors.md's schema spells it "innererror"; that spelling is read too."""
    raw = load("error_invalid_range.json")
    lowercase = {
        "error": {
            **{k: v for k, v in raw["error"].items() if k != "innerError"},
            "innererror": raw["error"]["innerError"],
        }
    }

    body = parse(GraphErrorBody, lowercase, what="error body")

    assert body.error == GraphError.model_validate(raw["error"])
    assert body.error.inner_error is not None
    assert body.error.inner_error.request_id == "request-id"


def test_batch_response_items_keep_status_headers_and_body() -> None:
    """A $batch reply yields each item's id, status, headers and body (errors included)."""
    batch = parse(BatchResponse, load("batch_response.json"), what="$batch reply")

    assert [(r.id, r.status) for r in batch.responses] == [
        ("1", 200),
        ("2", 403),
        ("3", 403),
        ("4", 405),
        ("5", 200),
    ]
    assert batch.responses[0].headers["OData-Version"] == "4.0"
    error = parse(GraphErrorBody, batch.responses[1].body, what="batch item body")
    assert error.error.code == ""
    assert error.error.message == "You do not have the required permissions to access this item."
    assert (
        parse(GraphErrorBody, batch.responses[2].body, what="batch item body").error.code
        == "Authorization_RequestDenied"
    )


def test_batch_item_numeric_retry_after_reads_as_text() -> None:
    """A numeric header value in a batch item (Retry-After) is kept, as text."""
    item = parse(
        BatchResponseItem,
        {"id": "7", "status": 429, "headers": {"Retry-After": 2.128}},
        what="batch item",
    )

    assert item.headers == {"Retry-After": "2.128"}


# ======================================================================================
# Snapshots round-trip.
# ======================================================================================

WHOLE_BODIES: list[tuple[type[BaseModel], str]] = [
    (Event, "event_online_meeting_created.json"),
    (OnlineMeeting, "onlinemeeting_get_vtc.json"),
    (OnlineMeeting, "onlinemeeting_get_by_id.json"),
    (MeetingAttendanceReport, "attendance_report_get_expanded.json"),
    (CallRecord, "callrecord_get.json"),
    (CallRecord, "callrecord_get_expand_participants_v2.json"),
    (ChatMessage, "chatmessage_get.json"),
    (ChatMessage, "chatmessage_call_ended.json"),
    (ChatMessage, "chatmessage_call_recording.json"),
    (ChatMessage, "chatmessage_members_left.json"),
    (GraphErrorBody, "error_429_throttling.json"),
    (BatchResponse, "batch_response.json"),
]

LIST_ITEMS: list[tuple[type[BaseModel], str]] = [
    (Event, "calendarview_list.json"),
    (Event, "calendarview_delta_removed.json"),
    (OnlineMeeting, "onlinemeeting_filter_joinweburl.json"),
    (MeetingAttendanceReport, "attendance_reports_list.json"),
    (AttendanceRecord, "attendance_records_list.json"),
    (CallRecord, "callrecords_list.json"),
    (CallRecordParticipant, "callrecord_participants_v2_list.json"),
    (Chat, "chats_list_expand_members.json"),
    (CallRecording, "recordings_list.json"),
    (CallTranscript, "transcripts_list.json"),
    (User, "users_list.json"),
    (DirectoryObject, "group_transitivemembers_groups_cast.json"),
    (Channel, "channels_list.json"),
]


def _all_fixture_objects() -> list[tuple[type[BaseModel], Any]]:
    objects: list[tuple[type[BaseModel], Any]] = [
        (model, load(name)) for model, name in WHOLE_BODIES
    ]
    for model, name in LIST_ITEMS:
        objects.extend((model, item) for item in items(name))
    return objects


@pytest.mark.parametrize(("model", "data"), _all_fixture_objects())
def test_dumped_model_parses_back_to_the_same_model(model: type[BaseModel], data: Any) -> None:
    """A snapshot saved as JSON (Graph's names) re-parses to an equal model."""
    parsed = parse(model, data, what="fixture")

    again = parse(model, json.loads(parsed.model_dump_json()), what="snapshot")

    assert again == parsed


# ======================================================================================
# Hostile input.
# ======================================================================================


@pytest.mark.parametrize(
    ("model", "data", "location"),
    [
        (Event, {"id": 12345}, "id"),
        (Event, {"id": ""}, "id"),
        (Event, {"id": None}, "id"),
        (Event, {}, "id"),
        (Event, [], ""),
        (Event, "AAMk", ""),
        (Event, None, ""),
        (Event, {"id": "e", "isOnlineMeeting": "true"}, "isOnlineMeeting"),
        (Event, {"id": "e", "attendees": {"emailAddress": {}}}, "attendees"),
        (Event, {"id": "e", "attendees": [None]}, "attendees.0"),
        (Event, {"id": "e", "start": {"timeZone": "UTC"}}, "start.dateTime"),
        (Event, {"id": "e", "@removed": "deleted"}, "@removed"),
        (CallRecord, {"id": "c", "version": "2"}, "version"),
        (CallRecord, {"id": "c", "version": 2.5}, "version"),
        (CallRecord, {"id": "c", "organizer_v2": {"identity": {}}}, "organizer_v2.id"),
        (
            CallRecord,
            {"id": "c", "participants_v2": [{"id": "p", "identity": {"user": "u1"}}]},
            "participants_v2.0.identity.user",
        ),
        (CallRecord, {"id": "c", "modalities": "audio"}, "modalities"),
        (ChatMessage, {"id": "m", "from": "someone"}, "from"),
        (ChatMessage, {"id": "m", "eventDetail": {"callDuration": 59}}, "eventDetail.callDuration"),
        (
            ChatMessage,
            {"id": "m", "eventDetail": {"callDuration": "59 seconds"}},
            "eventDetail.callDuration",
        ),
        (
            ChatMessage,
            {"id": "m", "eventDetail": {"callDuration": "P99999999999DT0S"}},
            "eventDetail.callDuration",
        ),
        (
            ChatMessage,
            {"id": "m", "eventDetail": {"callDuration": "P999999999DT999999999H"}},
            "eventDetail.callDuration",
        ),
        (ChatMessage, {"id": "m", "createdDateTime": 1616883610}, "createdDateTime"),
        (
            MeetingAttendanceReport,
            {"id": "r", "attendanceRecords": [{"totalAttendanceInSeconds": True}]},
            "attendanceRecords.0.totalAttendanceInSeconds",
        ),
        (GraphErrorBody, {"error": None}, "error"),
        (BatchResponse, {"responses": [{"id": "1"}]}, "responses.0.status"),
    ],
)
def test_malformed_payloads_raise_payload_error(
    model: type[BaseModel], data: Any, location: str
) -> None:
    """Wrong types, missing ids and misplaced nulls are a PayloadError at the right place."""
    with pytest.raises(PayloadError) as caught:
        parse(model, data, what="hostile")

    assert caught.value.location == location


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (Event, "id"),
        (Event, "subject"),
        (ChatMessage, "chatId"),
        (User, "userPrincipalName"),
        (OnlineMeeting, "joinWebUrl"),
    ],
)
def test_huge_strings_are_rejected_without_echoing_them(model: type[BaseModel], field: str) -> None:
    """A megabyte where a short string belongs is a PayloadError whose text stays short."""
    huge = "A" * 1_000_000
    data = {"id": "x", field: huge}

    with pytest.raises(PayloadError) as caught:
        parse(model, data, what="hostile")

    assert caught.value.location == field
    assert len(str(caught.value)) < 300
    assert "AAAAAAAAAA" not in str(caught.value)


def test_huge_message_body_is_rejected() -> None:
    """A chat message body over the body cap is a PayloadError."""
    raw = load("chatmessage_get.json")
    data = {
        **raw,
        "body": {"contentType": "html", "content": "<p>" + "x" * (5 * 1024 * 1024) + "</p>"},
    }

    with pytest.raises(PayloadError) as caught:
        parse(ChatMessage, data, what="hostile")

    assert caught.value.location == "body.content"


def test_huge_time_zone_name_is_rejected() -> None:
    """An enormous timeZone name is a PayloadError, not a filesystem lookup."""
    with pytest.raises(PayloadError):
        parse(
            DateTimeTimeZone,
            {"dateTime": "2026-11-21T09:00:00", "timeZone": "Z" * 100_000},
            what="start",
        )


def test_deeply_nested_and_cyclic_payloads_raise_payload_error() -> None:
    """Pathological nesting and cycles (in a free-form batch body) are a PayloadError."""
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(5_000):
        cursor["body"] = {}
        cursor = cursor["body"]
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic

    for body in (deep, cyclic):
        with pytest.raises(PayloadError):
            parse(BatchResponseItem, {"id": "1", "status": 200, "body": body}, what="hostile")


def test_payload_error_is_a_value_error_with_details() -> None:
    """PayloadError is a ValueError that names the payload, place and problem."""
    with pytest.raises(
        ValueError, match=r"^unexpected Graph payload for callRecord c: version: "
    ) as caught:
        parse(CallRecord, {"id": "c", "version": "2", "type": 7}, what="callRecord c")

    assert isinstance(caught.value, PayloadError)
    assert caught.value.what == "callRecord c"
    assert caught.value.location == "version"
    assert caught.value.problem == "Input should be a valid integer"
    assert caught.value.count == 2
    assert str(caught.value).endswith("(and 1 more)")


# --------------------------------------------------------------------------------------
# Property-based: nothing but PayloadError ever escapes parse().
# --------------------------------------------------------------------------------------

ALL_MODELS: list[type[BaseModel]] = [
    AttendanceInterval,
    AttendanceRecord,
    Attendee,
    BatchResponse,
    BatchResponseItem,
    CallParticipantInfo,
    CallRecord,
    CallRecordParticipant,
    CallRecording,
    CallTranscript,
    Channel,
    ChannelIdentity,
    Chat,
    ChatInfo,
    ChatMessage,
    ChatMessageEventDetail,
    ChatMessageFrom,
    ConversationMember,
    DateTimeTimeZone,
    DirectoryObject,
    EmailAddress,
    Event,
    GraphError,
    GraphErrorBody,
    GraphInnerError,
    Identity,
    IdentitySet,
    ItemBody,
    JoinMeetingIdSettings,
    LobbyBypassSettings,
    Location,
    MeetingAttendanceReport,
    MeetingParticipantInfo,
    MeetingParticipants,
    OnlineMeeting,
    OnlineMeetingInfo,
    Recipient,
    RemovedInfo,
    ResponseStatus,
    Team,
    TeamworkOnlineMeetingInfo,
    User,
]


def _graph_names(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    """Every JSON property name a model (and the models inside it) reads."""
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for field in model.model_fields.values():
        if field.alias:
            names.add(field.alias)
        for arg in _type_args(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                names |= _graph_names(arg, seen)
    return names


def _type_args(annotation: Any) -> list[Any]:
    found = [annotation]
    for arg in getattr(annotation, "__args__", ()):
        found.extend(_type_args(arg))
    for arg in getattr(annotation, "__metadata__", ()):
        found.append(arg)
    origin = getattr(annotation, "__origin__", None)
    if origin is not None:
        found.extend(_type_args(origin))
    return found


GRAPH_NAMES = sorted(
    set().union(*(_graph_names(m, set()) for m in ALL_MODELS)) | {"innerError", "innererror"}
)

# Values chosen to hit each validator's edges: overflowing instants, odd zones,
# durations, empty and oversized text.
EDGE_STRINGS = [
    "2021-03-28T03:50:10.266Z",
    "2020-02-25T18:52:21.2169889Z",
    "2021-03-1706:47:05.123Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-14:00",
    "2026-11-21T09:00:00.0000000",
    "PT59S",
    "PT40M19.26S",
    "P999999999DT999999999H",
    "P",
    "GMT Standard Time",
    "Europe/London",
    "tzone://Microsoft/Utc",
    "../../etc/passwd",
    "Nowhere/Else",
    "<systemEventMessage/>",
    "systemEventMessage",
    "unknownFutureValue",
    "",
    "x" * 20_000,
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(EDGE_STRINGS)
)
json_keys = st.sampled_from(GRAPH_NAMES) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(json_keys, children, max_size=4)
    ),
    max_leaves=8,
)
json_objects = st.dictionaries(json_keys, st.sampled_from(EDGE_STRINGS) | json_values, max_size=6)


def _assert_only_payload_error(model: type[BaseModel], data: Any) -> None:
    with contextlib.suppress(PayloadError):
        assert isinstance(parse(model, data, what="fuzz"), model)


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=json_objects | json_values)
def test_random_json_gives_a_model_or_payload_error(model: type[BaseModel], data: Any) -> None:
    """Random JSON-like input parses or raises PayloadError; nothing else escapes."""
    _assert_only_payload_error(model, data)


# Half the replacements are edge strings, so a date-time or zone field deep inside a
# real payload regularly meets an overflowing instant or an unknown zone.
replacements = st.sampled_from(EDGE_STRINGS) | json_values


@st.composite
def _mutated(draw: st.DrawFn, original: Any) -> Any:
    """The original with one value somewhere inside it replaced by random JSON.

    It descends four times in five, so most replacements land on leaves.
    """
    descend = draw(st.integers(min_value=0, max_value=4)) > 0
    if isinstance(original, dict) and original and descend:
        key = draw(st.sampled_from(sorted(original)))
        return {**original, key: draw(_mutated(original[key]))}
    if isinstance(original, list) and original and descend:
        index = draw(st.integers(min_value=0, max_value=len(original) - 1))
        return [*original[:index], draw(_mutated(original[index])), *original[index + 1 :]]
    return draw(replacements)


@pytest.mark.parametrize(
    ("model", "original"), _all_fixture_objects(), ids=lambda v: getattr(v, "__name__", "fixture")
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fixture_with_one_value_replaced_gives_a_model_or_payload_error(
    model: type[BaseModel], original: Any, data: st.DataObject
) -> None:
    """A real payload with any one value corrupted parses or raises PayloadError."""
    _assert_only_payload_error(model, data.draw(_mutated(original)))
