"""A pupil started a recording or transcript of a live session.

Enforces BSF Appendix A, pupils working remotely, bullet 2 (BSF-A.pupil-remote.2): pupils and
parents should not video or photograph live sessions; national guidance NG-14 (prevent pupils
recording live sessions). Teams shows who started a recording only in the meeting chat's
``callRecordingEventMessageDetail``; a recording the recordings API lists is matched to that
event by its start time. Screenshots and second devices cannot be seen.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from remote_guard.collect.snapshot import (
    Missing,
    PersonKind,
    SessionSnapshot,
)
from remote_guard.rules._people import local_time
from remote_guard.rules._recordings import (
    Recording,
    describe_recordings,
    distinct_recordings,
    not_recordable,
    recording_sources,
    recordings_not_read,
)
from remote_guard.rules.base import NoParams, Outcome, RuleContext, Severity, Verdict


class PupilStartedRecording:
    id: ClassVar[str] = "pupil_started_recording"
    title: ClassVar[str] = "Pupil recording a live session"
    clauses: ClassVar[tuple[str, ...]] = ("BSF-A.pupil-remote.2", "NG-14")
    severity: ClassVar[Severity] = Severity.HIGH
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.RECORDINGS, Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = NoParams

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        not_applicable = not_recordable(snapshot)
        if not_applicable is not None:
            return [not_applicable]
        if snapshot.recordings is None:
            return [recordings_not_read(snapshot, context, "whether a pupil recorded it")]
        subject = snapshot.subject or "a session"
        by_pupil: dict[str, list[Recording]] = {}
        outcomes: list[Outcome] = []
        for recording in distinct_recordings(snapshot):
            if recording.initiator_id is None:
                outcomes.append(_unknown_initiator(snapshot, recording, context))
                continue
            if snapshot.person(recording.initiator_id).kind is PersonKind.PUPIL:
                by_pupil.setdefault(recording.initiator_id, []).append(recording)
        for pupil_id, recordings in sorted(by_pupil.items()):
            pupil = snapshot.person(pupil_id)
            name = pupil.display_name or pupil_id
            what = describe_recordings(recordings)
            when = ", ".join(local_time(r.started, context) for r in recordings if r.started)
            outcomes.append(
                Outcome(
                    verdict=Verdict.BREACH,
                    subject_key=pupil_id,
                    observed=f"pupil started {what}",
                    message=(
                        f"Pupil {name} started {what} of \u201c{subject}\u201d"
                        f"{f' ({when})' if when else ''}."
                    ),
                    next_step=(
                        "Teacher: ask the pupil and parents to delete any copy and remind them "
                        "of the code of practice; make pupils attendees (allowed presenters: "
                        "organiser only) so they cannot record."
                    ),
                    evidence={
                        "pupil_id": pupil_id,
                        "recording_ids": [r.id for r in recordings],
                        "kinds": [r.kind for r in recordings],
                        "started": [
                            r.started.isoformat() if r.started else None for r in recordings
                        ],
                        "event_ids": [list(r.event_ids) for r in recordings],
                    },
                    sources=recording_sources(recordings),
                )
            )
        if outcomes:
            return outcomes
        return [
            Outcome(
                verdict=Verdict.OK,
                observed="no pupil recording" if snapshot.recordings else "no recordings",
                message="No pupil started a recording or transcript of this session.",
                sources=("recordings",),
            )
        ]


def _unknown_initiator(
    snapshot: SessionSnapshot, recording: Recording, context: RuleContext
) -> Outcome:
    if snapshot.chat is None:
        why = "the meeting chat, which names who starts a recording, could not be read"
    elif recording.kind == "transcript":
        why = "Teams does not say who starts a transcript"
    else:
        why = "no recording message in the meeting chat matches it"
    when = f" at {local_time(recording.started, context)}" if recording.started else ""
    return Outcome(
        verdict=Verdict.UNKNOWN,
        subject_key=recording.subject_key,
        observed=f"who started the {recording.kind} is not known",
        message=(
            f"Who started the {recording.kind} of "
            f"\u201c{snapshot.subject or 'a session'}\u201d{when} is not known: {why}."
        ),
        next_step=(
            f"Teacher or DSL: check in Teams who started the {recording.kind}; if it was a "
            "pupil, follow the code of practice."
        ),
        evidence={
            "recording_id": recording.id,
            "kind": recording.kind,
            "started": recording.started.isoformat() if recording.started else None,
            "chat_read": snapshot.chat is not None,
        },
        sources=recording_sources([recording]),
    )


RULE = PupilStartedRecording()
