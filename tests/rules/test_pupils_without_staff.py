"""Pupils left in a session with no member of staff, and meetings organised by a pupil."""

from __future__ import annotations

from datetime import timedelta

from remote_guard.collect.snapshot import SessionSnapshot
from remote_guard.rules.base import RuleContext, Verdict
from remote_guard.rules.pupils_without_staff import RULE, Params
from tests.rules.factory import END, PUPIL, PUPIL2, TEACHER, presence

CONTEXT = RuleContext(now=END + timedelta(hours=1), tenant_id="t", params=Params())


def test_pupils_left_after_the_teacher_goes(lesson: SessionSnapshot) -> None:
    """The teacher leaves at 25 min; two pupils stay five minutes more."""
    lesson.presence = [
        presence(TEACHER, (0, 25)),
        presence(PUPIL, (0, 30)),
        presence(PUPIL2, (0, 30)),
    ]
    (outcome,) = RULE.evaluate(lesson, CONTEXT)
    assert outcome.verdict is Verdict.BREACH
    assert outcome.observed == "pupils without staff for 5 min"
    assert outcome.evidence["stretches"][0]["pupils"] == sorted([PUPIL.id, PUPIL2.id])


def test_short_wait_before_the_teacher_is_fine(lesson: SessionSnapshot) -> None:
    """Two minutes exactly is not longer than the threshold."""
    lesson.presence = [presence(TEACHER, (2, 30)), presence(PUPIL, (0, 30))]
    assert [o.verdict for o in RULE.evaluate(lesson, CONTEXT)] == [Verdict.OK]


def test_meeting_organised_by_a_pupil(lesson: SessionSnapshot) -> None:
    """A pupil-organised meeting is reported even when a teacher was there."""
    lesson.organizer_id = PUPIL.id
    outcomes = RULE.evaluate(lesson, CONTEXT)
    assert [(o.verdict, o.subject_key) for o in outcomes] == [(Verdict.BREACH, "organizer")]


def test_unread_attendance_after_the_end_is_unknown(lesson: SessionSnapshot) -> None:
    """Never a pass without the data."""
    lesson.presence = None
    assert [o.verdict for o in RULE.evaluate(lesson, CONTEXT)] == [Verdict.UNKNOWN]
