"""A session with pupils organised by someone outside the school tenant."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import Person, PersonKind, SessionKind, SessionSnapshot
from remote_guard.rules.base import NoParams, RuleContext, Verdict
from remote_guard.rules.external_organiser import RULE
from tests.rules.factory import END, PUPIL, START, TEACHER, presence

SCHOOL_TENANT = "7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37"
OTHER_TENANT = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
AFTER = RuleContext(now=END + timedelta(hours=1), tenant_id=SCHOOL_TENANT, params=NoParams())
BEFORE = RuleContext(now=START - timedelta(days=1), tenant_id=SCHOOL_TENANT, params=NoParams())
COACH = Person(
    id="coach",
    display_name="Dan Coach",
    kind=PersonKind.EXTERNAL,
    tenant_id=OTHER_TENANT,
    email="dan@chessclub.example",
)


def _verdicts(snapshot: SessionSnapshot, context: RuleContext = AFTER) -> list[Verdict]:
    return [o.verdict for o in RULE.evaluate(snapshot, context)]


@pytest.fixture
def outside_meeting(lesson: SessionSnapshot) -> SessionSnapshot:
    """An upcoming Teams meeting organised in another tenant, with a pupil invited."""
    lesson.organizer_id = COACH.id
    lesson.organizer_email = COACH.email
    lesson.organizer_tenant_id = OTHER_TENANT
    lesson.people[COACH.id] = COACH
    lesson.invitee_ids = [PUPIL.id]
    lesson.presence = None
    return lesson


def test_school_staff_organiser_is_ok(lesson: SessionSnapshot) -> None:
    """The school's own teacher, in the school tenant, passes."""
    lesson.organizer_tenant_id = SCHOOL_TENANT
    assert _verdicts(lesson) == [Verdict.OK]


def test_meeting_from_another_tenant_is_a_high_breach_before_it_starts(
    outside_meeting: SessionSnapshot,
) -> None:
    """The invitation alone is enough; the finding is about the session."""
    (outcome,) = RULE.evaluate(outside_meeting, BEFORE)
    assert outcome.verdict is Verdict.BREACH
    assert outcome.subject_key == ""
    assert outcome.evidence["organizer_tenant_id"] == OTHER_TENANT
    assert outcome.observed == f"organised in another tenant ({OTHER_TENANT})"
    assert "organised by Dan Coach (dan@chessclub.example), an account of another" in (
        outcome.message
    )
    assert "pupil Amelia K." in outcome.message


def test_tenant_ids_compare_without_case(outside_meeting: SessionSnapshot) -> None:
    """The school's tenant id in capitals is still the school's tenant."""
    outside_meeting.organizer_tenant_id = SCHOOL_TENANT.upper()
    outside_meeting.people[COACH.id] = COACH.model_copy(
        update={"kind": PersonKind.UNKNOWN, "tenant_id": SCHOOL_TENANT}
    )
    assert _verdicts(outside_meeting, BEFORE) == [Verdict.OK]


@pytest.mark.parametrize("kind", [PersonKind.GUEST, PersonKind.ANONYMOUS, PersonKind.EXTERNAL])
def test_outsider_organiser_kinds_breach_without_a_tenant(
    outside_meeting: SessionSnapshot, kind: PersonKind
) -> None:
    """A guest, anonymous or external organiser breaches even with no tenant id recorded."""
    outside_meeting.organizer_tenant_id = None
    outside_meeting.people[COACH.id] = COACH.model_copy(update={"kind": kind, "tenant_id": None})
    assert _verdicts(outside_meeting, BEFORE) == [Verdict.BREACH]


def test_person_tenant_is_used_when_the_snapshot_has_none(
    outside_meeting: SessionSnapshot,
) -> None:
    """A call record gives no organiser tenant; the organiser's own tenant id counts."""
    outside_meeting.organizer_tenant_id = None
    outside_meeting.people[COACH.id] = COACH.model_copy(update={"kind": PersonKind.UNKNOWN})
    assert _verdicts(outside_meeting, BEFORE) == [Verdict.BREACH]


def test_unknown_organiser_of_a_calendar_meeting_is_unknown(
    outside_meeting: SessionSnapshot,
) -> None:
    """No organiser id: UNKNOWN naming the invitation's sender, never OK."""
    outside_meeting.organizer_id = None
    outside_meeting.organizer_tenant_id = None
    (outcome,) = RULE.evaluate(outside_meeting, BEFORE)
    assert outcome.verdict is Verdict.UNKNOWN
    assert "dan@chessclub.example" in outcome.message


def test_external_caller_of_a_pupil_is_a_breach(lesson: SessionSnapshot) -> None:
    """A peer-to-peer call placed by an external account to a pupil breaches too."""
    lesson.kind = SessionKind.PEER_TO_PEER
    lesson.scheduled_start = lesson.scheduled_end = None
    lesson.actual_start, lesson.actual_end = START, END
    lesson.organizer_id = COACH.id
    lesson.people[COACH.id] = COACH
    lesson.invitee_ids = []
    lesson.presence = [presence(COACH, (0, 10)), presence(PUPIL, (0, 10))]
    (outcome,) = RULE.evaluate(lesson, AFTER)
    assert outcome.verdict is Verdict.BREACH
    assert outcome.sources[0] == "call_record"


def test_outside_meeting_without_pupils_is_not_applicable(
    outside_meeting: SessionSnapshot,
) -> None:
    """A teacher invited to another school's staff meeting is not contact with pupils."""
    outside_meeting.invitee_ids = [TEACHER.id]
    assert _verdicts(outside_meeting, BEFORE) == [Verdict.NOT_APPLICABLE]


def test_cancelled_outside_meeting_is_not_applicable(outside_meeting: SessionSnapshot) -> None:
    """A cancelled invitation that nobody joined is no contact."""
    outside_meeting.is_cancelled = True
    assert _verdicts(outside_meeting, BEFORE) == [Verdict.NOT_APPLICABLE]


def test_direct_chat_is_not_applicable(lesson: SessionSnapshot) -> None:
    """Chats have no organiser."""
    lesson.kind = SessionKind.DIRECT_CHAT
    assert _verdicts(lesson) == [Verdict.NOT_APPLICABLE]
