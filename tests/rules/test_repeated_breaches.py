"""Repeated breaches by one pupil (or teacher) within a window are raised once they persist."""

from __future__ import annotations

from datetime import timedelta

from remote_guard.collect.snapshot import SessionSnapshot
from remote_guard.rules.base import PriorBreach, RuleContext, Status, Verdict
from remote_guard.rules.repeated_breaches import RULE, Params
from tests.rules.factory import END, PUPIL, START, TEACHER


def _breach(session: str, days_ago: float, rule: str = "pupil_meeting_chat") -> PriorBreach:
    return PriorBreach(
        rule_id=rule,
        session_id=session,
        at=START - timedelta(days=days_ago),
        subject_key=PUPIL.id,
        organizer_id=TEACHER.id,
        status=Status.WARN,
    )


def _context(*history: PriorBreach, **params: object) -> RuleContext:
    return RuleContext(
        now=END + timedelta(hours=1),
        tenant_id="t",
        params=Params(**params),  # type: ignore[arg-type]
        history=history,
    )


def test_third_session_in_the_window_raises_it(lesson: SessionSnapshot) -> None:
    """Two earlier sessions and this one: three, so SLT are told, naming the pupil."""
    history = (_breach("s1", 20), _breach("s2", 6), _breach(lesson.session_id, 0))
    (outcome,) = RULE.evaluate(lesson, _context(*history))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.subject_key == PUPIL.id
    assert "3 remote sessions" in outcome.message
    assert [b["session_id"] for b in outcome.evidence["breaches"]] == [
        "s1",
        "s2",
        lesson.session_id,
    ]


def test_an_old_breach_outside_the_window_does_not_count(lesson: SessionSnapshot) -> None:
    """29 days ago is outside a 28-day window."""
    history = (_breach("s1", 29), _breach("s2", 6), _breach(lesson.session_id, 0))
    assert [o.verdict for o in RULE.evaluate(lesson, _context(*history))] == [Verdict.OK]


def test_raised_only_where_this_session_adds_a_breach(lesson: SessionSnapshot) -> None:
    """Three earlier breaches but none here: this session is not where it happened."""
    history = (_breach("s1", 9), _breach("s2", 6), _breach("s3", 3))
    assert [o.verdict for o in RULE.evaluate(lesson, _context(*history))] == [Verdict.OK]


def test_several_breaches_in_one_session_count_once(lesson: SessionSnapshot) -> None:
    """The threshold counts sessions, not findings."""
    history = (
        _breach("s1", 2),
        _breach("s1", 2, rule="uninvited_attendee"),
        _breach(lesson.session_id, 0),
    )
    assert [o.verdict for o in RULE.evaluate(lesson, _context(*history))] == [Verdict.OK]


def test_teacher_counted_only_for_the_rules_the_profile_names(lesson: SessionSnapshot) -> None:
    """Breaches in sessions a teacher organised count against them when staff_rules say so."""
    history = tuple(
        _breach(s, d, rule="meeting_chat_open_to_pupils")
        for s, d in (("s1", 9), ("s2", 4), (lesson.session_id, 0))
    )
    assert [o.verdict for o in RULE.evaluate(lesson, _context(*history))] == [Verdict.OK]
    (outcome,) = RULE.evaluate(
        lesson, _context(*history, staff_rules=("meeting_chat_open_to_pupils",))
    )
    assert outcome.subject_key == TEACHER.id
