"""What the collector reads beyond calendar meetings, through the real client against the fake
tenant: chats between staff and pupils outside meetings, invitations sent to a group address,
the members of a channel meeting's team, meeting series and bots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import Missing, PersonKind, SessionKind, SessionSnapshot
from remote_guard.fakegraph.harness import key_maps
from remote_guard.graph.permissions import call_for
from remote_guard.poll.service import PollResult, run_poll
from tests.e2e.conftest import SCHOOL, Running, school, start

pytestmark = [pytest.mark.e2e, pytest.mark.database]

MORE_PUPILS = [{"key": f"q{i}", "name": f"Pupil Q{i}", "kind": "pupil"} for i in range(1, 21)]


CLASS_GROUP = {"key": "class4", "name": "Year 4 Oak", "members": ["p1", "p2", "p3"]}


def _school(*, extra_groups: tuple[dict[str, Any], ...] = (), **changes: Any) -> Any:
    """The e2e school with 20 more pupils (for a chat bigger than Graph's expanded-member cap)."""
    groups = [dict(group) for group in SCHOOL["groups"]]
    for group in groups:
        if group["key"] == "pupils":
            group["members"] = [*group["members"], *(p["key"] for p in MORE_PUPILS)]
    return school(
        people=[*SCHOOL["people"], *MORE_PUPILS],
        groups=[*groups, *extra_groups],
        expect=[],
        **changes,
    )


def _poll(running: Running) -> tuple[PollResult, dict[str, SessionSnapshot]]:
    """One poll; the latest snapshot of each session, by scenario key."""
    result = run_poll(running.poller)
    sessions, _ = key_maps(running.scenario, running.server)
    with running.poller.db() as session:
        rows = session.execute(
            select(SessionRow.id, SnapshotRow.data).join(
                SnapshotRow, SessionRow.latest_snapshot_id == SnapshotRow.id
            )
        ).all()
    return result, {
        sessions.get(session_id, session_id): SessionSnapshot.model_validate(data)
        for session_id, data in rows
    }


def _message(at: str, sender: str, text: str = "Hello") -> dict[str, str]:
    return {"at": at, "sender": sender, "text": text}


CHATS = [
    {
        "key": "dm-jones-p4",
        "members": ["t.jones", "p4"],
        "created": "2026-11-01T09:00:00Z",
        "messages": [
            _message("2026-11-10T18:00:00Z", "t.jones", "Before the look-back window"),
            _message("2026-11-17T19:02:00Z", "p4", "miss can you help with my homework"),
            _message("2026-11-17T19:05:00Z", "t.jones", "Ask me in class tomorrow"),
        ],
    },
    {
        "key": "group-two-staff-two-pupils",
        "members": ["t.jones", "t.patel", "p5", "p6"],
        "created": "2026-11-01T09:00:00Z",
        "messages": [_message("2026-11-18T12:00:00Z", "p5", "hello")],
    },
    {
        "key": "pupils-only",
        "members": ["p7", "p8"],
        "messages": [_message("2026-11-18T12:00:00Z", "p7", "hi")],
    },
    {
        "key": "staff-only",
        "members": ["t.jones", "h.head"],
        "messages": [_message("2026-11-18T12:00:00Z", "h.head", "staff meeting at 4")],
    },
    {
        "key": "quiet-dm",
        "members": ["t.patel", "p9"],
        "created": "2026-11-01T09:00:00Z",
        "messages": [_message("2026-11-02T12:00:00Z", "t.patel", "Long ago")],
    },
    {
        "key": "big-group",
        "members": ["t.patel", *(p["key"] for p in MORE_PUPILS), "p10", "p11", "p12", "p1", "p2"],
        "created": "2026-11-01T09:00:00Z",
        "messages": [_message("2026-11-18T11:00:00Z", "t.patel", "Homework is on Teams")],
    },
]


def test_staff_pupil_chats_become_direct_chat_sessions(tmp_path: Path) -> None:
    """1:1 and group chats of staff with pupils, with a message in the window, each once; chats
    without a pupil or without staff, or quiet in the window, are not kept."""
    scenario = _school(chats=CHATS)
    for running in start(scenario, tmp_path):
        # The harness looks back far enough to reach every message of the scenario; a school's
        # default 36 hours leaves "quiet-dm" (last message 2 November) outside the window.
        settings = running.poller.settings
        running.poller.settings = settings.model_copy(
            update={"poll": settings.poll.model_copy(update={"lookback_hours": 36})}
        )
        result, snapshots = _poll(running)
        assert result.status == "ok", result.errors
        chats = {key: s for key, s in snapshots.items() if s.kind is SessionKind.DIRECT_CHAT}
        assert set(chats) == {"dm-jones-p4", "group-two-staff-two-pupils", "big-group"}

        dm = chats["dm-jones-p4"]
        jones, p4 = scenario.person_id("t.jones"), scenario.person_id("p4")
        assert dm.chat_type == "oneOnOne"
        assert dm.member_ids == sorted([jones, p4])
        assert dm.people[p4].kind is PersonKind.PUPIL
        assert dm.people[jones].kind is PersonKind.STAFF
        assert dm.chat_thread_id == running.server.chat_id("dm-jones-p4")
        assert dm.session_id.startswith("chat_")
        # Only the messages in the look-back window, oldest first, with who sent them.
        assert dm.chat is not None
        assert [(m.sender_kind, m.sender_id, m.created.isoformat()) for m in dm.chat] == [
            ("person", p4, "2026-11-17T19:02:00+00:00"),
            ("person", jones, "2026-11-17T19:05:00+00:00"),
        ]
        assert (dm.actual_start, dm.actual_end) == (dm.chat[0].created, dm.chat[-1].created)
        assert dm.missing == {}
        assert dm.sources["chat"].endswith("/messages")

        group = chats["group-two-staff-two-pupils"]
        assert group.chat_type == "group"
        assert group.member_ids == sorted(
            scenario.person_id(k) for k in ("t.jones", "t.patel", "p5", "p6")
        )
        # More members than Graph expands (25): the full list was read.
        big = chats["big-group"]
        assert len(big.member_ids) == 26
        assert big.missing == {}

        # Found through two staff members' chat lists, stored once.
        with running.poller.db() as session:
            kinds = list(session.scalars(select(SessionRow.kind)))
        assert kinds.count(SessionKind.DIRECT_CHAT.value) == 3


def test_unreadable_chat_messages_are_missing_not_empty(tmp_path: Path) -> None:
    """A chat whose messages cannot be read is kept, with the reason under missing["chat"]."""
    scenario = _school(chats=CHATS[:1])
    for running in start(scenario, tmp_path):
        chat_id = running.server.chat_id("dm-jones-p4")
        assert chat_id is not None
        running.server.state.inject(r"/chats/[^/]+/messages", status=403, count=5)
        _, snapshots = _poll(running)
        dm = snapshots["dm-jones-p4"]
        assert dm.chat is None
        assert "Forbidden" in dm.missing[Missing.CHAT] or "403" in dm.missing[Missing.CHAT]


def test_group_invitation_counts_the_groups_members_as_invited(tmp_path: Path) -> None:
    """A lesson sent to the class group's address: its pupils are invitees, the address is not
    left over as an outside e-mail."""
    meeting = {**SCHOOL["meetings"][0], "invitees": ["class4", "parent@home.example"]}
    scenario = school(groups=[*SCHOOL["groups"], CLASS_GROUP], meetings=[meeting], expect=[])
    for running in start(scenario, tmp_path):
        result, snapshots = _poll(running)
        assert result.status == "ok", result.errors
        lesson = snapshots["lesson"]
        pupils = {scenario.person_id(k) for k in ("p1", "p2", "p3")}
        assert pupils <= set(lesson.invitee_ids)
        assert all(lesson.people[p].kind is PersonKind.PUPIL for p in pupils)
        group_mail = running.server.state.groups[scenario.group_id("class4")].mail.lower()
        assert lesson.invitee_emails == ["parent@home.example"]
        assert group_mail in lesson.sources["invitee_groups"]


def test_failed_group_lookup_keeps_the_address_and_reports_it(tmp_path: Path) -> None:
    """If the group behind an address cannot be looked up, the address stays an invitee e-mail
    and the poll says what failed."""
    meeting = {**SCHOOL["meetings"][0], "invitees": ["class4"]}
    scenario = school(groups=[*SCHOOL["groups"], CLASS_GROUP], meetings=[meeting], expect=[])
    for running in start(scenario, tmp_path):
        running.server.state.inject(r"^/v1\.0/groups\?", status=403, count=10)
        result, snapshots = _poll(running)
        group_mail = running.server.state.groups[scenario.group_id("class4")].mail.lower()
        assert snapshots["lesson"].invitee_emails == [group_mail]
        assert result.status == "partial"
        assert any(
            group_mail in error and "group lookup failed" in error for error in result.errors
        )


def _channel_scenario() -> Any:
    return school(
        teams=[
            {
                "key": "y4",
                "name": "Year 4",
                "owners": ["t.jones"],
                "members": ["p1", "p2", "p3"],
                "channels": [{"key": "general", "name": "General"}],
            }
        ],
        meetings=[
            {
                "key": "assembly",
                "subject": "Year 4 assembly",
                "organizer": "t.jones",
                "start": "2026-11-18T13:00:00Z",
                "end": "2026-11-18T13:30:00Z",
                "channel": "y4/general",
                "attendance": [
                    {"who": "t.jones", "intervals": [["2026-11-18T13:00:00Z", "2026-11-18T13:30:00Z"]]},
                    {"who": "p1", "intervals": [["2026-11-18T13:00:00Z", "2026-11-18T13:30:00Z"]]},
                ],
            }
        ],
        expect=[],
    )  # fmt: skip


def test_channel_meeting_knows_its_teams_members(tmp_path: Path) -> None:
    """A channel meeting is open to the team: its members are on the channel reference."""
    scenario = _channel_scenario()
    for running in start(scenario, tmp_path):
        _, snapshots = _poll(running)
        assembly = snapshots["assembly"]
        assert assembly.kind is SessionKind.CHANNEL_MEETING
        assert assembly.channel is not None
        expected = sorted(scenario.person_id(k) for k in ("t.jones", "p1", "p2", "p3"))
        assert assembly.channel.member_ids == expected
        assert assembly.people[scenario.person_id("p3")].kind is PersonKind.PUPIL
        assert assembly.sources["channel_members"].endswith("/transitiveMembers")


def test_unreadable_team_members_leave_the_list_empty_and_say_why(tmp_path: Path) -> None:
    scenario = _channel_scenario()
    for running in start(scenario, tmp_path):
        team = scenario.team_id("y4")
        running.server.state.inject(rf"/groups/{team}/transitiveMembers", status=403, count=10)
        result, snapshots = _poll(running)
        assembly = snapshots["assembly"]
        assert assembly.channel is not None
        assert assembly.channel.member_ids == []
        assert assembly.sources["channel_members"].startswith("not read:")
        assert any(team in error for error in result.errors)


def test_occurrences_of_a_series_share_its_series_id(tmp_path: Path) -> None:
    """Two lessons of one weekly series carry the same series id; a one-off lesson none."""
    first, one_off = SCHOOL["meetings"]
    later = {
        **first,
        "key": "lesson-next-week",
        "start": "2026-11-25T10:00:00Z",
        "end": "2026-11-25T10:30:00Z",
        "attendance": [],
        "chat": [],
    }
    scenario = school(
        meetings=[{**first, "series": "reading"}, {**later, "series": "reading"}, one_off],
        expect=[],
    )
    for running in start(scenario, tmp_path):
        _, snapshots = _poll(running)
        series_id = running.server.series_id("lesson")
        assert series_id is not None
        assert snapshots["lesson"].series_id == series_id
        assert snapshots["lesson-next-week"].series_id == series_id
        assert snapshots["clean"].series_id is None


def test_a_bot_in_the_call_is_an_application_not_a_person(tmp_path: Path) -> None:
    """A recording bot in the attendance report and call record is an application identity."""
    meeting = dict(SCHOOL["meetings"][1])
    meeting["attendance"] = [
        *meeting["attendance"],
        {"who": "notetaker", "intervals": [["2026-11-18T11:00:00Z", "2026-11-18T11:30:00Z"]]},
    ]
    scenario = school(
        externals=[{"key": "notetaker", "kind": "bot", "name": "Meeting Notes Bot"}],
        meetings=[meeting],
        expect=[],
    )
    for running in start(scenario, tmp_path):
        _, snapshots = _poll(running)
        clean = snapshots["clean"]
        bots = [p for p in clean.people.values() if p.display_name == "Meeting Notes Bot"]
        assert bots
        assert {p.kind for p in bots} == {PersonKind.APPLICATION}
        assert not any(p.kind is PersonKind.EXTERNAL for p in clean.people.values())


def test_new_graph_calls_are_in_the_permissions_table(tmp_path: Path) -> None:
    """Chats, chat members, group lookups and team members are all listed calls."""
    meeting = {**SCHOOL["meetings"][0], "invitees": ["class4"]}
    scenario = _school(extra_groups=(CLASS_GROUP,), chats=CHATS, meetings=[meeting])
    for running in start(scenario, tmp_path):
        _poll(running)
        paths = [r for r in running.server.requests if r.path.startswith("/v1.0/")]
        unlisted = {(r.method, r.path) for r in paths if call_for(r.method, r.path) is None}
        assert unlisted == set()
        assert any("/chats/" in r.path and r.path.split("?")[0].endswith("/members") for r in paths)
        assert any(r.path.startswith("/v1.0/groups?") for r in paths)
