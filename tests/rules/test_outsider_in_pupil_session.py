"""Outsiders present at the same time as pupils, unless invited or a known parent or carer."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import Person, PersonKind, SessionKind, SessionSnapshot
from remote_guard.consent.registers import Consent, Registers
from remote_guard.rules.base import NoParams, RuleContext, Severity, Verdict
from remote_guard.rules.outsider_in_pupil_session import RULE
from tests.rules.factory import END, GUEST, PUPIL, PUPIL2, START, TEACHER, presence

NOW = END + timedelta(hours=1)
PARENT = Person(
    id="guest-parent",
    display_name="Sarah Kelly (Guest)",
    kind=PersonKind.GUEST,
    email="Sarah.Kelly@mail.example",
)
SPEAKER = Person(
    id="ext-speaker",
    display_name="Dr Priya Shah",
    kind=PersonKind.EXTERNAL,
    tenant_id="other-tenant",
    email="priya.shah@museum.example",
)
CALLER = Person(id="phone:+44 7700 900***", display_name="+44 7700 900***", kind=PersonKind.PHONE)
BOT = Person(id="app:bot", display_name="Attendance bot", kind=PersonKind.APPLICATION)


def _consent(pupil_id: str = PUPIL.id, email: str | None = "sarah.kelly@mail.example") -> Consent:
    return Consent(
        id="c-kelly",
        pupil_id=pupil_id,
        scope="contact",
        granted_by="Sarah Kelly",
        relationship="mother",
        contact_email=email,
        granted_at=START - timedelta(days=30),
    )


def _context(*consents: Consent) -> RuleContext:
    return RuleContext(
        now=NOW, tenant_id="t", registers=Registers(consents=consents), params=NoParams()
    )


def _with(lesson: SessionSnapshot, person: Person, *spans: tuple[float, float]) -> SessionSnapshot:
    lesson.people[person.id] = person
    assert lesson.presence is not None
    lesson.presence.append(presence(person, *spans))
    return lesson


def _verdicts(snapshot: SessionSnapshot, context: RuleContext) -> dict[str, Verdict]:
    return {o.subject_key: o.verdict for o in RULE.evaluate(snapshot, context)}


def test_lesson_without_outsiders_is_one_ok(lesson: SessionSnapshot) -> None:
    """Teacher and pupils only: one OK for the session."""
    outcomes = RULE.evaluate(lesson, _context())
    assert [(o.verdict, o.subject_key) for o in outcomes] == [(Verdict.OK, "")]


def test_anonymous_joiner_with_pupils_is_a_high_breach(lesson: SessionSnapshot) -> None:
    """Someone who joined by link under a typed-in name is reported, with when and with whom."""
    _with(lesson, GUEST, (5, 25))
    (outcome,) = RULE.evaluate(lesson, _context())
    assert (outcome.verdict, outcome.subject_key) == (Verdict.BREACH, GUEST.id)
    assert outcome.severity is Severity.HIGH
    assert outcome.evidence["pupil_ids"] == [PUPIL.id, PUPIL2.id]
    assert outcome.evidence["together_from"] == (START + timedelta(minutes=5)).isoformat()
    assert "Anonymous joiner \u201cParent\u201d" in outcome.message
    assert "Amelia K., Noah B. from 10:05 to 10:25" in outcome.message


def test_phone_caller_is_always_a_breach(lesson: SessionSnapshot) -> None:
    """A dial-in caller cannot be identified, so is reported, with the dial-in option to fix."""
    _with(lesson, CALLER, (0, 30))
    (outcome,) = RULE.evaluate(lesson, _context())
    assert (outcome.verdict, outcome.subject_key) == (Verdict.BREACH, CALLER.id)
    assert "dialing in" in outcome.next_step


def test_anonymous_joiner_is_not_cleared_by_an_invited_address(lesson: SessionSnapshot) -> None:
    """Anonymous joiners have no verified address, so even a matching one does not clear them."""
    anonymous = GUEST.model_copy(update={"email": "sarah.kelly@mail.example"})
    _with(lesson, anonymous, (0, 30))
    lesson.invitee_emails = ["sarah.kelly@mail.example"]
    assert _verdicts(lesson, _context(_consent())) == {GUEST.id: Verdict.BREACH}


def test_invited_external_speaker_is_fine(lesson: SessionSnapshot) -> None:
    """A visitor the organiser invited by address (any case) is there on purpose."""
    _with(lesson, SPEAKER, (10, 20))
    lesson.invitee_emails = ["Priya.Shah@Museum.example"]
    (outcome,) = RULE.evaluate(lesson, _context())
    assert (outcome.verdict, outcome.subject_key) == (Verdict.OK, SPEAKER.id)
    assert outcome.evidence["cleared_as"] == "invited"


def test_guest_invited_by_account_is_fine(lesson: SessionSnapshot) -> None:
    """A guest account on the invitation list by id is invited too."""
    _with(lesson, PARENT, (0, 30))
    lesson.invitee_ids = [*lesson.invitee_ids, PARENT.id]
    assert _verdicts(lesson, _context()) == {PARENT.id: Verdict.OK}


def test_uninvited_external_is_a_breach(lesson: SessionSnapshot) -> None:
    """The same visitor, not on the invitation, is reported."""
    _with(lesson, SPEAKER, (10, 20))
    assert _verdicts(lesson, _context()) == {SPEAKER.id: Verdict.BREACH}


def test_known_parent_of_a_pupil_present_is_fine(lesson: SessionSnapshot) -> None:
    """A guest whose address is a consent's contact for a pupil in the lesson is that pupil's
    parent; the address is compared without regard to case."""
    _with(lesson, PARENT, (0, 30))
    (outcome,) = RULE.evaluate(lesson, _context(_consent()))
    assert (outcome.verdict, outcome.subject_key) == (Verdict.OK, PARENT.id)
    assert outcome.evidence["cleared_as"] == "parent_or_carer"
    assert outcome.evidence["pupil_id"] == PUPIL.id
    assert "Amelia K.'s mother (Sarah Kelly)" in outcome.message


def test_parent_of_a_pupil_not_in_the_lesson_is_a_breach(lesson: SessionSnapshot) -> None:
    """Being some pupil's parent is not enough: their child must be in this session."""
    _with(lesson, PARENT, (0, 30))
    assert _verdicts(lesson, _context(_consent(pupil_id="pupil-elsewhere"))) == {
        PARENT.id: Verdict.BREACH
    }


def test_consent_without_contact_address_does_not_clear(lesson: SessionSnapshot) -> None:
    """A consent with no contact address cannot recognise anyone."""
    _with(lesson, PARENT, (0, 30))
    assert _verdicts(lesson, _context(_consent(email=None))) == {PARENT.id: Verdict.BREACH}


def test_outsider_never_with_pupils_is_fine(lesson: SessionSnapshot) -> None:
    """A visitor who joined after every pupil left was never in a session with pupils."""
    _with(lesson, SPEAKER, (30, 40))
    assert _verdicts(lesson, _context()) == {SPEAKER.id: Verdict.OK}


def test_bots_and_unlisted_school_accounts_are_not_outsiders(lesson: SessionSnapshot) -> None:
    """Applications never count; unlisted school accounts are uninvited_attendee's concern."""
    _with(lesson, BOT, (0, 30))
    _with(lesson, Person(id="u-unlisted", kind=PersonKind.UNKNOWN), (0, 30))
    assert _verdicts(lesson, _context()) == {"": Verdict.OK}


def test_staff_only_session_outsider_is_fine(lesson: SessionSnapshot) -> None:
    """No pupil present: an outsider in a staff meeting is not this clause's concern."""
    lesson.presence = [presence(TEACHER, (0, 30))]
    _with(lesson, GUEST, (0, 30))
    assert _verdicts(lesson, _context()) == {GUEST.id: Verdict.OK}


@pytest.mark.parametrize(
    ("now", "observed"),
    [(START - timedelta(hours=1), "not ended yet"), (NOW, "attendance not yet available")],
)
def test_without_attendance_it_is_not_applicable(
    lesson: SessionSnapshot, now: object, observed: str
) -> None:
    """Upcoming sessions, and ended ones whose attendance has not arrived, are re-checked."""
    lesson.presence = None
    context = RuleContext(now=now, tenant_id="t", params=NoParams())  # type: ignore[arg-type]
    (outcome,) = RULE.evaluate(lesson, context)
    assert (outcome.verdict, outcome.observed) == (Verdict.NOT_APPLICABLE, observed)


def test_peer_to_peer_call_is_not_applicable(lesson: SessionSnapshot) -> None:
    """Direct calls are not joined by link."""
    lesson.kind = SessionKind.PEER_TO_PEER
    assert [o.verdict for o in RULE.evaluate(lesson, _context())] == [Verdict.NOT_APPLICABLE]
