"""One adult alone with one pupil, not covered by an approved registration with consent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import Interval, Missing, Presence, SessionSnapshot
from remote_guard.consent.registers import ApprovalStatus, Consent, Registers, Registration
from remote_guard.rules.base import RuleContext, Verdict
from remote_guard.rules.one_to_one_without_consent import RULE, Params
from tests.rules.factory import (
    COTEACHER,
    END,
    GUEST,
    PUPIL,
    PUPIL2,
    SLT,
    START,
    TEACHER,
    at,
    presence,
)

NOW = END + timedelta(hours=1)


def _context(registers: Registers | None = None, **params: object) -> RuleContext:
    return RuleContext(
        now=NOW, tenant_id="t", registers=registers or Registers(), params=Params(**params)
    )  # type: ignore[arg-type]


def _breaches(snapshot: SessionSnapshot, context: RuleContext) -> list[str]:
    return [o.subject_key for o in RULE.evaluate(snapshot, context) if o.verdict is Verdict.BREACH]


def _registers(**consent_changes: object) -> Registers:
    consent = Consent(
        id="c1",
        pupil_id=PUPIL.id,
        granted_by="Mrs K.",
        relationship="mother",
        granted_at=START - timedelta(days=3),
    ).model_copy(update=consent_changes)
    registration = Registration(
        id="r1",
        staff_id=TEACHER.id,
        pupil_id=PUPIL.id,
        activity="reading",
        join_url="https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0",
        status=ApprovalStatus.APPROVED,
        approved_by=SLT.id,
        approved_at=START - timedelta(days=2),
    )
    return Registers(
        registrations=(registration,),
        consents=(consent,),
        approved_activities=frozenset({"reading", "Talk Times"}),
    )


def test_whole_class_present_is_not_a_one_to_one(lesson: SessionSnapshot) -> None:
    """A teacher with two pupils is fine."""
    outcomes = RULE.evaluate(lesson, _context())
    assert [o.verdict for o in outcomes] == [Verdict.OK]


@pytest.mark.parametrize(("alone_seconds", "expected"), [(119, []), (120, []), (121, ["pupil"])])
def test_threshold_is_strictly_more_than_two_minutes(
    lesson: SessionSnapshot, alone_seconds: int, expected: list[str]
) -> None:
    """1 min 59 s and exactly 2 min alone pass; 2 min 01 s is a breach."""
    tail = 30 + alone_seconds / 60
    lesson.presence = [
        presence(TEACHER, (0, tail)),
        presence(PUPIL, (0, tail)),
        presence(PUPIL2, (0, 30)),
    ]
    assert _breaches(lesson, _context()) == expected


def test_tail_of_lesson_alone_is_a_breach_with_evidence(lesson: SessionSnapshot) -> None:
    """The tail after everyone else left is measured and reported."""
    lesson.presence = [
        presence(TEACHER, (0, 36)),
        presence(PUPIL, (0, 36)),
        presence(PUPIL2, (0, 30)),
    ]
    (outcome,) = RULE.evaluate(lesson, _context())
    assert outcome.verdict is Verdict.BREACH
    assert outcome.evidence["alone_seconds"] == 360
    assert outcome.evidence["alone_from"] == at(30).isoformat()
    assert "6 min" in outcome.message


@pytest.mark.parametrize("third", [COTEACHER, SLT, GUEST])
def test_a_third_person_present_throughout_means_not_alone(
    lesson: SessionSnapshot, third: object
) -> None:
    """A co-teacher, an SLT drop-in or any other person makes it not one-to-one."""
    lesson.presence = [
        presence(TEACHER, (0, 30)),
        presence(PUPIL, (0, 30)),
        presence(third, (0, 30)),
    ]  # type: ignore[arg-type]
    assert _breaches(lesson, _context()) == []


def test_separate_short_stretches_do_not_add_up(lesson: SessionSnapshot) -> None:
    """Two stretches alone of 90 s each, split by a second pupil, are each under the threshold."""
    lesson.presence = [
        presence(TEACHER, (0, 30)),
        presence(PUPIL, (0, 3)),
        presence(PUPIL2, (1.5, 1.6)),
    ]
    assert _breaches(lesson, _context()) == []


def test_a_pupil_joining_twice_is_measured_as_one_continuous_stretch(
    lesson: SessionSnapshot,
) -> None:
    """Overlapping intervals of one pupil are merged before measuring."""
    lesson.presence = [presence(TEACHER, (0, 10)), presence(PUPIL, (0, 2), (1.5, 4))]
    assert _breaches(lesson, _context()) == ["pupil"]


def test_registered_approved_consented_one_to_one_is_covered(lesson: SessionSnapshot) -> None:
    """An approved registration for an approved activity with prior consent covers it."""
    lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    assert _breaches(lesson, _context(_registers())) == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"withdrawn_at": START - timedelta(days=1)}, "withdrawn"),
        ({"granted_at": START + timedelta(hours=1)}, "after the session started"),
        ({"expires_at": START - timedelta(days=1)}, "expired"),
        ({"scope": "image_creation"}, "no parental consent"),
    ],
)
def test_consent_that_does_not_cover_the_start_is_a_breach(
    lesson: SessionSnapshot, changes: dict[str, object], reason: str
) -> None:
    """Consent must be granted before the start and not withdrawn or expired by then."""
    lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    (outcome,) = RULE.evaluate(lesson, _context(_registers(**changes)))
    assert outcome.verdict is Verdict.BREACH
    assert reason in outcome.message


def test_pending_registration_is_not_enough(lesson: SessionSnapshot) -> None:
    """SLT must have approved the registration."""
    lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    registers = _registers()
    pending = registers.registrations[0].model_copy(update={"status": ApprovalStatus.PENDING})
    registers = registers.model_copy(update={"registrations": (pending,)})
    (outcome,) = RULE.evaluate(lesson, _context(registers))
    assert "waiting for SLT approval" in outcome.message


def test_whingate_parameters_need_only_an_approved_registration(lesson: SessionSnapshot) -> None:
    """Without the consent requirement an approved registration suffices."""
    lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    registers = _registers().model_copy(update={"consents": (), "approved_activities": frozenset()})
    context = _context(registers, require_consent=False, require_approved_activity=False)
    assert _breaches(lesson, context) == []


def test_upcoming_planned_one_to_one_without_registration_is_flagged_before_it_starts(
    lesson: SessionSnapshot,
) -> None:
    """A meeting planned for one teacher and one pupil is flagged pre-session."""
    lesson.invitee_ids = [PUPIL.id]
    lesson.presence = None
    context = RuleContext(now=START - timedelta(hours=2), tenant_id="t", params=Params())
    (outcome,) = RULE.evaluate(lesson, context)
    assert outcome.verdict is Verdict.BREACH
    assert outcome.observed == "one-to-one planned"
    assert outcome.subject_key == PUPIL.id


def test_missing_attendance_after_the_meeting_is_an_error_not_a_pass(
    lesson: SessionSnapshot,
) -> None:
    """Attendance that could not be read gives UNKNOWN, never OK."""
    lesson.presence = None
    lesson.missing[Missing.PRESENCE] = "HTTP 403 Forbidden"
    (outcome,) = RULE.evaluate(lesson, _context())
    assert outcome.verdict is Verdict.UNKNOWN


def test_peer_to_peer_call_between_teacher_and_pupil_is_a_one_to_one(
    lesson: SessionSnapshot,
) -> None:
    """A direct call has both present for its whole length."""
    lesson.presence = [
        Presence(person_id=p.id, intervals=[Interval(start=at(0), end=at(5))], source="call_record")
        for p in (TEACHER, PUPIL)
    ]
    assert _breaches(lesson, _context()) == ["pupil"]
