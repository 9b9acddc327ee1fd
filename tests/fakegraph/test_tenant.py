"""The tenant state on its own: sessions, visibility, calendar copies, determinism."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from remote_guard.fakegraph.scenario import parse_scenario
from remote_guard.fakegraph.tenant import Presence, TenantState

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)

BASE: dict[str, Any] = {
    "name": "tenant-tests",
    "now": "2026-11-18T12:00:00Z",
    "people": [
        {"key": "teacher", "name": "Tess Teacher", "kind": "staff"},
        {"key": "pupil", "name": "Pip Pupil", "kind": "pupil"},
    ],
    "externals": [
        {"key": "other_head", "kind": "external", "name": "Olive Other", "tenant_id": "22222222-3333-4444-5555-666666666666", "email": "olive@other.example"},
    ],
}  # fmt: skip


def state_with(*meetings: dict[str, Any]) -> TenantState:
    scenario = parse_scenario({**BASE, "meetings": list(meetings)}, source="test")
    return TenantState(scenario, clock=lambda: NOW)


def lesson(**changes: Any) -> dict[str, Any]:
    return {
        "key": "lesson",
        "subject": "Reading",
        "organizer": "teacher",
        "start": "2026-11-17T10:00:00Z",
        "end": "2026-11-17T11:00:00Z",
        "invitees": ["pupil"],
        **changes,
    }


def test_a_gap_with_nobody_present_splits_the_meeting_into_two_sessions() -> None:
    """Each stretch with someone present is its own call: its own record and report."""
    state = state_with(
        lesson(
            attendance=[
                {"who": "teacher", "intervals": [["2026-11-17T10:00:00Z", "2026-11-17T10:20:00Z"], ["2026-11-17T10:40:00Z", "2026-11-17T11:00:00Z"]]},
                {"who": "pupil", "intervals": [["2026-11-17T10:05:00Z", "2026-11-17T10:15:00Z"], ["2026-11-17T10:45:00Z", "2026-11-17T10:50:00Z"]]},
            ]
        )
    )  # fmt: skip

    sessions = state.meetings["lesson"].sessions

    assert [(s.start.isoformat(), s.end.isoformat(), len(s.presences)) for s in sessions] == [
        ("2026-11-17T10:00:00+00:00", "2026-11-17T10:20:00+00:00", 2),
        ("2026-11-17T10:40:00+00:00", "2026-11-17T11:00:00+00:00", 2),
    ]
    assert len({s.id for s in sessions}) == 2
    assert len({s.report_id for s in sessions}) == 2


def test_presence_is_cut_at_now() -> None:
    """An interval still open at "now" ends at now; joins after now are not known yet."""
    state = state_with(lesson())
    teacher = state.identities["teacher"]
    presence = Presence(
        teacher,
        (
            (datetime(2026, 11, 18, 11, 0, tzinfo=UTC), datetime(2026, 11, 18, 13, 0, tzinfo=UTC)),
            (datetime(2026, 11, 18, 12, 30, tzinfo=UTC), datetime(2026, 11, 18, 13, 0, tzinfo=UTC)),
        ),
    )

    clipped = presence.clipped(NOW)

    assert clipped is not None
    assert clipped.intervals == ((datetime(2026, 11, 18, 11, 0, tzinfo=UTC), NOW),)


def test_a_meeting_organised_elsewhere_is_only_on_the_invitees_calendar() -> None:
    """An external organiser's meeting is on the pupil's calendar but not hosted here."""
    state = state_with(lesson(organizer="other_head"))
    meeting = state.meetings["lesson"]
    pupil_id = state.identities["pupil"].id

    copies = list(state.calendars[pupil_id].values())

    assert meeting.hosted_here is False
    assert meeting.online_meeting_id is None
    assert meeting.join_url is not None
    assert meeting.join_url.endswith(
        "context=%7b%22Tid%22%3a%2222222222-3333-4444-5555-666666666666%22%2c%22Oid%22%3a%22"
        + state.identities["other_head"].id
        + "%22%7d"
    )
    assert [(c.organizer.address, c.is_organizer) for c in copies] == [
        ("olive@other.example", False)
    ]
    assert state.meeting_by_join_url(meeting.join_url) is None
    assert meeting.sessions == ()


def test_a_cancelled_meeting_is_marked_on_every_copy() -> None:
    """isCancelled everywhere; attendees see Outlook's "Canceled: " subject prefix."""
    state = state_with(lesson(cancelled=True))
    teacher_id, pupil_id = state.identities["teacher"].id, state.identities["pupil"].id

    teacher_copy = next(iter(state.calendars[teacher_id].values()))
    pupil_copy = next(iter(state.calendars[pupil_id].values()))

    assert (teacher_copy.is_cancelled, teacher_copy.subject) == (True, "Reading")
    assert (pupil_copy.is_cancelled, pupil_copy.subject) == (True, "Canceled: Reading")


def test_the_same_scenario_gives_the_same_ids() -> None:
    """Ids and join URLs are a pure function of the scenario, so runs agree."""
    first, second = state_with(lesson()), state_with(lesson())

    assert first.meetings["lesson"].join_url == second.meetings["lesson"].join_url
    assert first.meetings["lesson"].online_meeting_id == second.meetings["lesson"].online_meeting_id
    assert sorted(first.calendars[first.identities["pupil"].id]) == sorted(
        second.calendars[second.identities["pupil"].id]
    )


def test_relative_times_follow_the_clock_when_the_scenario_has_no_now() -> None:
    """Without a fixed "now", time expressions resolve against the tenant's clock."""
    scenario = parse_scenario(
        {
            **{k: v for k, v in BASE.items() if k != "now"},
            "meetings": [lesson(start="now-1h", end="now")],
        },
        source="test",
    )

    state = TenantState(scenario, clock=lambda: NOW)

    assert state.meetings["lesson"].start == datetime(2026, 11, 18, 11, 0, tzinfo=UTC)
