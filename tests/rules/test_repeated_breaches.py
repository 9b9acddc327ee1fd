"""Repeated breaches by one pupil (or teacher) within a window are raised once they persist."""

from __future__ import annotations

from datetime import timedelta

from remote_guard.collect.snapshot import SessionSnapshot
from remote_guard.rules.base import (
    HistoryItem,
    PriorBreach,
    PriorUnknown,
    RuleContext,
    Status,
    Verdict,
)
from remote_guard.rules.repeated_breaches import RULE, Params
from tests.rules.factory import END, PUPIL, PUPIL2, START, TEACHER


def _breach(session: str, days_ago: float, rule: str = "pupil_meeting_chat") -> PriorBreach:
    return PriorBreach(
        rule_id=rule,
        session_id=session,
        at=START - timedelta(days=days_ago),
        subject_key=PUPIL.id,
        organizer_id=TEACHER.id,
        status=Status.WARN,
    )


def _unread(
    session: str,
    days_ago: float,
    rule: str = "pupil_meeting_chat",
    *,
    people: frozenset[str] = frozenset({TEACHER.id, PUPIL.id, PUPIL2.id}),
    subject: str = "",
) -> PriorUnknown:
    """A check that could not be made in a session: by default its chat was unread (an error
    about the whole session, in which the teacher and both pupils took part)."""
    return PriorUnknown(
        rule_id=rule,
        session_id=session,
        at=START - timedelta(days=days_ago),
        subject_key=subject,
        organizer_id=TEACHER.id,
        people=frozenset() if subject else people,
    )


def _context(*history: HistoryItem, **params: object) -> RuleContext:
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


# --- checks that could not be made -----------------------------------------------------------------


def _verdicts(
    lesson: SessionSnapshot, *history: HistoryItem, **params: object
) -> list[tuple[Verdict, str]]:
    return [(o.verdict, o.subject_key) for o in RULE.evaluate(lesson, _context(*history, **params))]


def test_this_sessions_unread_chat_may_be_the_third_breach(lesson: SessionSnapshot) -> None:
    """Two earlier breaches, and this session's chat could not be read: whether the pattern is
    complete here is unknown (error), not a pass. Only the pupil near the threshold is unknown;
    the other pupil and the teacher are far from it."""
    history = (_breach("s1", 20), _breach("s2", 6), _unread(lesson.session_id, 0))

    (outcome,) = RULE.evaluate(lesson, _context(*history))

    assert (outcome.verdict, outcome.subject_key) == (Verdict.UNKNOWN, PUPIL.id)
    assert [u["session_id"] for u in outcome.evidence["unchecked"]] == [lesson.session_id]
    assert [b["session_id"] for b in outcome.evidence["breaches"]] == ["s1", "s2"]
    assert "could not be checked" in outcome.message


def test_an_earlier_sessions_unread_chat_may_complete_the_pattern(lesson: SessionSnapshot) -> None:
    """A breach here and one earlier; an earlier session's chat could not be read: unknown."""
    history = (_breach("s1", 20), _unread("s2", 6), _breach(lesson.session_id, 0))

    assert _verdicts(lesson, *history) == [(Verdict.UNKNOWN, PUPIL.id)]


def test_unread_data_that_cannot_reach_the_threshold_changes_nothing(
    lesson: SessionSnapshot,
) -> None:
    """One earlier breach and this session unread: two at most, short of three."""
    history = (_breach("s2", 6), _unread(lesson.session_id, 0))

    assert _verdicts(lesson, *history) == [(Verdict.OK, "")]


def test_unread_data_elsewhere_cannot_raise_it_where_nothing_happened(
    lesson: SessionSnapshot,
) -> None:
    """Earlier sessions unread, but this session read with no breach: it is not raised here
    whatever those sessions held."""
    history = (_breach("s1", 20), _unread("s2", 6), _unread("s3", 3))

    assert _verdicts(lesson, *history) == [(Verdict.OK, "")]


def test_a_breach_found_is_raised_whatever_else_was_unread(lesson: SessionSnapshot) -> None:
    """Three sessions with a breach: raised, however many more could not be checked."""
    history = (
        _breach("s1", 20),
        _unread("s2", 9),
        _breach("s3", 6),
        _breach(lesson.session_id, 0),
    )

    assert _verdicts(lesson, *history) == [(Verdict.BREACH, PUPIL.id)]


def test_only_the_counted_rules_unread_data_matters(lesson: SessionSnapshot) -> None:
    """Recordings that could not be read say nothing about a pupil's conduct under the rules
    counted (recording_in_pupil_session is about the teacher's recording); and an error about
    another pupil is not about this one."""
    history = (
        _breach("s1", 20),
        _breach("s2", 6),
        _unread(lesson.session_id, 0, rule="recording_in_pupil_session"),
        _unread(lesson.session_id, 0, rule="uninvited_attendee", subject=PUPIL2.id),
    )

    assert _verdicts(lesson, *history) == [(Verdict.OK, "")]


def test_an_unread_session_counts_only_once(lesson: SessionSnapshot) -> None:
    """Two checks that could not be made in one session, plus one breach: two sessions."""
    history = (
        _unread("s1", 6),
        _unread("s1", 6, rule="pupil_started_recording"),
        _breach(lesson.session_id, 0),
    )

    assert _verdicts(lesson, *history) == [(Verdict.OK, "")]


def test_a_session_wide_error_of_a_pupil_rule_is_not_the_teachers(
    lesson: SessionSnapshot,
) -> None:
    """Three sessions whose chat could not be read: unknown for each pupil in them, never for
    the teacher (pupil rules are about pupils' conduct)."""
    history = (_unread("s1", 20), _unread("s2", 6), _unread(lesson.session_id, 0))

    assert _verdicts(lesson, *history) == [
        (Verdict.UNKNOWN, PUPIL.id),
        (Verdict.UNKNOWN, PUPIL2.id),
    ]


def test_a_teachers_unchecked_sessions_count_under_the_staff_rules(
    lesson: SessionSnapshot,
) -> None:
    """A staff rule whose check could not be made in a session the teacher organised."""
    staff_rule = "meeting_chat_open_to_pupils"
    history = (
        _breach("s1", 9, rule=staff_rule),
        _unread("s2", 4, rule=staff_rule),
        _breach(lesson.session_id, 0, rule=staff_rule),
    )

    assert _verdicts(lesson, *history, staff_rules=(staff_rule,)) == [(Verdict.UNKNOWN, TEACHER.id)]
