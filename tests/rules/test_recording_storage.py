"""Where a recording of pupils is saved, and whether pupils can open it there."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import (
    ChannelRef,
    RecordingEvent,
    SessionKind,
    SessionSnapshot,
)
from remote_guard.rules.base import RuleContext, Verdict
from remote_guard.rules.recording_storage import RULE, Params
from tests.rules.factory import COTEACHER, END, GUEST, PUPIL, PUPIL2, TEACHER, at, presence

NOW = END + timedelta(hours=1)


def _context(**params: object) -> RuleContext:
    return RuleContext(now=NOW, tenant_id="t", params=Params(**params))  # type: ignore[arg-type]


def _recording(initiator: str | None, kind: str = "recording") -> RecordingEvent:
    return RecordingEvent(
        id="chat:m1",
        kind=kind,
        started=at(2),
        initiator_id=initiator,
        source="chat_event" if initiator else "recordings_api",
    )  # type: ignore[arg-type]


@pytest.fixture
def channel_lesson(lesson: SessionSnapshot) -> SessionSnapshot:
    """The lesson held in the Oak Class team's General channel, whose members are pupils."""
    lesson.kind = SessionKind.CHANNEL_MEETING
    lesson.invitee_ids = []
    lesson.channel = ChannelRef(
        thread_id="19:general@thread.tacv2",
        team_id="team-oak",
        team_name="Year 3 Oak Class",
        member_ids=[TEACHER.id, PUPIL.id, PUPIL2.id],
    )
    return lesson


def _verdicts(snapshot: SessionSnapshot, context: RuleContext) -> list[tuple[str, str]]:
    return [(o.verdict.value, o.subject_key) for o in RULE.evaluate(snapshot, context)]


def test_channel_recording_in_a_class_team_is_a_breach(channel_lesson: SessionSnapshot) -> None:
    """The team's site is open to its pupil members."""
    channel_lesson.recordings = [_recording(TEACHER.id)]
    (outcome,) = RULE.evaluate(channel_lesson, _context())
    assert (outcome.verdict, outcome.subject_key) == (Verdict.BREACH, "recording:chat:m1")
    assert outcome.evidence["pupil_ids"] == [PUPIL.id, PUPIL2.id]
    assert outcome.message == (
        "The recording of \u201cYear 3 maths\u201d (started Wed 18 Nov 10:02) is saved in the "
        "Year 3 Oak Class team's SharePoint site, where 2 pupils (Amelia K., Noah B.) can open "
        "it, not only teaching staff."
    )


def test_pupils_may_open_makes_the_channel_recording_fine(
    channel_lesson: SessionSnapshot,
) -> None:
    """A school that lets pupils rewatch lessons sets pupils_may_open."""
    channel_lesson.recordings = [_recording(TEACHER.id)]
    assert _verdicts(channel_lesson, _context(pupils_may_open=True)) == [("ok", "")]


def test_staff_only_team_is_fine(channel_lesson: SessionSnapshot) -> None:
    """A staff team's site holds no pupils; nobody else was present either."""
    assert channel_lesson.channel is not None
    channel_lesson.channel.member_ids = [TEACHER.id, COTEACHER.id]
    channel_lesson.presence = [presence(TEACHER, (0, 30)), presence(COTEACHER, (0, 30))]
    channel_lesson.recordings = [_recording(TEACHER.id)]
    assert _verdicts(channel_lesson, _context()) == [("ok", "")]


def test_unknown_team_members_count_the_pupils_present(channel_lesson: SessionSnapshot) -> None:
    """Members not read: the pupils who were present still show the site is theirs."""
    assert channel_lesson.channel is not None
    channel_lesson.channel.member_ids = []
    channel_lesson.recordings = [_recording(TEACHER.id)]
    assert _verdicts(channel_lesson, _context()) == [("breach", "recording:chat:m1")]


def test_unknown_team_members_and_no_pupils_present_is_unknown(
    channel_lesson: SessionSnapshot,
) -> None:
    """Nothing shows who can open the site: UNKNOWN, never OK."""
    assert channel_lesson.channel is not None
    channel_lesson.channel.member_ids = []
    channel_lesson.presence = [presence(TEACHER, (0, 30))]
    channel_lesson.recordings = [_recording(TEACHER.id)]
    assert _verdicts(channel_lesson, _context()) == [("unknown", "recording:chat:m1")]


def test_private_meeting_recording_in_the_organisers_onedrive_is_fine(
    lesson: SessionSnapshot,
) -> None:
    """A staff organiser's OneDrive is staff storage, once the school has stopped Teams sharing
    the recording with the invited pupils."""
    lesson.recordings = [_recording(PUPIL.id)]
    assert _verdicts(lesson, _context(invitees_can_open=False)) == [("ok", "")]


def test_by_default_invited_pupils_can_open_a_private_meetings_recording(
    lesson: SessionSnapshot,
) -> None:
    """Microsoft's default shares it, view only, with the invitees: a breach for pupils."""
    lesson.recordings = [_recording(TEACHER.id)]
    (outcome,) = RULE.evaluate(lesson, _context())
    assert outcome.verdict is Verdict.BREACH
    assert outcome.observed == "shared with pupils"


def test_stored_with_initiator_puts_a_pupils_recording_in_their_onedrive(
    lesson: SessionSnapshot,
) -> None:
    """Under RecordingInitiator ownership the pupil who started it owns the file."""
    lesson.recordings = [_recording(PUPIL.id)]
    (outcome,) = RULE.evaluate(lesson, _context(stored_with_initiator=True))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.observed == "stored in a pupil's OneDrive"
    assert "pupil Amelia K.'s own OneDrive" in outcome.message


def test_stored_with_initiator_and_a_staff_initiator_is_fine(lesson: SessionSnapshot) -> None:
    """The teacher started it: it is in the teacher's OneDrive."""
    lesson.recordings = [_recording(TEACHER.id)]
    assert _verdicts(lesson, _context(stored_with_initiator=True, invitees_can_open=False)) == [
        ("ok", "")
    ]


def test_stored_with_initiator_but_initiator_unknown(lesson: SessionSnapshot) -> None:
    """Whose OneDrive it is cannot be told without the initiator: UNKNOWN."""
    lesson.recordings = [_recording(None)]
    assert _verdicts(lesson, _context(stored_with_initiator=True)) == [
        ("unknown", "recording:chat:m1")
    ]


def test_pupil_organised_meeting_recording_is_in_the_pupils_onedrive(
    lesson: SessionSnapshot,
) -> None:
    """The organiser's OneDrive is a pupil's when a pupil organised the meeting."""
    lesson.organizer_id = PUPIL.id
    lesson.recordings = [_recording(TEACHER.id)]
    assert _verdicts(lesson, _context()) == [("breach", "recording:chat:m1")]


def test_outside_organiser_is_unknown(lesson: SessionSnapshot) -> None:
    """A recording in someone else's OneDrive outside the staff cannot be judged."""
    lesson.organizer_id = GUEST.id
    lesson.recordings = [_recording(TEACHER.id)]
    assert _verdicts(lesson, _context()) == [("unknown", "recording:chat:m1")]


def test_invitees_can_open_shares_a_private_recording_with_invited_pupils(
    lesson: SessionSnapshot,
) -> None:
    """With Microsoft's default sharing the invited pupils can open it."""
    lesson.recordings = [_recording(TEACHER.id)]
    (outcome,) = RULE.evaluate(lesson, _context(invitees_can_open=True))
    assert (outcome.verdict, outcome.observed) == (Verdict.BREACH, "shared with pupils")


def test_transcripts_are_not_images(channel_lesson: SessionSnapshot) -> None:
    """Only recordings are checked."""
    channel_lesson.recordings = [_recording(TEACHER.id, kind="transcript")]
    assert _verdicts(channel_lesson, _context()) == [("ok", "")]


def test_recordings_not_read_after_the_end_is_unknown(channel_lesson: SessionSnapshot) -> None:
    """Never OK without the data."""
    channel_lesson.recordings = None
    assert _verdicts(channel_lesson, _context()) == [("unknown", "")]
