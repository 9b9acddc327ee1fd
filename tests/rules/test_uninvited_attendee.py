"""Pupils (and unlisted school accounts) who joined a scheduled meeting they were not invited to."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import (
    ChannelRef,
    Person,
    PersonKind,
    SessionKind,
    SessionSnapshot,
)
from remote_guard.rules.base import NoParams, RuleContext, Verdict
from remote_guard.rules.uninvited_attendee import RULE
from tests.rules.factory import COTEACHER, END, GUEST, PUPIL, PUPIL2, SLT, START, TEACHER, presence

NOW = END + timedelta(hours=1)
CONTEXT = RuleContext(now=NOW, tenant_id="t", params=NoParams())
OTHER_CLASS = Person(
    id="pupil3",
    display_name="Jack T.",
    kind=PersonKind.PUPIL,
    email="jack.t@school.example",
)
UNLISTED = Person(
    id="unlisted", display_name="New Starter", kind=PersonKind.UNKNOWN, email="ns@school.example"
)


@pytest.fixture
def lesson_at_school(lesson: SessionSnapshot) -> SessionSnapshot:
    """The lesson with the school's addresses filled in, so its domain is known."""
    for person_id, person in list(lesson.people.items()):
        if person.kind in (PersonKind.STAFF, PersonKind.PUPIL):
            lesson.people[person_id] = person.model_copy(
                update={"email": f"{person_id}@school.example"}
            )
    lesson.organizer_email = f"{TEACHER.id}@school.example"
    return lesson


def _with(lesson: SessionSnapshot, person: Person, *spans: tuple[float, float]) -> SessionSnapshot:
    lesson.people[person.id] = person
    assert lesson.presence is not None
    lesson.presence.append(presence(person, *spans))
    return lesson


def _verdicts(snapshot: SessionSnapshot) -> dict[str, Verdict]:
    return {o.subject_key: o.verdict for o in RULE.evaluate(snapshot, CONTEXT)}


def test_everyone_invited_is_one_ok(lesson_at_school: SessionSnapshot) -> None:
    """Organiser and invited pupils only: one OK."""
    assert _verdicts(lesson_at_school) == {"": Verdict.OK}


def test_pupil_from_another_class_is_a_breach(lesson_at_school: SessionSnapshot) -> None:
    """A pupil not invited who joins is reported, with the time they joined."""
    _with(lesson_at_school, OTHER_CLASS, (4, 30))
    (outcome,) = RULE.evaluate(lesson_at_school, CONTEXT)
    assert (outcome.verdict, outcome.subject_key) == (Verdict.BREACH, OTHER_CLASS.id)
    assert "Pupil Jack T. joined \u201cYear 3 maths\u201d (Wed 18 Nov 10:00) at 10:04" in (
        outcome.message
    )
    assert outcome.evidence["invitee_ids"] == [PUPIL.id, PUPIL2.id]


def test_pupil_invited_by_address_is_fine(lesson_at_school: SessionSnapshot) -> None:
    """A pupil whose address is on the invitation (unresolved to an id) was invited."""
    _with(lesson_at_school, OTHER_CLASS, (4, 30))
    lesson_at_school.invitee_emails = ["Jack.T@school.example"]
    assert _verdicts(lesson_at_school) == {"": Verdict.OK}


def test_staff_and_slt_drop_ins_are_fine(lesson_at_school: SessionSnapshot) -> None:
    """Colleagues and SLT may join any lesson uninvited."""
    _with(lesson_at_school, SLT, (10, 20))
    _with(lesson_at_school, COTEACHER, (0, 30))
    assert _verdicts(lesson_at_school) == {"": Verdict.OK}


def test_outsiders_are_left_to_the_outsider_rule(lesson_at_school: SessionSnapshot) -> None:
    """An anonymous joiner is not reported twice."""
    _with(lesson_at_school, GUEST, (0, 30))
    assert _verdicts(lesson_at_school) == {"": Verdict.OK}


def test_unlisted_school_account_with_pupils_is_a_breach(
    lesson_at_school: SessionSnapshot,
) -> None:
    """A school account in no group could be a pupil: reported when pupils were there."""
    _with(lesson_at_school, UNLISTED, (0, 30))
    (outcome,) = RULE.evaluate(lesson_at_school, CONTEXT)
    assert (outcome.verdict, outcome.subject_key) == (Verdict.BREACH, UNLISTED.id)
    assert "neither the staff nor the pupil groups" in outcome.message


def test_unlisted_school_account_without_pupils_is_fine(
    lesson_at_school: SessionSnapshot,
) -> None:
    """After the pupils left, an unlisted account is not in a session with pupils."""
    _with(lesson_at_school, UNLISTED, (31, 40))
    assert _verdicts(lesson_at_school) == {"": Verdict.OK}


def test_unresolved_school_address_makes_it_unknown(lesson_at_school: SessionSnapshot) -> None:
    """An invitation to a school address remote_guard could not resolve (a group?) may have
    included the pupil: unknown, not breach."""
    _with(lesson_at_school, OTHER_CLASS, (4, 30))
    lesson_at_school.invitee_emails = ["year3-parents-list@school.example"]
    (outcome,) = RULE.evaluate(lesson_at_school, CONTEXT)
    assert (outcome.verdict, outcome.subject_key) == (Verdict.UNKNOWN, OTHER_CLASS.id)
    assert outcome.evidence["unresolved_school_addresses"] == ["year3-parents-list@school.example"]


def test_outside_address_on_invitation_does_not_make_it_unknown(
    lesson_at_school: SessionSnapshot,
) -> None:
    """An invited visitor's address cannot stand for a school pupil."""
    _with(lesson_at_school, OTHER_CLASS, (4, 30))
    lesson_at_school.invitee_emails = ["priya.shah@museum.example"]
    assert _verdicts(lesson_at_school) == {OTHER_CLASS.id: Verdict.BREACH}


def test_channel_meeting_team_members_need_no_invitation(
    lesson_at_school: SessionSnapshot,
) -> None:
    """In a channel meeting, members of the team are expected; others are not."""
    lesson_at_school.kind = SessionKind.CHANNEL_MEETING
    lesson_at_school.invitee_ids = []
    lesson_at_school.channel = ChannelRef(
        thread_id="19:abc@thread.tacv2", member_ids=[TEACHER.id, PUPIL.id, PUPIL2.id]
    )
    _with(lesson_at_school, OTHER_CLASS, (4, 30))
    assert _verdicts(lesson_at_school) == {OTHER_CLASS.id: Verdict.BREACH}


def test_channel_meeting_with_unknown_members_is_unknown(
    lesson_at_school: SessionSnapshot,
) -> None:
    """No team members read for a channel meeting: nobody can be called uninvited."""
    lesson_at_school.kind = SessionKind.CHANNEL_MEETING
    lesson_at_school.invitee_ids = []
    lesson_at_school.channel = ChannelRef(thread_id="19:abc@thread.tacv2")
    assert _verdicts(lesson_at_school) == {PUPIL.id: Verdict.UNKNOWN, PUPIL2.id: Verdict.UNKNOWN}


@pytest.mark.parametrize(
    "change",
    [{"scheduled_start": None}, {"kind": SessionKind.PEER_TO_PEER}],
    ids=["ad-hoc meeting", "peer-to-peer call"],
)
def test_sessions_without_an_invitation_are_not_applicable(
    lesson_at_school: SessionSnapshot, change: dict[str, object]
) -> None:
    """Nothing to compare with: not applicable, whoever joined."""
    _with(lesson_at_school, OTHER_CLASS, (4, 30))
    changed = lesson_at_school.model_copy(update=change)
    assert [o.verdict for o in RULE.evaluate(changed, CONTEXT)] == [Verdict.NOT_APPLICABLE]


def test_upcoming_meeting_is_not_applicable(lesson_at_school: SessionSnapshot) -> None:
    """Before the meeting nobody has joined yet."""
    lesson_at_school.presence = None
    context = RuleContext(now=START - timedelta(hours=1), tenant_id="t", params=NoParams())
    (outcome,) = RULE.evaluate(lesson_at_school, context)
    assert (outcome.verdict, outcome.observed) == (Verdict.NOT_APPLICABLE, "not ended yet")
