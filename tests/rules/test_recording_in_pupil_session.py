"""Recordings of pupils: parental consent before any image, none while alone with one pupil."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import RecordingEvent, SessionSnapshot
from remote_guard.consent.registers import Consent, Registers
from remote_guard.rules.base import RuleContext, Verdict
from remote_guard.rules.recording_in_pupil_session import RULE, Params
from tests.rules.factory import END, PUPIL, PUPIL2, START, TEACHER, at, presence

NOW = END + timedelta(hours=1)


def _context(*consents: Consent, **params: object) -> RuleContext:
    return RuleContext(
        now=NOW,
        tenant_id="t",
        registers=Registers(consents=consents),
        params=Params(**params),  # type: ignore[arg-type]
    )


def _consent(pupil_id: str = PUPIL.id, **changes: object) -> Consent:
    return Consent(
        id=f"c-{pupil_id}",
        pupil_id=pupil_id,
        scope="recording",
        granted_by="Sarah K.",
        relationship="mother",
        granted_at=START - timedelta(days=10),
    ).model_copy(update=changes)


def _recording(minute: float, kind: str = "recording", rid: str = "r1") -> RecordingEvent:
    return RecordingEvent(
        id=f"recordings:{rid}",
        kind=kind,
        started=at(minute),
        initiator_id=TEACHER.id,
        source="chat_event",
    )  # type: ignore[arg-type]


def _breaches(snapshot: SessionSnapshot, context: RuleContext) -> list[str]:
    return [o.subject_key for o in RULE.evaluate(snapshot, context) if o.verdict is Verdict.BREACH]


def test_unrecorded_lesson_is_ok(lesson: SessionSnapshot) -> None:
    """No recording, nothing to consent to."""
    assert [o.verdict for o in RULE.evaluate(lesson, _context())] == [Verdict.OK]


def test_each_pupil_without_consent_is_a_breach(lesson: SessionSnapshot) -> None:
    """Both pupils were in the teacher's recording and neither has recording consent."""
    lesson.recordings = [_recording(2)]
    outcomes = RULE.evaluate(lesson, _context())
    assert [o.subject_key for o in outcomes] == [PUPIL.id, PUPIL2.id]
    assert outcomes[0].message == (
        "Pupil Amelia K. was in a recording of \u201cYear 3 maths\u201d (started Wed 18 Nov "
        "10:02): no recording consent from a parent or carer is on file."
    )


def test_pupil_with_consent_is_fine_the_other_is_not(lesson: SessionSnapshot) -> None:
    """Consent covers only its own pupil."""
    lesson.recordings = [_recording(2)]
    assert _breaches(lesson, _context(_consent(PUPIL.id))) == [PUPIL2.id]


def test_everyone_consented_is_ok(lesson: SessionSnapshot) -> None:
    """With both consents on file the recording is allowed."""
    lesson.recordings = [_recording(2)]
    outcomes = RULE.evaluate(lesson, _context(_consent(PUPIL.id), _consent(PUPIL2.id)))
    assert [o.verdict for o in outcomes] == [Verdict.OK]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"scope": "one_to_one"}, "no recording consent from a parent or carer is on file"),
        ({"granted_at": at(3)}, "the recording consent was given only after recording started"),
        ({"withdrawn_at": at(-60)}, "the recording consent was withdrawn on 18 Nov 2026"),
        ({"expires_at": at(1)}, "the recording consent expired on 18 Nov 2026"),
    ],
)
def test_consent_that_does_not_cover_the_recording(
    lesson: SessionSnapshot, changes: dict[str, object], reason: str
) -> None:
    """Another scope, a late, withdrawn or expired consent does not cover the recording."""
    lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    lesson.recordings = [_recording(2)]
    (outcome,) = RULE.evaluate(lesson, _context(_consent(**changes)))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.evidence["consent"] == reason


def test_pupil_who_left_before_recording_started_is_not_in_it(lesson: SessionSnapshot) -> None:
    """Noah left at 10:10; the recording started at 10:12."""
    lesson.presence = [
        presence(TEACHER, (0, 30)),
        presence(PUPIL, (0, 30)),
        presence(PUPIL2, (0, 10)),
    ]
    lesson.recordings = [_recording(12)]
    assert _breaches(lesson, _context()) == [PUPIL.id]


def test_pupil_who_joined_after_recording_started_is_in_it(lesson: SessionSnapshot) -> None:
    """The recording's end is not known, so it is taken to run on: a late joiner is in it."""
    lesson.presence = [
        presence(TEACHER, (0, 30)),
        presence(PUPIL, (0, 30)),
        presence(PUPIL2, (20, 30)),
    ]
    lesson.recordings = [_recording(1)]
    assert _breaches(lesson, _context(_consent(PUPIL.id))) == [PUPIL2.id]


def test_transcripts_count_only_when_asked(lesson: SessionSnapshot) -> None:
    """A transcript is not an image unless the profile says it counts."""
    lesson.recordings = [_recording(2, kind="transcript")]
    assert _breaches(lesson, _context()) == []
    assert _breaches(lesson, _context(include_transcripts=True)) == [PUPIL.id, PUPIL2.id]


def test_never_allowed_gives_one_breach_per_recording(lesson: SessionSnapshot) -> None:
    """allowed=never: each recording is a breach, whatever the consents."""
    lesson.recordings = [_recording(2, rid="r1"), _recording(20, rid="r2")]
    context = _context(_consent(PUPIL.id), _consent(PUPIL2.id), allowed="never")
    assert _breaches(lesson, context) == ["recording:recordings:r1", "recording:recordings:r2"]


def test_recording_while_alone_with_one_pupil(lesson: SessionSnapshot) -> None:
    """forbid_one_to_one: a recording running while the teacher was alone with Amelia."""
    lesson.presence = [
        presence(TEACHER, (0, 35)),
        presence(PUPIL, (0, 35)),
        presence(PUPIL2, (0, 30)),
    ]
    lesson.recordings = [_recording(31)]
    (outcome,) = RULE.evaluate(lesson, _context(allowed="always", forbid_one_to_one=True))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.subject_key == "recording:recordings:r1"
    assert outcome.observed == "recorded while alone with one pupil"
    assert "Ms Teacher was alone with pupil Amelia K. for 5 min from 10:30" in outcome.message


def test_recording_of_a_whole_class_lesson_is_not_one_to_one(lesson: SessionSnapshot) -> None:
    """Three people throughout: forbid_one_to_one has nothing to say."""
    lesson.recordings = [_recording(2)]
    outcomes = RULE.evaluate(lesson, _context(allowed="always", forbid_one_to_one=True))
    assert [o.verdict for o in outcomes] == [Verdict.OK]


def test_recording_started_before_the_lesson_tail_covers_it(lesson: SessionSnapshot) -> None:
    """A recording started with the whole class may still be running in a one-to-one tail."""
    lesson.presence = [
        presence(TEACHER, (0, 35)),
        presence(PUPIL, (0, 35)),
        presence(PUPIL2, (0, 30)),
    ]
    lesson.recordings = [_recording(1)]
    context = _context(allowed="always", forbid_one_to_one=True)
    assert _breaches(lesson, context) == ["recording:recordings:r1"]


def test_never_and_one_to_one_share_one_outcome(lesson: SessionSnapshot) -> None:
    """Both problems of one recording go in one outcome, so its subject key is not repeated."""
    lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    lesson.recordings = [_recording(2)]
    (outcome,) = RULE.evaluate(lesson, _context(allowed="never", forbid_one_to_one=True))
    assert "allows no recording" in outcome.message
    assert "alone with pupil Amelia K." in outcome.message


def test_attendance_not_read_is_unknown(lesson: SessionSnapshot) -> None:
    """Without attendance, who was recorded is UNKNOWN, never OK."""
    lesson.presence = None
    lesson.recordings = [_recording(2)]
    (outcome,) = RULE.evaluate(lesson, _context())
    assert (outcome.verdict, outcome.subject_key) == (Verdict.UNKNOWN, "recording:recordings:r1")


def test_api_and_chat_event_of_one_recording_count_once(lesson: SessionSnapshot) -> None:
    """The recordings API item and its chat message are the same recording."""
    lesson.recordings = [
        RecordingEvent(
            id="recordings:r1", kind="recording", started=at(2), source="recordings_api"
        ),
        _recording(2, rid="m1"),
    ]
    outcomes = RULE.evaluate(lesson, _context(allowed="never"))
    assert [o.subject_key for o in outcomes] == ["recording:recordings:r1"]


def test_a_moment_alone_is_not_a_one_to_one(lesson: SessionSnapshot) -> None:
    """Amelia leaving a minute after Noah is not a one-to-one situation to record in."""
    lesson.presence = [
        presence(TEACHER, (0, 31)),
        presence(PUPIL, (0, 31)),
        presence(PUPIL2, (0, 30)),
    ]
    lesson.recordings = [_recording(2)]
    outcomes = RULE.evaluate(lesson, _context(allowed="always", forbid_one_to_one=True))
    assert [o.verdict for o in outcomes] == [Verdict.OK]
