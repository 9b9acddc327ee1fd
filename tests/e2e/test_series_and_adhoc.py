"""Sessions that share or lack a calendar entry, through the real client against the fake tenant:
the occurrences of a recurring meeting (one join URL, one onlineMeeting, one chat for the whole
series), an ad-hoc "Meet now" meeting (no calendar event), anonymous joiners, direct calls'
recordings, and how often staff members' chats are read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import Missing, PersonKind, SessionKind, SessionSnapshot
from remote_guard.fakegraph.harness import import_registers, key_maps, run_check, settings_for
from remote_guard.fakegraph.scenario import Scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.findings.models import FindingRow
from remote_guard.poll.service import PollResult, run_poll
from remote_guard.runtime import build_poller
from tests import databases
from tests.e2e.conftest import SCHOOL, Running, school, start

pytestmark = [pytest.mark.e2e, pytest.mark.database]


def _day(day: int, hhmm: str) -> str:
    return f"2026-11-{day:02d}T{hhmm}:00Z"


def _occurrence(key: str, day: int, **changes: Any) -> dict[str, Any]:
    """One Year 4 reading lesson of the weekly-reading series, 10:00-10:30 on 2026-11-``day``,
    with the teacher and three pupils who all leave at 10:30."""
    meeting: dict[str, Any] = {
        "key": key,
        "subject": "Year 4 reading",
        "organizer": "t.jones",
        "series": "reading",
        "start": _day(day, "10:00"),
        "end": _day(day, "10:30"),
        "invitees": ["p1", "p2", "p3"],
        "attendance": [
            {"who": who, "intervals": [[_day(day, "10:00"), _day(day, "10:30")]]}
            for who in ("t.jones", "p1", "p2", "p3")
        ],
        "chat": [{"at": _day(day, "10:05"), "sender": "t.jones", "text": "Open page 12"}],
    }
    meeting.update(changes)
    return meeting


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


def _series_scenario() -> Scenario:
    """Three occurrences of one weekly lesson; only Tuesday's goes wrong: Pupil 2 writes in the
    meeting chat and Pupil 1 stays alone with the teacher for six minutes. Thursday's lesson is
    recorded by the teacher."""
    monday = _occurrence("reading-mon", 16)
    tuesday = _occurrence(
        "reading-tue",
        17,
        attendance=[
            {"who": "t.jones", "intervals": [[_day(17, "10:00"), _day(17, "10:36")]]},
            {"who": "p1", "intervals": [[_day(17, "10:00"), _day(17, "10:36")]]},
            {"who": "p2", "intervals": [[_day(17, "10:00"), _day(17, "10:30")]]},
            {"who": "p3", "intervals": [[_day(17, "10:00"), _day(17, "10:30")]]},
        ],
        chat=[
            {"at": _day(17, "10:05"), "sender": "t.jones", "text": "Open page 12"},
            {"at": _day(17, "10:07"), "sender": "p2", "text": "hi miss"},
        ],
    )
    wednesday = _occurrence(
        "reading-wed",
        18,
        recordings=[{"started_by": "t.jones", "at": _day(18, "10:10"), "end": _day(18, "10:20")}],
    )
    return school(meetings=[monday, tuesday, wednesday], expect=[])


def test_each_occurrence_of_a_series_is_its_own_session(tmp_path: Path) -> None:
    """One join URL, three sessions: each holds only its own call, attendance, chat and
    recordings, and only Tuesday's has the pupil's chat message and the one-to-one."""
    scenario = _series_scenario()
    for running in start(scenario, tmp_path):
        server = running.server
        join_urls = {server.join_url(k) for k in ("reading-mon", "reading-tue", "reading-wed")}
        assert len(join_urls) == 1  # as in Teams: the series has one join URL

        result, snapshots = _poll(running)

        assert result.status == "ok", result.errors
        occurrences = {k: snapshots[k] for k in ("reading-mon", "reading-tue", "reading-wed")}
        assert len({s.session_id for s in occurrences.values()}) == 3
        assert {s.series_id for s in occurrences.values()} == {server.series_id("reading-mon")}
        assert len({s.online_meeting_id for s in occurrences.values()}) == 1
        for key, snapshot in occurrences.items():
            day = snapshot.scheduled_start.date() if snapshot.scheduled_start else None
            assert snapshot.missing == {}, key
            assert len(snapshot.call_record_ids) == 1, key
            assert snapshot.presence is not None
            assert {p.source for p in snapshot.presence} == {"attendance_report"}, key
            # Attendance, chat and recordings of the other days are not in this occurrence.
            spans = [i for p in snapshot.presence for i in p.intervals]
            assert {i.start.date() for i in spans} == {day}, key
            assert snapshot.chat is not None
            assert {m.created.date() for m in snapshot.chat} == {day}, key
        p1, p2 = scenario.person_id("p1"), scenario.person_id("p2")
        chat_senders = {
            key: {m.sender_id for m in s.chat or [] if m.sender_kind == "person"}
            for key, s in occurrences.items()
        }
        assert chat_senders == {
            "reading-mon": {scenario.person_id("t.jones")},
            "reading-tue": {scenario.person_id("t.jones"), p2},
            "reading-wed": {scenario.person_id("t.jones")},
        }
        # Wednesday's recording, as the recordings API lists it and as its chat message says.
        recordings = {
            k: sorted(r.source for r in s.recordings or []) for k, s in occurrences.items()
        }
        assert recordings == {
            "reading-mon": [],
            "reading-tue": [],
            "reading-wed": ["chat_event", "recordings_api"],
        }

        sessions, subjects = key_maps(scenario, server)
        with running.poller.db() as session:
            open_findings = {
                (row.rule_id, sessions.get(row.session_id), subjects.get(row.subject_key))
                for row in session.scalars(
                    select(FindingRow).where(FindingRow.status.in_(["fail", "warn"]))
                )
            }
        assert ("pupil_meeting_chat", "reading-tue", "p2") in open_findings
        assert ("one_to_one_without_consent", "reading-tue", "p1") in open_findings
        for rule in ("pupil_meeting_chat", "one_to_one_without_consent"):
            assert {(r, s) for r, s, _ in open_findings if r == rule} == {(rule, "reading-tue")}
        assert p1 != p2


def test_a_series_exemption_covers_every_occurrence_and_a_session_one_only_its_own(
    tmp_path: Path,
) -> None:
    """Exemptions are given by scenario key: the harness names the series by the server's series
    id, and a session by the session id the collector gives that occurrence."""
    scenario = school(
        meetings=[
            _occurrence(
                "reading-mon",
                16,
                chat=[{"at": _day(16, "10:07"), "sender": "p2", "text": "hello"}],
            ),
            _occurrence(
                "reading-tue",
                17,
                chat=[{"at": _day(17, "10:07"), "sender": "p2", "text": "hello"}],
            ),
        ],
        exemptions=[
            {
                "key": "tuesday-only",
                "rule": "pupil_meeting_chat",
                "scope": "session",
                "session": "reading-tue",
                "reason": "Pupil 2 answered a question the teacher asked in the chat",
                "granted_by": "Ms Head",
            },
            {
                "key": "whole-series",
                "rule": "meeting_chat_open_to_pupils",
                "scope": "series",
                "session": "reading-mon",
                "reason": "The reading series uses the chat for phonics answers, agreed by SLT",
                "granted_by": "Ms Head",
            },
        ],
        expect=[],
    )
    result = run_check(scenario, state_dir=tmp_path, database_url=databases.database_url(tmp_path))
    assert result.poll.status == "ok", result.poll.errors
    by = {
        (f["rule"], f["session"]): f["exempted"]
        for f in result.findings
        if f["status"] in ("fail", "warn")
    }
    assert by[("pupil_meeting_chat", "reading-tue")] is True
    assert by[("pupil_meeting_chat", "reading-mon")] is False
    assert by[("meeting_chat_open_to_pupils", "reading-mon")] is True
    assert by[("meeting_chat_open_to_pupils", "reading-tue")] is True


def test_session_exemptions_reach_calls_chats_and_other_providers(tmp_path: Path) -> None:
    """A session exemption of a direct call, a chat or a Zoom lesson names the session the
    collector makes of it, so the finding it covers shows as exempted."""
    scenario = school(
        meetings=[
            {
                "key": "zoom-lesson",
                "subject": "Year 4 reading on Zoom",
                "organizer": "t.jones",
                "start": "2026-11-18T13:00:00Z",
                "end": "2026-11-18T13:30:00Z",
                "invitees": ["p1", "p2"],
                "is_online": False,
                "provider": "unknown",
                "body": "Join Zoom Meeting https://us06web.zoom.us/j/85512345678?pwd=Zm9v",
            }
        ],
        calls=[
            {
                "key": "call",
                "caller": "t.jones",
                "callee": "p3",
                "start": "2026-11-18T14:00:00Z",
                "end": "2026-11-18T14:10:00Z",
            }
        ],
        chats=[
            {
                "key": "dm",
                "members": ["t.jones", "p4"],
                "created": "2026-11-01T09:00:00Z",
                "messages": [{"at": "2026-11-18T12:00:00Z", "sender": "p4", "text": "hi miss"}],
            }
        ],
        exemptions=[
            {
                "key": f"x-{key}",
                "rule": rule,
                "scope": "session",
                "session": key,
                "reason": "Agreed in advance with the DSL for this one session",
                "granted_by": "Ms Head",
            }
            for key, rule in (
                ("zoom-lesson", "non_teams_meeting"),
                ("call", "one_to_one_without_consent"),
                ("dm", "direct_chat_with_pupil"),
            )
        ],
        expect=[],
    )
    result = run_check(scenario, state_dir=tmp_path, database_url=databases.database_url(tmp_path))
    breaches = {
        (f["rule"], f["session"]): f["exempted"]
        for f in result.findings
        if f["status"] in ("fail", "warn")
    }
    assert breaches[("non_teams_meeting", "zoom-lesson")] is True
    assert breaches[("one_to_one_without_consent", "call")] is True
    assert breaches[("direct_chat_with_pupil", "dm")] is True


def test_a_meet_now_meeting_is_read_through_its_online_meeting(tmp_path: Path) -> None:
    """A "Meet now" lesson has no calendar event: found by its call record, it still gets its
    organiser's tenant, meeting options, attendance report and chat."""
    meet_now = {
        **SCHOOL["meetings"][0],
        "key": "meet-now",
        "subject": "Meeting with Mrs Jones",
        "calendar": False,
        "invitees": [],
        "settings": {"lobby_scope": "everyone"},
    }
    scenario = school(meetings=[meet_now], expect=[])
    for running in start(scenario, tmp_path):
        events = [
            event
            for mailbox in running.server.state.calendars.values()
            for event in mailbox.values()
        ]
        assert events == []

        result, snapshots = _poll(running)

        assert result.status == "ok", result.errors
        snapshot = snapshots["meet-now"]
        assert snapshot.kind is SessionKind.MEETING
        assert snapshot.scheduled_start is None
        assert snapshot.organizer_id == scenario.person_id("t.jones")
        assert snapshot.organizer_tenant_id == scenario.tenant.id
        assert snapshot.settings is not None
        assert snapshot.settings.lobby_scope == "everyone"
        assert snapshot.missing == {}
        assert snapshot.presence is not None
        assert {p.source for p in snapshot.presence} == {"attendance_report"}
        assert snapshot.chat is not None
        assert scenario.person_id("p2") in {m.sender_id for m in snapshot.chat}
        assert snapshot.recordings == []


def test_an_anonymous_joiner_is_anonymous_under_the_name_they_typed(tmp_path: Path) -> None:
    """The attendance report and call record say the joiner has no account: the collector
    believes them, and asks the directory nothing about that id."""
    lesson = dict(SCHOOL["meetings"][1])
    lesson["attendance"] = [
        *lesson["attendance"],
        {"who": "max", "intervals": [["2026-11-18T11:10:00Z", "2026-11-18T11:20:00Z"]]},
    ]
    scenario = school(
        externals=[{"key": "max", "kind": "anonymous", "name": "Max"}],
        meetings=[lesson],
        expect=[],
    )
    for running in start(scenario, tmp_path):
        _, snapshots = _poll(running)
        anonymous_id = next(
            identity_id
            for identity_id, key in running.server.external_identity_ids().items()
            if key == "max"
        )
        clean = snapshots["clean"]
        max_person = clean.people[f"anon:{anonymous_id}"]
        assert (max_person.kind, max_person.display_name) == (PersonKind.ANONYMOUS, "Max")
        assert not any(p.kind is PersonKind.EXTERNAL for p in clean.people.values())
        looked_up = [r.path for r in running.server.requests if anonymous_id in r.path]
        assert looked_up == []


def test_a_direct_calls_recordings_are_unread_not_missing(tmp_path: Path) -> None:
    """No onlineMeeting lists a direct call's recordings: the snapshot leaves them unread (None)
    without a "missing" entry, so the recording rules say they were not read rather than asking
    to check Graph permissions."""
    scenario = school(
        meetings=[],
        calls=[
            {
                "key": "call",
                "caller": "t.jones",
                "callee": "p3",
                "start": "2026-11-18T14:00:00Z",
                "end": "2026-11-18T14:10:00Z",
            }
        ],
        expect=[],
    )
    for running in start(scenario, tmp_path):
        _, snapshots = _poll(running)
        call = snapshots["call"]
        assert call.kind is SessionKind.PEER_TO_PEER
        # The caller, from the call record's organizer_v2, with the tenant it names.
        assert call.organizer_id == scenario.person_id("t.jones")
        assert call.organizer_tenant_id == scenario.tenant.id
        assert call.recordings is None
        assert Missing.RECORDINGS not in call.missing
        sessions, _ = key_maps(scenario, running.server)
        with running.poller.db() as session:
            rows = [
                row
                for row in session.scalars(
                    select(FindingRow).where(FindingRow.rule_id == "pupil_started_recording")
                )
                if sessions.get(row.session_id) == "call"
            ]
        assert [row.status for row in rows] == ["error"]
        assert "were not read" in rows[0].message
        assert "permission" not in (rows[0].next_step or "").lower()


# --- how often chats are read ---------------------------------------------------------------------


class MovableClock:
    """The scenario's now, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def chat_school(tmp_path: Path) -> Iterator[tuple[Running, MovableClock]]:
    scenario = school(
        meetings=[],
        chats=[
            {
                "key": "dm",
                "members": ["t.jones", "p4"],
                "created": "2026-11-01T09:00:00Z",
                "messages": [
                    {"at": "2026-11-18T12:00:00Z", "sender": "p4", "text": "miss?"},
                    {"at": "2026-11-18T17:30:00Z", "sender": "p4", "text": "are you there"},
                ],
            }
        ],
        expect=[],
    )
    clock = MovableClock(datetime(2026, 11, 18, 16, 0, tzinfo=UTC))
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        settings = settings_for(
            server, scenario, database_url=databases.database_url(tmp_path), clock=clock
        )
        poller = build_poller(settings, clock=clock)
        import_registers(poller, scenario, server, clock=clock)
        yield Running(server, poller, scenario), clock


def _chat_list_reads(running: Running) -> int:
    return sum(
        1
        for r in running.server.requests
        if r.path.split("?")[0].startswith("/v1.0/users/")
        and r.path.split("?")[0].endswith("/chats")
    )


def test_two_polls_an_hour_apart_read_chats_once(
    chat_school: tuple[Running, MovableClock],
) -> None:
    """Chats are read at most once a day (the default): the second poll, an hour later, does
    not list them, and the chat's stored findings stay."""
    running, clock = chat_school
    first = run_poll(running.poller)
    reads_after_first = _chat_list_reads(running)
    clock.now += timedelta(hours=1)
    second = run_poll(running.poller)

    assert (first.status, second.status) == ("ok", "ok")
    assert reads_after_first == 3  # one list per member of staff
    assert _chat_list_reads(running) == reads_after_first
    assert (first.counts["chat_scans"], second.counts["chat_scans"]) == (1, 0)
    with running.poller.db() as session:
        statuses = list(
            session.scalars(
                select(FindingRow.status).where(FindingRow.rule_id == "direct_chat_with_pupil")
            )
        )
    assert statuses
    assert set(statuses) <= {"fail", "warn"}


def test_the_next_chat_read_covers_everything_since_the_last(
    chat_school: tuple[Running, MovableClock],
) -> None:
    """A day later the chats are read again, from the last read on: the message posted in
    between is in the chat's session."""
    running, clock = chat_school
    # A look-back of one hour: only "since the last read" reaches the 17:30 message a day later.
    settings = running.poller.settings
    running.poller.settings = settings.model_copy(
        update={"poll": settings.poll.model_copy(update={"lookback_hours": 1})}
    )
    run_poll(running.poller)
    clock.now += timedelta(hours=24)
    later = run_poll(running.poller)

    assert later.counts["chat_scans"] == 1
    _, snapshots = _poll(running)
    messages = [m.created.isoformat() for m in snapshots["dm"].chat or []]
    assert "2026-11-18T17:30:00+00:00" in messages


def test_a_partial_chat_read_is_retried_on_the_next_poll(
    chat_school: tuple[Running, MovableClock],
) -> None:
    """If a staff member's chats could not be listed, the read was not complete: the next poll
    reads chats again rather than waiting a day."""
    running, clock = chat_school
    running.server.state.inject(r"/users/[^/]+/chats", status=403, count=1)
    first = run_poll(running.poller)
    clock.now += timedelta(hours=1)
    second = run_poll(running.poller)

    assert first.status == "partial"
    assert (first.counts["chat_scans"], second.counts["chat_scans"]) == (0, 1)
