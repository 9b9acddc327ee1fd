"""Load-time checks of a scenario: each problem is reported with the place it is in."""

from __future__ import annotations

from typing import Any

import pytest

from remote_guard.fakegraph.scenario import ScenarioError, parse_scenario

BASE: dict[str, Any] = {
    "name": "validation",
    "now": "2026-11-18T16:00:00Z",
    "people": [
        {"key": "t.jones", "name": "Mrs Jones", "kind": "staff"},
        {"key": "amelia.k", "name": "Amelia K.", "kind": "pupil"},
        {"key": "oliver.b", "name": "Oliver B.", "kind": "pupil"},
    ],
    "groups": [
        {"key": "staff", "name": "All Staff", "role": "staff", "members": ["t.jones"]},
        {"key": "pupils", "name": "All Pupils", "role": "pupils", "members": ["amelia.k", "oliver.b"]},
    ],
    "externals": [
        {"key": "visitor", "kind": "anonymous", "name": "Visitor"},
        {"key": "notes", "kind": "bot", "name": "Notes Bot"},
        {"key": "coach", "kind": "external", "name": "Coach", "email": "coach@club.example"},
    ],
}  # fmt: skip


def _meeting(**changes: Any) -> dict[str, Any]:
    return {
        "key": "lesson",
        "subject": "Reading",
        "organizer": "t.jones",
        "start": "2026-11-18T10:00:00Z",
        "end": "2026-11-18T10:30:00Z",
        "invitees": ["amelia.k"],
        **changes,
    }


def _problems(**changes: Any) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario({**BASE, **changes}, source="case.yaml")
    message = str(caught.value)
    assert message.startswith("case.yaml: the scenario is not valid.")
    return message


def test_the_base_scenario_is_valid() -> None:
    """Bots, externals and a chat expectation are all fine as written."""
    scenario = parse_scenario(
        {
            **BASE,
            "meetings": [_meeting()],
            "chats": [{"key": "dm", "members": ["t.jones", "amelia.k"]}],
            "expect": [{"rule": "direct_chat_with_pupil", "session": "dm", "subject": "amelia.k"}],
        },
        source="case.yaml",
    )
    assert [e.kind for e in scenario.externals] == ["anonymous", "bot", "external"]


def test_duplicate_external_keys() -> None:
    externals = [*BASE["externals"], {"key": "visitor", "kind": "phone", "name": "Dial-in"}]
    assert "externals: key 'visitor' is used twice" in _problems(externals=externals)


def test_external_key_that_is_also_a_person_key() -> None:
    externals = [*BASE["externals"], {"key": "amelia.k", "kind": "anonymous", "name": "Amelia"}]
    assert "externals[amelia.k]: key 'amelia.k' is also a person key" in _problems(
        externals=externals
    )


def test_invitee_that_is_both_a_person_and_a_group_key() -> None:
    groups = [*BASE["groups"], {"key": "amelia.k", "name": "Amelia's group", "members": []}]
    message = _problems(groups=groups, meetings=[_meeting()])
    assert "meetings[lesson].invitees: 'amelia.k' is both a person and a group key" in message


@pytest.mark.parametrize(
    ("changes", "place"),
    [
        ({"meetings": [_meeting(start="tomorow 09:00")]}, "meetings[lesson].start: 'tomorow 09:00' is not a time"),
        (
            {"meetings": [_meeting(attendance=[{"who": "amelia.k", "intervals": [["2026-11-18T10:00:00Z", "half ten"]]}])]},
            "meetings[lesson].attendance[amelia.k].intervals[0][1]: 'half ten' is not a time",
        ),
        (
            {"meetings": [_meeting(chat=[{"at": "10am", "sender": "amelia.k"}])]},
            "meetings[lesson].chat[0].at: '10am' is not a time",
        ),
        (
            {"chats": [{"key": "dm", "members": ["t.jones", "amelia.k"], "messages": [{"at": "later", "sender": "t.jones"}]}]},
            "chats[dm].messages[0].at: 'later' is not a time",
        ),
        (
            {"consents": [{"key": "c1", "pupil": "amelia.k", "granted_by": "Sarah K.", "granted_at": "last week"}]},
            "consents[c1].granted_at: 'last week' is not a time",
        ),
        (
            {"exemptions": [{"key": "x1", "rule": "r", "scope": "person", "pupil": "amelia.k", "reason": "agreed", "granted_by": "Head", "expires_at": "soon"}]},
            "exemptions[x1].expires_at: 'soon' is not a time",
        ),
        ({"now": "the day after"}, "now: 'the day after' is not a time"),
    ],
    ids=["meeting-start", "attendance", "meeting-chat", "direct-chat", "consent", "exemption", "now"],
)  # fmt: skip
def test_invalid_time_expressions_name_their_place(changes: dict[str, Any], place: str) -> None:
    assert place in _problems(**changes)


def test_unknown_time_zone() -> None:
    assert "timezone: 'Europe/Londn' is not an IANA time zone" in _problems(timezone="Europe/Londn")


@pytest.mark.parametrize(
    ("changes", "place"),
    [
        ({"meetings": [_meeting(end="2026-11-18T09:59:00Z")]}, "meetings[lesson]: end is before start"),
        (
            {"calls": [{"key": "c", "caller": "t.jones", "callee": "amelia.k", "start": "2026-11-18T11:00:00Z", "end": "2026-11-18T10:00:00Z"}]},
            "calls[c]: end is before start",
        ),
        (
            {"meetings": [_meeting(attendance=[{"who": "amelia.k", "intervals": [["2026-11-18T10:00:00Z", "2026-11-18T10:30:00Z"], ["2026-11-18T10:40:00Z", "2026-11-18T10:35:00Z"]]}])]},
            "meetings[lesson].attendance[amelia.k].intervals[1]: leaves before joining",
        ),
        (
            {"registrations": [{"key": "r1", "teacher": "t.jones", "pupil": "amelia.k", "activity": "reading", "starts_at": "2026-11-19T10:00:00Z", "ends_at": "2026-11-19T09:00:00Z"}]},
            "registrations[r1]: ends_at is before starts_at",
        ),
        (
            {"meetings": [_meeting(recordings=[{"started_by": "t.jones", "at": "2026-11-18T10:10:00Z", "end": "2026-11-18T10:05:00Z"}])]},
            "meetings[lesson].recordings[0]: end is before at",
        ),
        (
            {"exemptions": [{"key": "x1", "rule": "r", "scope": "person", "pupil": "amelia.k", "reason": "agreed", "granted_by": "Head", "granted_at": "2026-11-18T10:00:00Z", "expires_at": "2026-11-17T10:00:00Z"}]},
            "exemptions[x1]: expires_at is not after granted_at",
        ),
    ],
    ids=["meeting", "call", "attendance", "registration", "recording", "exemption"],
)  # fmt: skip
def test_ends_before_starts_name_their_place(changes: dict[str, Any], place: str) -> None:
    assert place in _problems(**changes)


def test_a_bot_cannot_organise_a_meeting() -> None:
    message = _problems(meetings=[_meeting(organizer="notes")])
    assert "meetings[lesson].organizer: 'notes' is a bot" in message


@pytest.mark.parametrize("member", ["visitor", "notes"])
def test_only_account_holders_are_chat_members(member: str) -> None:
    message = _problems(chats=[{"key": "dm", "members": ["t.jones", member]}])
    assert f"chats[dm].members: {member!r} is a" in message


def test_an_external_user_can_be_a_chat_member() -> None:
    parse_scenario(
        {**BASE, "chats": [{"key": "dm", "members": ["t.jones", "coach"]}]}, source="case.yaml"
    )


def test_chat_message_from_someone_outside_the_chat() -> None:
    chats = [
        {
            "key": "dm",
            "members": ["t.jones", "amelia.k"],
            "messages": [{"at": "2026-11-18T10:00:00Z", "sender": "oliver.b"}],
        }
    ]
    assert "chats[dm].messages[0].sender: 'oliver.b' is not a member of the chat" in _problems(
        chats=chats
    )


def test_two_one_to_one_chats_of_the_same_pair() -> None:
    chats = [
        {"key": "dm", "members": ["t.jones", "amelia.k"]},
        {"key": "dm-again", "members": ["amelia.k", "t.jones"]},
    ]
    assert "chats[dm-again].members: 'dm' is already the 1:1 chat of these two people" in (
        _problems(chats=chats)
    )


def test_a_chat_needs_two_members() -> None:
    message = _problems(chats=[{"key": "solo", "members": ["t.jones", "t.jones"]}])
    assert "chats[solo].members: a member is listed twice" in message
    assert "chats[solo].members: a chat needs at least two members" in message


def test_meeting_chat_initiator_must_be_known() -> None:
    chat = [
        {
            "at": "2026-11-18T10:00:00Z",
            "sender": "system",
            "event": "callStarted",
            "initiator": "nobody",
        }
    ]
    assert "meetings[lesson].chat[0].initiator: 'nobody' is not a person" in _problems(
        meetings=[_meeting(chat=chat)]
    )  # fmt: skip


def test_a_series_has_one_organizer() -> None:
    staff = [*BASE["people"], {"key": "t.patel", "name": "Mr Patel", "kind": "staff"}]
    meetings = [
        _meeting(series="weekly"),
        _meeting(key="lesson-2", organizer="t.patel", series="weekly"),
    ]
    assert "meetings: series 'weekly' has more than one organizer (t.jones, t.patel)" in (
        _problems(people=staff, meetings=meetings)
    )


def test_consent_pupil_must_be_a_person() -> None:
    consents = [
        {
            "key": "c1",
            "pupil": "freya.s",
            "granted_by": "Sarah S.",
            "granted_at": "2026-11-01T09:00:00Z",
        }
    ]
    assert "consents[c1].pupil: 'freya.s' is not a person key" in _problems(consents=consents)


@pytest.mark.parametrize(
    ("exemption", "place"),
    [
        ({"scope": "pair", "pupil": "freya.s", "staff": "t.jones"}, "exemptions[x1].pupil: 'freya.s' is not a person key"),
        ({"scope": "pair", "pupil": "amelia.k", "staff": "mr.nobody"}, "exemptions[x1].staff: 'mr.nobody' is not a person key"),
        ({"scope": "session", "session": "no-such-lesson"}, "exemptions[x1].session: 'no-such-lesson' is not a meeting, call or chat key"),
        ({"scope": "series", "session": "dm"}, "exemptions[x1].session: 'dm' is not a meeting key"),
        ({"scope": "pair", "pupil": "amelia.k"}, "exemptions[x1]: a pair exemption needs staff"),
        ({"scope": "person"}, "exemptions[x1]: a person exemption needs pupil or staff"),
        ({"scope": "series"}, "exemptions[x1]: a series exemption needs session"),
    ],
    ids=["pupil", "staff", "session", "series-on-a-chat", "pair-without-staff", "person-without-anyone", "series-without-session"],
)  # fmt: skip
def test_exemption_references(exemption: dict[str, Any], place: str) -> None:
    exemptions = [{"key": "x1", "rule": "r", "reason": "agreed", "granted_by": "Head", **exemption}]
    message = _problems(
        meetings=[_meeting()],
        chats=[{"key": "dm", "members": ["t.jones", "amelia.k"]}],
        exemptions=exemptions,
    )
    assert place in message


def test_expectation_session_names_its_place() -> None:
    expect = [{"rule": "r", "session": "lesson"}, {"rule": "r", "session": "nope"}]
    message = _problems(meetings=[_meeting()], expect=expect)
    assert "expect[1].session: 'nope' is not a meeting, call or chat key" in message
    assert "expect[0]" not in message


def test_every_problem_is_reported_together() -> None:
    message = _problems(
        meetings=[_meeting(start="noon", organizer="nobody")],
        calls=[{"key": "c", "caller": "t.jones", "callee": "amelia.k", "start": "2026-11-18T11:00:00Z", "end": "2026-11-18T10:00:00Z"}],
    )  # fmt: skip
    assert "meetings[lesson].organizer" in message
    assert "meetings[lesson].start" in message
    assert "calls[c]: end is before start" in message


def test_the_occurrences_of_a_series_share_one_teams_meeting() -> None:
    """One onlineMeeting per series: its options and channel are the same for every occurrence."""
    meetings = [
        _meeting(series="weekly"),
        _meeting(key="lesson-2", series="weekly", settings={"lobby_scope": "everyone"}),
    ]
    assert (
        "meetings: series 'weekly' has occurrences with different settings; the occurrences of a "
        "series share one Teams meeting"
    ) in _problems(meetings=meetings)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {"is_online": False, "provider": "unknown", "invitees": []},
            "meetings[lesson].calendar: only a Teams meeting (is_online, provider "
            "teamsForBusiness) can exist without a calendar event",
        ),
        (
            {"organizer": "coach", "invitees": []},
            "meetings[lesson].calendar: an ad-hoc meeting is started by a person of this tenant, "
            "not 'coach'",
        ),
        (
            {},
            "meetings[lesson].invitees: an ad-hoc meeting (calendar: false) has no invitation",
        ),
        (
            {"series": "weekly", "invitees": []},
            "meetings[lesson].calendar: a series occurrence is on a calendar by definition; an "
            "ad-hoc meeting (calendar: false) has no series",
        ),
    ],
    ids=["not-teams", "external-organizer", "invitees", "series"],
)
def test_an_ad_hoc_meeting_is_a_teams_meet_now(changes: dict[str, Any], problem: str) -> None:
    assert problem in _problems(meetings=[_meeting(calendar=False, **changes)])


def test_an_ad_hoc_meeting_is_valid_as_written() -> None:
    scenario = parse_scenario(
        {**BASE, "meetings": [_meeting(calendar=False, invitees=[])]}, source="case.yaml"
    )
    assert scenario.meetings[0].calendar is False
