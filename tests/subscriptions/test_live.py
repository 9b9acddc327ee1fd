"""The live state: the roster in whatever order its events arrive, and the overlay that adds
what notifications said to a snapshot without overriding what the poll read itself."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import ChatActivity, Interval, Person, PersonKind, Presence
from remote_guard.subscriptions.live import CHAT_SOURCE, Exited, Joined, apply_overlay
from tests.subscriptions.conftest import LiveRun

pytestmark = pytest.mark.e2e


def _person(run: LiveRun, key: str, kind: PersonKind) -> Person:
    identity = run.server.state.identities[key]
    return Person(id=identity.id, display_name=identity.display_name, kind=kind)


def test_joins_arriving_before_call_started_belong_to_the_call(running: LiveRun) -> None:
    """Graph's notifications may come out of order: the roster update, then the CallStarted
    that came first. The stays still count as followed from the call's start."""
    running.setup()
    session = running.session_id("lesson")
    start = running.clock()
    teacher = _person(running, "t.jones", PersonKind.STAFF)
    pupil = _person(running, "p1", PersonKind.PUPIL)

    running.hub.live.roster_update(
        session_id=session,
        join_url=None,
        joined=[Joined("a", teacher, start), Joined("b", pupil, start)],
        exited=[],
        now=start,
    )
    running.hub.live.call_started(session_id=session, join_url=None, at=start, now=start)

    complete, present = running.hub.live.present(session)
    assert complete is True
    assert {person.id for person in present} == {teacher.id, pupil.id}
    snapshot = running.hub.live.snapshot(session)
    assert snapshot is not None
    with running.poller.db() as db:
        apply_overlay(db, snapshot)
    assert snapshot.presence is not None
    assert {p.person_id for p in snapshot.presence} == {teacher.id, pupil.id}


def test_a_leave_arriving_before_its_join_closes_the_stay(running: LiveRun) -> None:
    running.setup()
    session = running.session_id("lesson")
    start = running.clock()
    pupil = _person(running, "p2", PersonKind.PUPIL)
    live = running.hub.live
    live.call_started(session_id=session, join_url=None, at=start, now=start)

    later = start + timedelta(seconds=30)
    live.roster_update(
        session_id=session,
        join_url=None,
        joined=[],
        exited=[Exited("p", pupil.id, later)],
        now=later,
    )
    live.roster_update(
        session_id=session, join_url=None, joined=[Joined("p", pupil, start)], exited=[], now=later
    )

    complete, present = live.present(session)
    assert complete is True
    assert present == []
    snapshot = live.snapshot(session)
    assert snapshot is not None
    with running.poller.db() as db:
        apply_overlay(db, snapshot)
    assert snapshot.presence == [
        Presence(
            person_id=pupil.id, intervals=[Interval(start=start, end=later)], source="roster_event"
        )
    ]
    assert snapshot.people[pupil.id].kind is PersonKind.PUPIL


def test_a_repeated_join_is_one_stay(running: LiveRun) -> None:
    running.setup()
    session = running.session_id("lesson")
    start = running.clock()
    pupil = _person(running, "p3", PersonKind.PUPIL)
    live = running.hub.live
    live.call_started(session_id=session, join_url=None, at=start, now=start)
    for _ in range(3):
        live.roster_update(
            session_id=session,
            join_url=None,
            joined=[Joined("x", pupil, start)],
            exited=[],
            now=start,
        )
    assert [p.id for p in live.present(session)[1]] == [pupil.id]


def test_the_overlay_never_replaces_what_the_poll_read(running: LiveRun) -> None:
    """Once the poll has read the chat and the attendance itself, the overlay keeps them: only a
    pupil's message the poll's read did not include is added, and the roster is not used."""
    running.setup()
    session = running.session_id("lesson")
    now = running.clock()
    live = running.hub.live
    pupil = _person(running, "p1", PersonKind.PUPIL)
    live.record_chat_message(
        session_id=session, message_id="m-live", thread_id="t", sender=pupil, created=now, now=now
    )
    live.call_started(session_id=session, join_url=None, at=now, now=now)
    live.roster_update(
        session_id=session, join_url=None, joined=[Joined("x", pupil, now)], exited=[], now=now
    )
    snapshot = live.snapshot(session)
    assert snapshot is not None
    read = ChatActivity(message_id="m-read", created=now, sender_kind="person", sender_id=pupil.id)
    attendance = Presence(
        person_id=pupil.id,
        intervals=[Interval(start=now - timedelta(minutes=5), end=now)],
        source="attendance_report",
    )
    snapshot.chat = [read]
    snapshot.presence = [attendance]
    snapshot.sources.update(chat="/chats/x/messages", presence="attendance")

    with running.poller.db() as db:
        assert apply_overlay(db, snapshot) is True

    assert [item.message_id for item in snapshot.chat] == ["m-live", "m-read"]
    assert snapshot.sources["chat"] == "/chats/x/messages"
    assert snapshot.presence == [attendance]

    with running.poller.db() as db:
        assert apply_overlay(db, snapshot) is False  # nothing more to add


def test_the_overlay_gives_a_live_snapshot_the_chat_it_lacks(running: LiveRun) -> None:
    running.setup()
    session = running.session_id("lesson")
    now = running.clock()
    pupil = _person(running, "p2", PersonKind.PUPIL)
    running.hub.live.record_chat_message(
        session_id=session, message_id="m1", thread_id="t", sender=pupil, created=now, now=now
    )
    snapshot = running.hub.live.snapshot(session)
    assert snapshot is not None
    assert snapshot.chat is None

    with running.poller.db() as db:
        apply_overlay(db, snapshot)

    assert [(c.message_id, c.sender_id) for c in snapshot.chat or []] == [("m1", pupil.id)]
    assert snapshot.sources["chat"] == CHAT_SOURCE
