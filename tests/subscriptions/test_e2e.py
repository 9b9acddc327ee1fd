"""Change notifications end to end: the fake tenant posts real HTTPS notifications, exactly as
Graph shapes them, to remote_guard's receiver; the worker reads, stores, judges and alerts.

No timing is asserted: each test waits (with a bound) for the outcome and fails naming it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from remote_guard.findings.models import FindingRow
from remote_guard.graph.permissions import call_for
from remote_guard.poll.models import PollRunRow
from remote_guard.poll.service import run_poll
from remote_guard.subscriptions.models import (
    LiveAlertRow,
    LiveParticipantRow,
    SubscriptionKind,
    SubscriptionRow,
)
from tests.subscriptions.conftest import (
    VALID_REGISTRATION,
    LiveRun,
    school,
    start_live,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.database]

BREACH = ("fail", "warn")


def _poll_runs(run: LiveRun) -> int:
    with run.poller.db() as db:
        return int(db.scalar(select(func.count()).select_from(PollRunRow)) or 0)


def _open(run: LiveRun, rule_id: str, meeting: str, subject: str) -> FindingRow | None:
    return next(
        (
            row
            for row in run.findings(rule_id, meeting)
            if row.subject_key == subject and row.status in BREACH
        ),
        None,
    )


def _alerts(run: LiveRun, meeting: str, status: str = "open") -> list[LiveAlertRow]:
    with run.poller.db() as db:
        return list(
            db.scalars(
                select(LiveAlertRow).where(
                    LiveAlertRow.session_id == run.session_id(meeting),
                    LiveAlertRow.status == status,
                )
            )
        )


def _stays(run: LiveRun, meeting: str) -> list[LiveParticipantRow]:
    with run.poller.db() as db:
        return list(
            db.scalars(
                select(LiveParticipantRow).where(
                    LiveParticipantRow.session_id == run.session_id(meeting)
                )
            )
        )


def _subscription(run: LiveRun, kind: SubscriptionKind) -> SubscriptionRow:
    with run.poller.db() as db:
        row = db.scalars(select(SubscriptionRow).where(SubscriptionRow.kind == kind.value)).first()
    assert row is not None, f"no {kind.value} subscription"
    return row


# --- the meeting chat ----------------------------------------------------------------------------


def test_pupil_chat_in_a_live_lesson_is_found_before_the_next_poll(running: LiveRun) -> None:
    """A pupil writes in the live lesson's chat: the pupil-chat finding is stored from the
    notification, with no poll cycle in between."""
    running.setup()
    runs = _poll_runs(running)
    pupil = running.person_id("p2")

    running.live.post("lesson", "p2", "hi miss")

    finding = wait_for(
        lambda: _open(running, "pupil_meeting_chat", "lesson", pupil),
        what="the pupil_meeting_chat finding for p2",
    )
    assert finding.observed == "1 message in the meeting chat"
    assert _poll_runs(running) == runs


def test_staff_message_records_nothing(running: LiveRun) -> None:
    """The teacher's own message is read, recognised as staff, and leaves no finding."""
    running.setup()
    running.live.post("lesson", "t.jones", "Open page 12")
    wait_for(
        lambda: running.handled("not a pupil's message"),
        what="the teacher's message to be handled",
    )
    assert [
        row for row in running.findings("pupil_meeting_chat", "lesson") if row.status in BREACH
    ] == []


def test_a_poll_during_the_lesson_keeps_the_live_finding_and_the_poll_after_confirms_it(
    running: LiveRun,
) -> None:
    """A poll while the lesson is still on (it reads the chat only after the end) keeps what the
    notification found; the poll after the lesson reads the chat itself and confirms it."""
    running.setup()
    pupil = running.person_id("p1")
    running.live.post("lesson", "p1", "can I go")
    wait_for(lambda: _open(running, "pupil_meeting_chat", "lesson", pupil), what="the live finding")

    assert run_poll(running.poller).status == "ok"
    assert _open(running, "pupil_meeting_chat", "lesson", pupil) is not None

    running.clock.shift(minutes=45)  # the lesson is over; its chat is read
    assert run_poll(running.poller).status == "ok"
    confirmed = _open(running, "pupil_meeting_chat", "lesson", pupil)
    assert confirmed is not None
    assert confirmed.sources == ["chat"]


def test_a_lost_notification_is_caught_by_the_poll_after_the_lesson(running: LiveRun) -> None:
    """Graph loses the notification of the pupil's message; nothing is found live, and the
    poll after the lesson finds it from the chat."""
    running.setup()
    pupil = running.person_id("p3")
    running.live.notifier.drop_next(1)
    running.live.post("lesson", "p3", "hello")
    wait_for(lambda: running.live.notifier.dropped, what="the notification to be lost")
    assert _open(running, "pupil_meeting_chat", "lesson", pupil) is None

    running.clock.shift(minutes=45)
    assert run_poll(running.poller).status == "ok"

    assert _open(running, "pupil_meeting_chat", "lesson", pupil) is not None


def test_missed_lifecycle_event_reads_the_chat_once(running: LiveRun) -> None:
    """Graph says notifications were missed: the chat is read once and the pupil's message
    found, without waiting for the lesson to end."""
    running.setup()
    pupil = running.person_id("p2")
    running.live.notifier.drop_next(1)
    running.live.post("lesson", "p2", "lost message")
    wait_for(lambda: running.live.notifier.dropped, what="the notification to be lost")
    chat = _subscription(running, SubscriptionKind.MEETING_CHAT)

    running.live.lifecycle(chat.graph_id or "", "missed")

    wait_for(
        lambda: _open(running, "pupil_meeting_chat", "lesson", pupil),
        what="the finding from the catch-up read",
    )


def test_removed_subscription_is_recreated_and_works(running: LiveRun) -> None:
    """Graph removes the chat subscription: remote_guard subscribes again at once, and the next
    pupil message arrives through the new subscription."""
    running.setup()
    before = _subscription(running, SubscriptionKind.MEETING_CHAT)

    running.live.lifecycle(before.graph_id or "", "subscriptionRemoved")

    after = wait_for(
        lambda: (
            row
            if (row := _subscription(running, SubscriptionKind.MEETING_CHAT)).graph_id
            not in (None, before.graph_id)
            and row.status == "active"
            else None
        ),
        what="the chat subscription to be recreated",
    )
    assert [s.id for s in running.live.subscriptions("/chats/")] == [after.graph_id]
    pupil = running.person_id("p1")
    running.live.post("lesson", "p1", "after the removal")
    wait_for(
        lambda: _open(running, "pupil_meeting_chat", "lesson", pupil),
        what="the finding through the new subscription",
    )


# --- the live roster (beta, opt-in) --------------------------------------------------------------


def _start_group(run: LiveRun) -> None:
    """Mr Patel admits p4 and p5 together (one roster update, so nobody is alone a moment)."""
    with run.live.together():
        for who in ("t.patel", "p4", "p5"):
            run.live.join("group", who)
    wait_for(
        lambda: len([s for s in _stays(run, "group") if s.left_at is None]) == 3,
        what="the three to be in the live roster",
    )


def test_teacher_left_alone_with_a_pupil_raises_a_live_alert_to_slt(tmp_path: Path) -> None:
    """p5 leaves the live group: Mr Patel is alone with p4, who has no registration. An alert is
    stored with the meeting's join link and mailed to SLT; p5 coming back clears it."""
    run_iter = start_live(school(), tmp_path, notify=True)
    run = next(run_iter)
    try:
        run.setup()
        _start_group(run)
        assert _alerts(run, "group") == []

        run.live.leave("group", "p5")

        alert = wait_for(lambda: next(iter(_alerts(run, "group")), None), what="the live alert")
        assert alert.staff_id == run.person_id("t.patel")
        assert alert.pupil_id == run.person_id("p4")
        assert alert.join_url == run.server.join_url("group")
        mail = wait_for(
            lambda: next(
                (m for m in run.server.state.sent_mail if "alone with a pupil" in m.subject),
                None,
            ),
            what="the e-mail to SLT",
        )
        head = run.server.state.identities["h.head"]
        assert mail.to == (head.email,)
        assert run.server.join_url("group") in mail.content
        assert "Pupil 4" not in mail.content
        assert "Mr Patel" not in mail.content

        run.live.join("group", "p5")
        wait_for(lambda: _alerts(run, "group", "cleared"), what="the alert to clear")
        assert _alerts(run, "group") == []
    finally:
        run_iter.close()


def test_no_alert_when_a_valid_registration_covers_the_pair(tmp_path: Path) -> None:
    """With an approved, consented registration for Mr Patel and p4, the same roster raises
    nothing."""
    run_iter = start_live(school(registrations=[VALID_REGISTRATION]), tmp_path)
    run = next(run_iter)
    try:
        run.setup()
        _start_group(run)
        run.live.leave("group", "p5")
        wait_for(
            lambda: [s for s in _stays(run, "group") if s.left_at is not None],
            what="p5's leaving to be in the live roster",
        )
        wait_for(lambda: run.hub.worker.idle() or None, what="the worker to finish")

        assert _alerts(run, "group") == []
        assert _alerts(run, "group", "cleared") == []
    finally:
        run_iter.close()


def test_unknown_joiner_is_flagged_while_the_lesson_is_on(running: LiveRun) -> None:
    """An anonymous joiner comes into the live lesson with pupils: flagged from the roster at
    once, as the rule does after the meeting."""
    running.setup()
    with running.live.together():
        for who in ("t.jones", "p1", "p2"):
            running.live.join("lesson", who)
    running.live.join("lesson", "visitor")
    visitor = f"anon:{running.person_id('visitor')}"

    finding = wait_for(
        lambda: _open(running, "outsider_in_pupil_session", "lesson", visitor),
        what="the outsider finding for the anonymous joiner",
    )
    assert "roster_event" in " ".join(finding.sources) or finding.sources


def test_call_record_asks_for_a_poll_now(running: LiveRun) -> None:
    """The lesson's call ends and its record appears: the poller is asked for a cycle now."""
    running.setup()
    with running.live.together():
        for who in ("t.jones", "p1"):
            running.live.join("lesson", who)
    asked = running.hub.waker.requested

    running.live.end_call("lesson")

    wait_for(lambda: running.hub.waker.requested > asked, what="a poll to be asked for")
    assert running.hub.waker.due() is True


def test_every_call_of_the_notification_flow_is_in_the_permission_table(
    running: LiveRun,
) -> None:
    """Subscribing, reading the notified message, the roster and the catch-up read use only
    calls listed with their least permission."""
    running.setup()
    with running.live.together():
        for who in ("t.jones", "p1"):
            running.live.join("lesson", who)
    running.live.post("lesson", "p1", "hello")
    pupil = running.person_id("p1")
    wait_for(lambda: _open(running, "pupil_meeting_chat", "lesson", pupil), what="the finding")
    chat = _subscription(running, SubscriptionKind.MEETING_CHAT)
    running.live.lifecycle(chat.graph_id or "", "missed")
    wait_for(
        lambda: running.handled("missed: the chat read once"),
        what="the catch-up read",
    )
    graph = [r for r in running.server.requests if r.path.startswith(("/v1.0/", "/beta/"))]
    assert any(r.path.startswith("/beta/subscriptions") for r in graph)
    assert any("/messages/" in r.path for r in graph)
    unlisted = {
        (r.method, r.path.split("?")[0]) for r in graph if call_for(r.method, r.path) is None
    }
    assert unlisted == set()


def test_a_calendar_change_asks_for_a_poll_now(tmp_path: Path) -> None:
    """With staff calendars subscribed, a lesson moved in Outlook asks the poller for a cycle
    at once (the poll reads what changed)."""
    run_iter = start_live(
        school(), tmp_path, resources=("call_records", "meeting_chats", "calendars")
    )
    run = next(run_iter)
    try:
        run.setup()
        staff = {run.person_id(key) for key in ("t.jones", "t.patel", "h.head", "it")}
        assert {s.target for s in run.live.subscriptions("/events")} == staff
        asked = run.hub.waker.requested

        run.server.state.update_meeting("lesson", subject="Year 4 reading (moved)")

        wait_for(lambda: run.hub.waker.requested > asked, what="a poll to be asked for")
        assert run.handled("poll requested: a staff calendar changed")
    finally:
        run_iter.close()
