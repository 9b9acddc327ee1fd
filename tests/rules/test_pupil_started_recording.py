"""A pupil starting a recording or transcript; API recordings matched to the chat's initiator."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import RecordingEvent, SessionKind, SessionSnapshot
from remote_guard.rules._recordings import distinct_recordings
from remote_guard.rules.base import NoParams, RuleContext, Verdict
from remote_guard.rules.pupil_started_recording import RULE
from tests.rules.factory import END, PUPIL, PUPIL2, TEACHER, at

CONTEXT = RuleContext(now=END + timedelta(hours=1), tenant_id="t", params=NoParams())


def _api(recording_id: str, minute: float, kind: str = "recording") -> RecordingEvent:
    return RecordingEvent(
        id=f"recordings:{recording_id}", kind=kind, started=at(minute), source="recordings_api"
    )  # type: ignore[arg-type]


def _chat(
    message_id: str, minute: float, initiator: str, kind: str = "recording"
) -> RecordingEvent:
    return RecordingEvent(
        id=f"chat:{message_id}",
        kind=kind,
        started=at(minute),
        initiator_id=initiator,
        source="chat_event",
    )  # type: ignore[arg-type]


def test_no_recordings_is_ok(lesson: SessionSnapshot) -> None:
    """A lesson nobody recorded passes."""
    outcomes = RULE.evaluate(lesson, CONTEXT)
    assert [(o.verdict, o.observed) for o in outcomes] == [(Verdict.OK, "no recordings")]


def test_pupil_recording_from_the_chat_event_is_a_breach(lesson: SessionSnapshot) -> None:
    """The chat's callRecording message names the pupil, who gets one breach."""
    lesson.recordings = [_api("r1", 5), _chat("m1", 5, PUPIL.id)]
    (outcome,) = RULE.evaluate(lesson, CONTEXT)
    assert outcome.verdict is Verdict.BREACH
    assert outcome.subject_key == PUPIL.id
    assert outcome.evidence["recording_ids"] == ["recordings:r1"]
    assert (
        outcome.message
        == "Pupil Amelia K. started a recording of \u201cYear 3 maths\u201d (Wed 18 Nov 10:05)."
    )


def test_teacher_recording_is_fine(lesson: SessionSnapshot) -> None:
    """A recording the teacher started is not this rule's concern."""
    lesson.recordings = [_api("r1", 1), _chat("m1", 1, TEACHER.id)]
    assert [o.verdict for o in RULE.evaluate(lesson, CONTEXT)] == [Verdict.OK]


def test_two_recordings_by_one_pupil_give_one_breach(lesson: SessionSnapshot) -> None:
    """One finding per pupil, listing both recordings; another pupil's own is separate."""
    lesson.recordings = [
        _api("r1", 5),
        _chat("m1", 5, PUPIL.id),
        _api("r2", 20),
        _chat("m2", 20, PUPIL.id),
        _chat("m3", 25, PUPIL2.id),
    ]
    outcomes = RULE.evaluate(lesson, CONTEXT)
    assert [(o.subject_key, o.evidence["recording_ids"]) for o in outcomes] == [
        (PUPIL.id, ["recordings:r1", "recordings:r2"]),
        (PUPIL2.id, ["chat:m3"]),
    ]
    assert outcomes[0].observed == "pupil started 2 recordings"


@pytest.mark.parametrize(("gap_minutes", "matched"), [(4.9, True), (5.0, True), (5.1, False)])
def test_api_recording_takes_the_initiator_within_five_minutes(
    lesson: SessionSnapshot, gap_minutes: float, matched: bool
) -> None:
    """The recordings API item is paired with the chat event up to 5 minutes apart."""
    lesson.recordings = [_api("r1", 5), _chat("m1", 5 + gap_minutes, PUPIL.id)]
    outcomes = RULE.evaluate(lesson, CONTEXT)
    verdicts = sorted((o.verdict.value, o.subject_key) for o in outcomes)
    if matched:
        assert verdicts == [("breach", PUPIL.id)]
    else:
        # Unpaired: the chat's recording is the pupil's; the API one has no known initiator.
        assert verdicts == [("breach", PUPIL.id), ("unknown", "recording:recordings:r1")]


def test_nearest_chat_event_wins(lesson: SessionSnapshot) -> None:
    """Two recordings close together each take their own chat event."""
    lesson.recordings = [
        _api("r1", 5),
        _api("r2", 8),
        _chat("m1", 5, TEACHER.id),
        _chat("m2", 8, PUPIL.id),
    ]
    merged = distinct_recordings(lesson)
    assert [(r.id, r.initiator_id) for r in merged] == [
        ("recordings:r1", TEACHER.id),
        ("recordings:r2", PUPIL.id),
    ]


def test_api_recording_without_the_chat_is_unknown(lesson: SessionSnapshot) -> None:
    """With the meeting chat unread, who started the recording is UNKNOWN, never OK."""
    lesson.chat = None
    lesson.recordings = [_api("r1", 5)]
    (outcome,) = RULE.evaluate(lesson, CONTEXT)
    assert outcome.verdict is Verdict.UNKNOWN
    assert outcome.subject_key == "recording:recordings:r1"
    assert "could not be read" in outcome.message


def test_transcript_has_no_initiator_in_graph(lesson: SessionSnapshot) -> None:
    """Teams names no initiator for a transcript: UNKNOWN, with that reason."""
    lesson.recordings = [_api("t1", 5, kind="transcript")]
    (outcome,) = RULE.evaluate(lesson, CONTEXT)
    assert outcome.verdict is Verdict.UNKNOWN
    assert "does not say who starts a transcript" in outcome.message


def test_pupil_transcript_named_in_the_chat_is_a_breach(lesson: SessionSnapshot) -> None:
    """A transcript whose initiator is known to be a pupil counts like a recording."""
    lesson.recordings = [_chat("m1", 5, PUPIL.id, kind="transcript")]
    (outcome,) = RULE.evaluate(lesson, CONTEXT)
    assert (outcome.verdict, outcome.observed) == (Verdict.BREACH, "pupil started a transcript")


def test_recordings_not_read_after_the_session_is_unknown(lesson: SessionSnapshot) -> None:
    """An ended session whose recordings were never read is UNKNOWN."""
    lesson.recordings = None
    assert [o.verdict for o in RULE.evaluate(lesson, CONTEXT)] == [Verdict.UNKNOWN]


def test_recordings_not_read_before_the_end_is_not_applicable(lesson: SessionSnapshot) -> None:
    """Recordings are read after a session ends; until then nothing is claimed."""
    lesson.recordings = None
    early = RuleContext(now=at(10), tenant_id="t", params=NoParams())
    assert [o.verdict for o in RULE.evaluate(lesson, early)] == [Verdict.NOT_APPLICABLE]


def test_direct_chat_is_not_applicable(lesson: SessionSnapshot) -> None:
    """A chat outside any call has nothing to record."""
    lesson.kind = SessionKind.DIRECT_CHAT
    assert [o.verdict for o in RULE.evaluate(lesson, CONTEXT)] == [Verdict.NOT_APPLICABLE]


def test_direct_call_recordings_not_read_are_unknown(lesson: SessionSnapshot) -> None:
    """The collector does not read a direct call's recordings: UNKNOWN, saying so."""
    lesson.kind = SessionKind.PEER_TO_PEER
    lesson.subject = None
    lesson.recordings = None
    (outcome,) = RULE.evaluate(lesson, CONTEXT)
    assert outcome.verdict is Verdict.UNKNOWN
    assert outcome.message == (
        "The recordings of this direct call were not read, so whether a pupil recorded it "
        "could not be checked."
    )
