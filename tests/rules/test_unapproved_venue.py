"""A Teams meeting with pupils held somewhere the school has not approved."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from remote_guard.collect.snapshot import ChannelRef, SessionKind, SessionSnapshot
from remote_guard.consent.registers import ApprovalStatus, Registers, Registration
from remote_guard.rules.base import RuleContext, Verdict
from remote_guard.rules.unapproved_venue import RULE, Params
from tests.rules.factory import END, PUPIL, SLT, START, TEACHER, presence

NOW = END + timedelta(hours=1)
BEFORE = START - timedelta(days=1)
OAK_THREAD = "19:oakgeneral@thread.tacv2"
OAK_JOIN = (
    "https://teams.microsoft.com/l/meetup-join/19%3aoakgeneral%40thread.tacv2/1763460000000"
    "?context=%7b%22Tid%22%3a%22t%22%7d"
)
WHINGATE: dict[str, Any] = {
    "approved_teams": [],
    "allow_private_meetings": False,
    "allow_registered_one_to_ones": True,
    "allow_unscheduled": False,
}


def _context(
    registers: Registers | None = None, /, *, now: datetime = NOW, **params: Any
) -> RuleContext:
    return RuleContext(
        now=now, tenant_id="t", registers=registers or Registers(), params=Params(**params)
    )


def _verdicts(snapshot: SessionSnapshot, context: RuleContext) -> list[Verdict]:
    return [o.verdict for o in RULE.evaluate(snapshot, context)]


@pytest.fixture
def channel_lesson(lesson: SessionSnapshot) -> SessionSnapshot:
    """The lesson held in the Oak Class team's General channel."""
    lesson.kind = SessionKind.CHANNEL_MEETING
    lesson.join_url = OAK_JOIN
    lesson.invitee_ids = []
    lesson.channel = ChannelRef(
        thread_id=OAK_THREAD,
        team_id="team-oak",
        channel_id=OAK_THREAD,
        team_name="Year 3 Oak Class",
        channel_name="General",
    )
    return lesson


def _registration(**changes: object) -> Registers:
    registration = Registration(
        id="r1",
        staff_id=TEACHER.id,
        pupil_id=PUPIL.id,
        activity="reading",
        join_url="https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0",
        status=ApprovalStatus.APPROVED,
        approved_by=SLT.id,
        approved_at=START - timedelta(days=2),
    ).model_copy(update=changes)
    return Registers(registrations=(registration,))


def test_defaults_approve_every_team_and_private_meetings(
    lesson: SessionSnapshot, channel_lesson: SessionSnapshot
) -> None:
    """With the defaults every Teams meeting of the school is an approved venue."""
    assert _verdicts(lesson, _context()) == [Verdict.OK]
    assert _verdicts(channel_lesson, _context()) == [Verdict.OK]


@pytest.mark.parametrize("team", ["Year 3 Oak Class", "year 3 oak class ", "team-oak"])
def test_channel_meeting_in_an_approved_team_is_ok(
    channel_lesson: SessionSnapshot, team: str
) -> None:
    """A team is approved by display name (any case) or id."""
    assert _verdicts(channel_lesson, _context(approved_teams=[team])) == [Verdict.OK]


def test_channel_meeting_in_another_team_is_a_breach(channel_lesson: SessionSnapshot) -> None:
    """A team not on the list is a breach about the session as a whole."""
    (outcome,) = RULE.evaluate(channel_lesson, _context(approved_teams=["Year 4 Ash Class"]))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.subject_key == ""
    assert outcome.evidence["team_name"] == "Year 3 Oak Class"
    assert "not on the school's list of approved teams" in outcome.message
    assert "\u201cYear 3 maths\u201d (Wed 18 Nov 10:00)" in outcome.message


def test_no_team_approved_yet_makes_every_channel_meeting_a_breach(
    channel_lesson: SessionSnapshot,
) -> None:
    """approved_teams = [] means nothing is approved yet."""
    (outcome,) = RULE.evaluate(channel_lesson, _context(approved_teams=[]))
    assert outcome.verdict is Verdict.BREACH
    assert "approved no team" in outcome.message


def test_channel_not_matched_to_a_team_is_unknown(channel_lesson: SessionSnapshot) -> None:
    """A list of teams cannot be checked when the channel's team is not known."""
    channel_lesson.channel = ChannelRef(thread_id=OAK_THREAD)
    assert _verdicts(channel_lesson, _context(approved_teams=["Year 3 Oak Class"])) == [
        Verdict.UNKNOWN
    ]


def test_private_meeting_is_a_breach_when_not_allowed(lesson: SessionSnapshot) -> None:
    """allow_private_meetings = False: a private lesson with pupils breaches."""
    (outcome,) = RULE.evaluate(lesson, _context(allow_private_meetings=False))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.observed == "a private meeting with pupils, not approved"
    assert "pupils Amelia K. and Noah B." in outcome.message


def test_private_meeting_is_flagged_before_it_starts(lesson: SessionSnapshot) -> None:
    """The check runs on an upcoming meeting, from its invitation alone."""
    lesson.presence = None
    assert _verdicts(lesson, _context(now=BEFORE, allow_private_meetings=False)) == [Verdict.BREACH]


def test_registered_one_to_one_is_an_approved_arrangement(lesson: SessionSnapshot) -> None:
    """An approved registration for the organiser and the one pupil covers a private meeting."""
    lesson.invitee_ids = [PUPIL.id]
    lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    (outcome,) = RULE.evaluate(lesson, _context(_registration(), **WHINGATE))
    assert outcome.verdict is Verdict.OK
    assert outcome.evidence["registration_id"] == "r1"


def test_registration_not_approved_does_not_cover(lesson: SessionSnapshot) -> None:
    """A pending registration is not an approved arrangement."""
    lesson.invitee_ids = [PUPIL.id]
    lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    registers = _registration(status=ApprovalStatus.PENDING)
    assert _verdicts(lesson, _context(registers, **WHINGATE)) == [Verdict.BREACH]


def test_registration_is_ignored_when_the_school_says_so(lesson: SessionSnapshot) -> None:
    """allow_registered_one_to_ones = False: even a registered one-to-one breaches."""
    lesson.invitee_ids = [PUPIL.id]
    lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    params = {**WHINGATE, "allow_registered_one_to_ones": False}
    assert _verdicts(lesson, _context(_registration(), **params)) == [Verdict.BREACH]


def test_registration_for_one_pupil_does_not_cover_a_group(lesson: SessionSnapshot) -> None:
    """Two pupils are not a one-to-one, whatever is registered for one of them."""
    assert _verdicts(lesson, _context(_registration(), **WHINGATE)) == [Verdict.BREACH]


def test_unscheduled_meeting_is_a_breach_when_not_allowed(lesson: SessionSnapshot) -> None:
    """A Meet now meeting (no calendar entry) with pupils breaches when not allowed."""
    lesson.scheduled_start = lesson.scheduled_end = None
    lesson.actual_start, lesson.actual_end = START, END
    (outcome,) = RULE.evaluate(lesson, _context(allow_unscheduled=False))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.evidence["unscheduled"] is True
    assert "Meet now" in outcome.message
    assert outcome.sources[0] == "call_record"


def test_unscheduled_meeting_is_ok_by_default(lesson: SessionSnapshot) -> None:
    """allow_unscheduled defaults to True."""
    lesson.scheduled_start = lesson.scheduled_end = None
    assert _verdicts(lesson, _context()) == [Verdict.OK]


def test_private_and_unscheduled_give_one_breach_with_both_reasons(
    lesson: SessionSnapshot,
) -> None:
    """One session, one finding: the reasons are listed together."""
    lesson.scheduled_start = lesson.scheduled_end = None
    (outcome,) = RULE.evaluate(lesson, _context(**WHINGATE))
    assert len(outcome.evidence["problems"]) == 2


def test_unscheduled_meeting_in_a_channel_is_seen_from_its_join_url(
    lesson: SessionSnapshot,
) -> None:
    """A channel Meet now found only from its call record is judged as a channel meeting."""
    lesson.scheduled_start = lesson.scheduled_end = None
    lesson.join_url = OAK_JOIN
    (outcome,) = RULE.evaluate(lesson, _context(allow_private_meetings=False))
    assert outcome.verdict is Verdict.OK
    assert outcome.evidence["channel_thread_id"] == OAK_THREAD


def test_meeting_without_pupils_is_not_applicable(lesson: SessionSnapshot) -> None:
    """A staff meeting is no contact with pupils."""
    lesson.invitee_ids = []
    lesson.presence = [presence(TEACHER, (0, 30))]
    assert _verdicts(lesson, _context(**WHINGATE)) == [Verdict.NOT_APPLICABLE]


def test_cancelled_meeting_is_not_applicable(lesson: SessionSnapshot) -> None:
    """A cancelled meeting that nobody joined does not happen anywhere."""
    lesson.is_cancelled = True
    lesson.presence = None
    assert _verdicts(lesson, _context(now=BEFORE, **WHINGATE)) == [Verdict.NOT_APPLICABLE]


@pytest.mark.parametrize(
    "kind", [SessionKind.PEER_TO_PEER, SessionKind.DIRECT_CHAT, SessionKind.OTHER_PROVIDER]
)
def test_calls_chats_and_other_providers_are_not_applicable(
    lesson: SessionSnapshot, kind: SessionKind
) -> None:
    """Other rules cover direct calls, chats and non-Teams meetings."""
    lesson.kind = kind
    assert _verdicts(lesson, _context(**WHINGATE)) == [Verdict.NOT_APPLICABLE]


def test_params_refuse_unknown_fields() -> None:
    """A misspelt parameter in a profile is refused, not ignored."""
    with pytest.raises(ValueError, match="approved_team"):
        Params(approved_team=["Oak"])  # type: ignore[call-arg]


def test_team_pupils_make_an_upcoming_channel_meeting_a_session_with_pupils(
    channel_lesson: SessionSnapshot,
) -> None:
    """Before anyone joins, the team's pupils are who a channel meeting is for."""
    channel_lesson.presence = None
    channel_lesson.channel = channel_lesson.channel.model_copy(  # type: ignore[union-attr]
        update={"member_ids": [TEACHER.id, PUPIL.id]}
    )
    (outcome,) = RULE.evaluate(channel_lesson, _context(now=BEFORE, approved_teams=[]))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.evidence["expected_pupil_ids"] == [PUPIL.id]
