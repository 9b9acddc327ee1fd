"""Contact with pupils outside the school day, on the school's clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from remote_guard.collect.snapshot import (
    ChatActivity,
    Interval,
    Presence,
    SessionKind,
    SessionSnapshot,
)
from remote_guard.rules.base import RuleContext, SchoolDay, Verdict
from remote_guard.rules.outside_school_hours import RULE, Params
from tests.rules.factory import COTEACHER, PUPIL, PUPIL2, TEACHER, presence

EVERY_DAY = frozenset(range(1, 8))
SCHOOL_DAY = SchoolDay(
    timezone="Europe/London",
    start=time(9, 0),
    end=time(15, 30),
    weekdays=frozenset({1, 2, 3, 4, 5}),
)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _context(
    now: datetime, day: SchoolDay | None = SCHOOL_DAY, grace_minutes: int = 0
) -> RuleContext:
    return RuleContext(
        now=now, tenant_id="t", school_day=day, params=Params(grace_minutes=grace_minutes)
    )


def _schedule(snapshot: SessionSnapshot, start: str, end: str) -> SessionSnapshot:
    """Move the lesson to ``start``-``end`` (UTC), with everyone present throughout."""
    snapshot.scheduled_start, snapshot.scheduled_end = _utc(start), _utc(end)
    snapshot.presence = [
        Presence(
            person_id=person.id,
            intervals=[Interval(start=_utc(start), end=_utc(end))],
            source="attendance_report",
        )
        for person in (TEACHER, PUPIL, PUPIL2)
    ]
    snapshot.collected_at = _utc(end) + timedelta(hours=1)
    return snapshot


def _evaluate(snapshot: SessionSnapshot, **kwargs: object) -> list[tuple[str, str]]:
    now = kwargs.pop("now", snapshot.collected_at)
    context = _context(now, **kwargs)  # type: ignore[arg-type]
    return [(o.verdict.value, o.observed) for o in RULE.evaluate(snapshot, context)]


def test_lesson_in_the_school_day_is_ok(lesson: SessionSnapshot) -> None:
    """Wednesday 10:00-10:30 in November (GMT) is within 09:00-15:30."""
    assert _evaluate(lesson) == [("ok", "within the school day")]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # 29 March 2026: BST from 01:00 GMT, so 08:59 local is 07:59 UTC.
        ("2026-03-29T07:59:00", "2026-03-29T08:30:00", [("breach", "before the school day")]),
        ("2026-03-29T08:00:00", "2026-03-29T14:30:00", [("ok", "within the school day")]),
        ("2026-03-29T14:00:00", "2026-03-29T14:31:00", [("breach", "after the school day")]),
        # 25 October 2026: back to GMT at 02:00 BST, so local time is UTC again.
        ("2026-10-25T08:59:00", "2026-10-25T09:30:00", [("breach", "before the school day")]),
        ("2026-10-25T09:00:00", "2026-10-25T15:30:00", [("ok", "within the school day")]),
    ],
)
def test_daylight_saving_days_use_the_schools_clock(
    lesson: SessionSnapshot, start: str, end: str, expected: list[tuple[str, str]]
) -> None:
    """The clock-change Sundays, in a school week that includes Sunday so the hour is tested."""
    _schedule(lesson, start, end)
    day = SchoolDay("Europe/London", time(9, 0), time(15, 30), EVERY_DAY)
    assert _evaluate(lesson, day=day) == expected


def test_breach_message_names_the_local_times(lesson: SessionSnapshot) -> None:
    """The finding reads on the school's clock, not UTC."""
    _schedule(lesson, "2026-03-29T07:59:00", "2026-03-29T08:30:00")
    day = SchoolDay("Europe/London", time(9, 0), time(15, 30), EVERY_DAY)
    (outcome,) = RULE.evaluate(lesson, _context(lesson.collected_at, day))
    assert outcome.message == (
        "Ms Teacher's \u201cYear 3 maths\u201d with 2 pupils took place Sun 29 Mar 08:59-09:30, "
        "before the school day (school day 09:00-15:30, every day)."
    )
    assert outcome.evidence["local_start"] == "2026-03-29T08:59:00+01:00"
    assert outcome.subject_key == ""


def test_weekend_lesson_is_a_breach(lesson: SessionSnapshot) -> None:
    """Saturday morning is not a school day, whatever the hour."""
    _schedule(lesson, "2026-11-21T10:00:00", "2026-11-21T10:30:00")
    assert _evaluate(lesson) == [("breach", "at the weekend")]


def test_outside_term_is_a_breach(lesson: SessionSnapshot) -> None:
    """Half-term week falls between the terms."""
    day = SchoolDay(
        "Europe/London",
        time(9, 0),
        time(15, 30),
        frozenset({1, 2, 3, 4, 5}),
        terms=((date(2026, 9, 3), date(2026, 10, 23)), (date(2026, 11, 2), date(2026, 12, 18))),
    )
    _schedule(lesson, "2026-10-28T10:00:00", "2026-10-28T10:30:00")
    assert _evaluate(lesson, day=day) == [("breach", "outside term")]
    _schedule(lesson, "2026-11-02T10:00:00", "2026-11-02T10:30:00")
    assert _evaluate(lesson, day=day) == [("ok", "within the school day")]


@pytest.mark.parametrize(("grace", "verdict"), [(0, "breach"), (4, "breach"), (5, "ok")])
def test_grace_minutes_widen_the_day(lesson: SessionSnapshot, grace: int, verdict: str) -> None:
    """A lesson ending at 15:35 passes with five minutes' grace."""
    _schedule(lesson, "2026-11-18T15:00:00", "2026-11-18T15:35:00")
    ((got, _),) = _evaluate(lesson, grace_minutes=grace)
    assert got == verdict


def test_teacher_joining_early_does_not_count(lesson: SessionSnapshot) -> None:
    """An ended lesson is judged by when pupils were in it, not by the teacher's set-up."""
    _schedule(lesson, "2026-11-18T09:00:00", "2026-11-18T09:30:00")
    lesson.presence = [
        Presence(
            person_id=TEACHER.id,
            intervals=[
                Interval(start=_utc("2026-11-18T08:50:00"), end=_utc("2026-11-18T09:31:00"))
            ],
            source="attendance_report",
        ),
        Presence(
            person_id=PUPIL.id,
            intervals=[
                Interval(start=_utc("2026-11-18T09:00:00"), end=_utc("2026-11-18T09:30:00"))
            ],
            source="attendance_report",
        ),
    ]
    lesson.actual_start = _utc("2026-11-18T08:50:00")
    lesson.actual_end = _utc("2026-11-18T09:31:00")
    assert _evaluate(lesson) == [("ok", "within the school day")]


def test_ended_session_without_attendance_uses_the_actual_times(lesson: SessionSnapshot) -> None:
    """Scheduled 15:00-15:30 but the call ran to 15:45."""
    _schedule(lesson, "2026-11-18T15:00:00", "2026-11-18T15:30:00")
    lesson.presence = None
    lesson.actual_start = _utc("2026-11-18T15:00:00")
    lesson.actual_end = _utc("2026-11-18T15:45:00")
    assert _evaluate(lesson) == [("breach", "after the school day")]


def test_upcoming_session_is_warned_about_from_the_calendar(lesson: SessionSnapshot) -> None:
    """A lesson planned for Saturday gets its finding before it happens."""
    _schedule(lesson, "2026-11-21T10:00:00", "2026-11-21T10:30:00")
    lesson.presence = None
    (outcome,) = RULE.evaluate(lesson, _context(_utc("2026-11-18T16:00:00")))
    assert outcome.verdict is Verdict.BREACH
    assert "is planned for Sat 21 Nov 10:00-10:30, at the weekend" in outcome.message
    assert outcome.sources == ("calendar",)


def test_no_school_day_configured_is_unknown(lesson: SessionSnapshot) -> None:
    """Without the school day nothing can be said: UNKNOWN, never OK."""
    assert _evaluate(lesson, day=None) == [("unknown", "school day not configured")]


def test_staff_only_meeting_is_not_applicable(lesson: SessionSnapshot) -> None:
    """A staff meeting at 18:00 is not contact with pupils."""
    _schedule(lesson, "2026-11-18T18:00:00", "2026-11-18T18:30:00")
    lesson.invitee_ids = [COTEACHER.id]
    lesson.presence = [presence(TEACHER, (0, 30)), presence(COTEACHER, (0, 30))]
    assert _evaluate(lesson) == [("not_applicable", "no pupils")]


def test_cancelled_meeting_is_not_applicable(lesson: SessionSnapshot) -> None:
    """A cancelled Saturday lesson brings no contact."""
    _schedule(lesson, "2026-11-21T10:00:00", "2026-11-21T10:30:00")
    lesson.is_cancelled = True
    assert _evaluate(lesson) == [("not_applicable", "cancelled")]


def test_evening_direct_call_with_a_pupil(lesson: SessionSnapshot) -> None:
    """A peer-to-peer call at 19:00 between a teacher and a pupil."""
    lesson.kind = SessionKind.PEER_TO_PEER
    lesson.scheduled_start = lesson.scheduled_end = None
    lesson.invitee_ids = []
    lesson.actual_start = _utc("2026-11-18T19:00:00")
    lesson.actual_end = _utc("2026-11-18T19:10:00")
    lesson.presence = [
        Presence(
            person_id=pid,
            intervals=[Interval(start=lesson.actual_start, end=lesson.actual_end)],
            source="call_record",
        )
        for pid in (TEACHER.id, PUPIL.id)
    ]
    assert _evaluate(lesson) == [("breach", "after the school day")]


def _chat(snapshot: SessionSnapshot, *times: str) -> SessionSnapshot:
    snapshot.kind = SessionKind.DIRECT_CHAT
    snapshot.subject = None
    snapshot.organizer_id = None
    snapshot.scheduled_start = snapshot.scheduled_end = None
    snapshot.invitee_ids = []
    snapshot.presence = None
    snapshot.member_ids = [TEACHER.id, PUPIL.id]
    snapshot.chat = [
        ChatActivity(
            message_id=f"m{index}",
            created=_utc(moment),
            sender_kind="person",
            sender_id=TEACHER.id if index % 2 else PUPIL.id,
        )
        for index, moment in enumerate(times)
    ]
    snapshot.collected_at = _utc("2026-11-22T12:00:00")
    return snapshot


def test_chat_messages_out_of_hours_give_one_breach(lesson: SessionSnapshot) -> None:
    """Two evening messages and one in the day: one finding listing the evening times."""
    _chat(lesson, "2026-11-18T10:00:00", "2026-11-18T19:02:00", "2026-11-21T08:15:00")
    (outcome,) = RULE.evaluate(lesson, _context(lesson.collected_at))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.observed == "2 messages after the school day and at the weekend"
    assert outcome.evidence["message_ids"] == ["m1", "m2"]
    assert outcome.message == (
        "In the chat between Ms Teacher and Amelia K., 2 messages were sent after the school "
        "day and at the weekend (school day 09:00-15:30, Mon-Fri): Wed 18 Nov 19:02, Sat 21 Nov "
        "08:15."
    )


def test_chat_within_the_day_is_ok(lesson: SessionSnapshot) -> None:
    """Messages at 10:00 and 15:29 are fine."""
    _chat(lesson, "2026-11-18T10:00:00", "2026-11-18T15:29:00")
    assert _evaluate(lesson) == [("ok", "messages within the school day")]


def test_chat_not_read_is_unknown(lesson: SessionSnapshot) -> None:
    """A direct chat whose messages were not read cannot be judged."""
    _chat(lesson)
    lesson.chat = None
    assert _evaluate(lesson) == [("unknown", "chat not read")]


def test_pupils_chatting_among_themselves_is_not_staff_contact(lesson: SessionSnapshot) -> None:
    """Only pupils in the chat: not this rule's concern."""
    _chat(lesson, "2026-11-18T20:00:00")
    lesson.member_ids = [PUPIL.id, PUPIL2.id]
    lesson.people = {PUPIL.id: PUPIL, PUPIL2.id: PUPIL2}
    assert _evaluate(lesson) == [("not_applicable", "no pupils")]
