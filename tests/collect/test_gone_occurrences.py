"""A call on a recurring meeting's link whose occurrence was stored, then deleted from the calendar.

The collector is told which occurrences earlier polls stored (``stored_occurrences``); a call at
the time of one that no calendar has any more belongs to that stored session, never to a new one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from remote_guard.collect.collector import (
    Collected,
    Collector,
    StoredOccurrence,
    session_id_for_join_url,
)
from remote_guard.graph.client import GraphClient
from tests.collect.test_collector_seam import (
    NOW,
    PUPIL,
    TEACHER,
    TENANT,
    WINDOW_START,
    ScriptedGraph,
    _directory,
    _settings,
)

URL = (
    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_bookclub%40thread.v2/0"
    f"?context=%7b%22Tid%22%3a%22{TENANT}%22%2c%22Oid%22%3a%22{TEACHER}%22%7d"
)
START = datetime(2026, 11, 18, 14, 30, tzinfo=UTC)
# The teacher opened the lesson two minutes early, so its call's start is not the occurrence's.
CALL_START = START - timedelta(minutes=2)
OCCURRENCE = StoredOccurrence(
    session_id=session_id_for_join_url(URL, START),
    join_url=URL,
    start=START,
    end=START + timedelta(minutes=30),
    call_record_ids=frozenset({"rec-181428"}),
)


def _participant(user_id: str, name: str) -> dict[str, Any]:
    return {
        "id": user_id,
        "identity": {
            "user": {
                "@odata.type": "#microsoft.graph.userIdentity",
                "id": user_id,
                "displayName": name,
                "tenantId": TENANT,
            }
        },
    }


def _call(started: datetime) -> dict[str, Any]:
    """A call record on the series' link (its id tells its start: rec-DDHHMM)."""
    return {
        "id": f"rec-{started:%d%H%M}",
        "version": 1,
        "type": "groupCall",
        "modalities": ["audio", "video"],
        "startDateTime": started.isoformat().replace("+00:00", "Z"),
        "endDateTime": (started + timedelta(minutes=32)).isoformat().replace("+00:00", "Z"),
        "joinWebUrl": URL,
        "organizer_v2": _participant(TEACHER, "Mrs Jones"),
        "participants_v2": [_participant(TEACHER, "Mrs Jones"), _participant(PUPIL, "Amelia K.")],
    }


def _collect(
    *,
    calls: list[dict[str, Any]],
    skip: set[str],
    stored: list[StoredOccurrence],
    mailboxes: Any = None,
) -> tuple[list[Collected], ScriptedGraph]:
    """One collection with no event on any calendar (the occurrence was deleted)."""
    graph = ScriptedGraph({"/communications/callRecords": [calls]})
    collector = Collector(
        graph=cast(GraphClient, graph),
        settings=_settings(),
        directory=_directory(),
        clock=lambda: NOW,
        mailboxes=mailboxes,
        stored_occurrences=stored,
    )
    collected = list(
        collector.collect(
            window_start=WINDOW_START,
            window_end=NOW + timedelta(days=7),
            skip=skip,
            read_chats=False,
        )
    )
    return collected, graph


def _meeting_reads(graph: ScriptedGraph) -> list[str]:
    return [path for path, _ in graph.asked if "/onlineMeetings" in path]


def test_a_call_of_a_deleted_occurrence_read_in_full_is_not_read_again() -> None:
    """The occurrence was stored as final (it is in ``skip``), read with this call: the call is
    that session's, so nothing is read and no second session is made of it."""
    collected, graph = _collect(
        calls=[_call(CALL_START)],
        skip={OCCURRENCE.session_id},
        stored=[OCCURRENCE],
    )

    assert [c.snapshot.session_id for c in collected] == []
    assert _meeting_reads(graph) == []


def test_a_call_of_a_deleted_occurrence_not_yet_final_keeps_its_session_id() -> None:
    """Stored but not read in full: read from its call, under the stored session's id."""
    collected, _ = _collect(calls=[_call(CALL_START)], skip=set(), stored=[OCCURRENCE])

    assert [c.snapshot.session_id for c in collected] == [OCCURRENCE.session_id]
    assert set(collected[0].snapshot.people) >= {TEACHER, PUPIL}


def test_a_later_call_a_session_read_in_full_was_not_read_with_is_still_read() -> None:
    """Forty minutes after the lesson ended (near it, but not a call it was read with) the
    link is used again: that call is read as a session of its own, never dropped unread."""
    later = CALL_START + timedelta(hours=1, minutes=10)

    collected, _ = _collect(calls=[_call(later)], skip={OCCURRENCE.session_id}, stored=[OCCURRENCE])

    assert [c.snapshot.session_id for c in collected] == [session_id_for_join_url(URL)]


def test_a_call_away_from_every_stored_occurrence_is_a_session_of_its_own() -> None:
    """A day before the stored occurrence (beyond OCCURRENCE_SLACK): not that session."""
    collected, _ = _collect(
        calls=[_call(START - timedelta(days=1, hours=4))],
        skip={OCCURRENCE.session_id},
        stored=[OCCURRENCE],
    )

    assert len(collected) == 1
    assert collected[0].snapshot.session_id != OCCURRENCE.session_id


def test_a_run_reading_some_calendars_leaves_a_stored_occurrence_to_the_others() -> None:
    """A run that reads only some staff members' calendars cannot tell a deleted occurrence
    from one on a calendar it does not read: it does not read the stored session from the call
    (the run whose calendars hold it does), though one read in full is still left alone."""
    mine = [TEACHER]

    unread, _ = _collect(
        calls=[_call(CALL_START)],
        skip=set(),
        stored=[OCCURRENCE],
        mailboxes=mine.__contains__,
    )
    final, _ = _collect(
        calls=[_call(CALL_START)],
        skip={OCCURRENCE.session_id},
        stored=[OCCURRENCE],
        mailboxes=mine.__contains__,
    )

    assert OCCURRENCE.session_id not in [c.snapshot.session_id for c in unread]
    assert final == []
