"""Pure pieces of the collector: other providers' meeting links in invitations, session ids of
recurring meetings' occurrences, sharing a series' data out among its occurrences, and who an
attendance record names."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from remote_guard.collect.collector import (
    OCCURRENCE_SLACK,
    Collector,
    _Occurrence,
    _Scope,
    foreign_links,
    nearest_occurrence,
    normalise_join_url,
    session_id_for_join_url,
)
from remote_guard.collect.snapshot import Person, PersonKind
from remote_guard.directory.service import Directory
from remote_guard.graph.client import GraphClient
from remote_guard.graph.models import AttendanceRecord, IdentitySet, parse
from tests.collect.test_collector_seam import NOW, TENANT, ScriptedGraph, _settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graph"

# --- other providers' links ---------------------------------------------------------------------

ZOOM_HTML = """<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">
</head><body><div>Hi Year 4, we will read together on Zoom this week.</div>
<div>Join Zoom Meeting<br><a href="https://us06web.zoom.us/j/85512345678?pwd=aBcDeF123456.1"
target="_blank">https://us06web.zoom.us/j/85512345678?pwd=aBcDeF123456.1</a></div>
<div>Meeting ID: 855 1234 5678<br>Passcode: 4321</div></body></html>"""

TEAMS_FREE_TEXT = (
    "Join me on Teams: https://teams.live.com/meet/9381234567890?p=Xk2PqR7tAbCd.\r\n"
    "Meeting ID: 938 123 456 789 0\r\nPasscode: Xk2PqR"
)

SKYPE_TEXT = "If Teams does not work, call me on skype:live:.cid.4f1e2d3c4b5a6978?call or at https://join.skype.com/AbCdEfGh1234 (no password)."

WHATSAPP_HTML = (
    '<p>Parents&#39; group: <a href="https://chat.whatsapp.com/invite/HxQ7r2Ab9Kd">join</a>'
    "; video call: https://call.whatsapp.com/video/Zq81LmNo2pQ, or message me on "
    "https://wa.me/447700900123?text=Hello%20Miss.</p>"
)

GOOGLE_TEXT = (
    "Backup link: https://g.co/meet/abc-defg-hij) or on a phone https://meet.app.goo.gl/Xyz12"
)

SAFE_LINKS_HTML = (
    '<a href="https://eur01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fus02web.zoom.us'
    '%2Fj%2F81122233344%3Fpwd%3DSeCrEt&amp;data=05%7C01%7C&amp;reserved=0">Join</a>'
)

TEAMS_SCHOOL_HTML = """<div>________________________________________________________________________________</div>
<div><span style="font-size:24px">Microsoft Teams meeting</span></div>
<div><a href="https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0?context=%7b%22Tid%22%3a%22x%22%7d">Join the meeting now</a></div>
<div>Meeting ID: 385 123 456 789</div><div>Passcode: q7Hx3k</div>
<div>Download Teams | https://www.microsoft.com/microsoft-teams/download-app | Skype help: https://www.skype.com/en/</div>"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ZOOM_HTML, ["https://us06web.zoom.us/j/85512345678"]),
        (TEAMS_FREE_TEXT, ["https://teams.live.com/meet/9381234567890"]),
        (SKYPE_TEXT, ["https://join.skype.com/AbCdEfGh1234", "skype:live:.cid.4f1e2d3c4b5a6978"]),
        (
            WHATSAPP_HTML,
            [
                "https://call.whatsapp.com/video/Zq81LmNo2pQ",
                "https://chat.whatsapp.com/invite/HxQ7r2Ab9Kd",
                "https://wa.me/447700900123",
            ],
        ),
        (GOOGLE_TEXT, ["https://g.co/meet/abc-defg-hij", "https://meet.app.goo.gl/Xyz12"]),
        (SAFE_LINKS_HTML, ["https://us02web.zoom.us/j/81122233344"]),
        (TEAMS_SCHOOL_HTML, []),
    ],
    ids=["zoom-html", "teams-free-text", "skype", "whatsapp-html", "google-short", "safe-links", "school-teams"],
)  # fmt: skip
def test_foreign_links_in_invitations(body: str, expected: list[str]) -> None:
    """Each provider's link is found in HTML and plain text, kept without query, fragment or
    the sentence's punctuation; the school's own Teams link and mere mentions of Skype's or
    Microsoft's websites are not links to another provider's meeting."""
    assert foreign_links(body) == expected


def test_stored_links_never_hold_a_passcode() -> None:
    links = foreign_links(" ".join([ZOOM_HTML, TEAMS_FREE_TEXT, WHATSAPP_HTML, SAFE_LINKS_HTML]))
    assert links
    for link in links:
        assert "?" not in link
        assert "#" not in link
        assert "pwd" not in link.lower()
        assert "secret" not in link.lower()


@pytest.mark.parametrize(
    "text",
    [
        "https://zoom.us.example.com/j/123",
        "https://notzoom.usa.example/j/1",
        "https://whatsapp.com/download",
        "https://www.skype.com/en/get-skype/",
        "https://teams.live.com/",
        "see zoom.us/j/123 without a scheme",
    ],
)
def test_lookalikes_are_not_foreign_meeting_links(text: str) -> None:
    assert foreign_links(text) == []


# --- session ids of occurrences ------------------------------------------------------------------

JOIN = (
    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjA0%40thread.v2/0"
    "?context=%7b%22Tid%22%3a%22t%22%2c%22Oid%22%3a%22o%22%7d"
)


def test_a_single_meetings_session_id_is_unchanged() -> None:
    """Stored sessions keep their ids: a meeting outside any series is named by its URL alone."""
    expected = "mtg_" + hashlib.sha256(normalise_join_url(JOIN).encode()).hexdigest()[:24]
    assert session_id_for_join_url(JOIN) == expected


def test_occurrences_sharing_a_join_url_have_their_own_session_ids() -> None:
    monday = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)
    ids = {session_id_for_join_url(JOIN, monday + timedelta(days=n)) for n in range(3)}
    assert len(ids) == 3
    assert session_id_for_join_url(JOIN) not in ids
    # The same occurrence read from another mailbox (or with another URL encoding) is one session.
    assert session_id_for_join_url(JOIN.replace("%3a", "%3A"), monday) == session_id_for_join_url(
        JOIN, monday
    )


# --- sharing a series out among its occurrences --------------------------------------------------


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


WEEK = (
    _Occurrence("mon", _at(16, 10), _at(16, 10, 30)),
    _Occurrence("tue", _at(17, 10), _at(17, 10, 30)),
    _Occurrence("tue-pm", _at(17, 14), _at(17, 14, 30)),
)


@pytest.mark.parametrize(
    ("start", "end", "owner"),
    [
        (_at(16, 9, 55), _at(16, 10, 40), "mon"),  # joined early, overran: still Monday's
        (_at(17, 10, 5), None, "tue"),  # a message during Tuesday's lesson
        (_at(17, 12, 0), None, "tue"),  # 90 minutes after it: nearer Tuesday morning's
        (_at(17, 13, 0), None, "tue-pm"),  # an hour before the afternoon one: nearer that
        (_at(17, 10, 0), _at(17, 14, 10), "tue"),  # overlaps both: the larger overlap wins
        (_at(16, 18, 0), None, None),  # the evening after Monday: beyond the slack of any
        (_at(15, 10, 0), _at(15, 10, 30), None),  # the link used the day before: nobody's
    ],
)
def test_data_goes_to_the_occurrence_it_overlaps_or_is_nearest_to(
    start: datetime, end: datetime | None, owner: str | None
) -> None:
    found = nearest_occurrence(WEEK, start, end or start)
    assert (found.session_id if found else None) == owner
    for occurrence in WEEK:
        scope = _Scope(occurrence.session_id, WEEK)
        assert scope.owns(start, end) is (occurrence.session_id == owner)


def test_nothing_without_a_time_can_be_placed() -> None:
    assert _Scope("mon", WEEK).owns(None) is False
    assert _Scope("mon", WEEK).window() == (
        _at(16, 10) - OCCURRENCE_SLACK,
        _at(16, 10, 30) + OCCURRENCE_SLACK,
    )


# --- who an attendance record names ---------------------------------------------------------------


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _directory_with(people: list[tuple[str, str, str]]) -> Directory:
    directory = Directory(tenant_id=TENANT)
    for person_id, name, address in people:
        directory.people[person_id] = Person(
            id=person_id, display_name=name, kind=PersonKind.STAFF, tenant_id=TENANT, email=address
        )
        directory.by_address[address] = person_id
    return directory


def _attendee_collector(graph: ScriptedGraph, directory: Directory) -> Collector:
    return Collector(
        graph=cast(GraphClient, graph), settings=_settings(), directory=directory, clock=lambda: NOW
    )


def test_microsofts_published_attendance_records_are_the_schools_people() -> None:
    """The documented records (GUID ids, no tenant, an address): matched by address."""
    graph = ScriptedGraph({})
    collector = _attendee_collector(
        graph,
        _directory_with(
            [
                ("aaaaaaaa-0000-0000-0000-000000000001", "Frederick Cormier", "frederick.cormier@contoso.com"),
                ("aaaaaaaa-0000-0000-0000-000000000002", "Lisa Adkins", "lisa.adkins@contoso.com"),
            ]
        ),
    )  # fmt: skip

    records = [
        parse(AttendanceRecord, raw, what="attendance record")
        for raw in _fixture("attendance_records_list.json")["value"]
    ]
    people = [collector._attendee(record) for record in records]

    assert [(p.display_name, p.kind) for p in people] == [
        ("Frederick Cormier", PersonKind.STAFF),
        ("Lisa Adkins", PersonKind.STAFF),
    ]
    assert graph.asked == []


def test_an_attendee_without_an_entra_account_is_anonymous_without_a_lookup() -> None:
    """An azureCommunicationServicesUserIdentity (Graph's documented identity for someone with no
    Entra account) is someone who joined by link: anonymous, under the typed-in name, with the
    same id prefix as the call record's guest identity. The directory is not asked."""
    guid = "0f9e8d7c-6b5a-4948-8372-615049382716"
    record = parse(
        AttendanceRecord,
        {
            "id": guid,
            "emailAddress": None,
            "role": "Attendee",
            "totalAttendanceInSeconds": 600,
            "identity": {
                "@odata.type": "#microsoft.graph.azureCommunicationServicesUserIdentity",
                "id": guid,
                "displayName": "Max",
                "azureCommunicationServicesResourceId": None,
            },
            "attendanceIntervals": [],
        },
        what="attendance record",
    )
    graph = ScriptedGraph({})
    collector = _attendee_collector(graph, _directory_with([]))

    person = collector._attendee(record)

    assert (person.id, person.display_name, person.kind) == (
        f"anon:{guid}",
        "Max",
        PersonKind.ANONYMOUS,
    )
    assert graph.asked == []


@pytest.mark.parametrize(
    ("user_identity_type", "kind", "prefix"),
    [("anonymousGuest", PersonKind.ANONYMOUS, "anon:"), ("phoneUser", PersonKind.PHONE, "phone:")],
)
def test_a_chat_sender_without_an_account_is_not_looked_up(
    user_identity_type: str, kind: PersonKind, prefix: str
) -> None:
    """A chat message's teamworkUserIdentity that says "anonymousGuest" or "phoneUser" names
    someone with no account: classified from the payload alone."""
    sender = parse(
        IdentitySet,
        {
            "user": {
                "@odata.type": "#microsoft.graph.teamworkUserIdentity",
                "id": "8:teamsvisitor:1a2b3c",
                "displayName": "Alex (Guest)",
                "userIdentityType": user_identity_type,
            }
        },
        what="chat sender",
    )

    person = _directory_with([]).identity(sender, fallback_id="unknown")

    assert (person.id, person.kind) == (f"{prefix}8:teamsvisitor:1a2b3c", kind)
