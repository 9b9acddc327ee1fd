"""A recording of a session with pupils in it, without the consent the school requires.

Enforces section 5 (Images) of both schools' guidance: written consent from legal guardians is
needed before any image of a pupil is created (WPS-5.1 / BSF-5.1), and staff must avoid creating
images when alone with one pupil (WPS-5.7.f / BSF-5.7.f); national guidance NG-10 (record a
lesson with a pupil only with explicit written consent). A Teams recording of a session with
pupils in it is taken to be an image of them. A transcript is text, not an image, so it counts
only when ``include_transcripts`` is set. The approval of senior management that 5.1 also asks
for is not recorded in remote_guard, so it is not checked.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from remote_guard.collect.snapshot import Missing, PersonKind, SessionSnapshot
from remote_guard.consent.registers import Registers
from remote_guard.rules._people import local_clock, local_time
from remote_guard.rules._presence import (
    Stretch,
    alone_stretches,
    describe_duration,
    merged_intervals,
)
from remote_guard.rules._recordings import (
    Recording,
    describe_recordings,
    distinct_recordings,
    not_recordable,
    recording_sources,
    recordings_not_read,
)
from remote_guard.rules.base import Outcome, RuleContext, Severity, Verdict


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # never: no recording of a session with pupils; with_consent: every pupil in it needs a
    # valid consent of consent_scope; always: any recording is fine (only the one-to-one check).
    allowed: Literal["never", "with_consent", "always"] = "with_consent"
    consent_scope: str = "recording"
    include_transcripts: bool = False
    forbid_one_to_one: bool = False
    # A moment alone (a pupil leaving a few seconds after the others) is not a one-to-one
    # situation; the same threshold as one_to_one_without_consent.
    one_to_one_threshold_seconds: int = Field(default=120, ge=0, le=3600)


class RecordingInPupilSession:
    id: ClassVar[str] = "recording_in_pupil_session"
    title: ClassVar[str] = "Recording of pupils without consent"
    clauses: ClassVar[tuple[str, ...]] = (
        "WPS-5.1",
        "BSF-5.1",
        "WPS-5.7.f",
        "BSF-5.7.f",
        "NG-10",
    )
    severity: ClassVar[Severity] = Severity.HIGH
    # Attendance is needed only when there is a recording: a session read to have no recording
    # passes even if attendance could not be read (the rule says UNKNOWN itself otherwise).
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.RECORDINGS, Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = Params

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        params = context.params
        if not isinstance(params, Params):
            raise TypeError(f"{self.id} needs its own Params, got {type(params).__name__}")
        not_applicable = not_recordable(snapshot)
        if not_applicable is not None:
            return [not_applicable]
        if snapshot.recordings is None:
            return [recordings_not_read(snapshot, context, "who was recorded")]
        recordings = [
            r
            for r in distinct_recordings(snapshot)
            if r.kind == "recording" or params.include_transcripts
        ]
        if not recordings:
            return [
                Outcome(
                    verdict=Verdict.OK,
                    observed="no recordings",
                    message="This session was not recorded.",
                    sources=("recordings",),
                )
            ]
        if snapshot.presence is None:
            # Who was in a recording is read from attendance; without it nothing can be said.
            return [_presence_unknown(snapshot, recording, context) for recording in recordings]

        outcomes: list[Outcome] = []
        stretches = (
            [
                s
                for s in alone_stretches(snapshot)
                if s.seconds > params.one_to_one_threshold_seconds
            ]
            if params.forbid_one_to_one
            else []
        )
        for recording in recordings:
            problems: list[str] = []
            if params.allowed == "never":
                problems.append("the school allows no recording of sessions with pupils")
            alone = [s for s in stretches if _during(recording, s.start, s.end)]
            if alone:
                problems.append(_alone_phrase(snapshot, alone, context))
            if problems:
                outcomes.append(_recording_breach(snapshot, recording, problems, alone, context))
        if params.allowed == "with_consent":
            outcomes.extend(_consent_breaches(snapshot, recordings, params, context))
        if outcomes:
            return outcomes
        return [
            Outcome(
                verdict=Verdict.OK,
                observed="recordings allowed",
                message=(
                    f"{describe_recordings(recordings).capitalize()} of this session met the "
                    "school's rules on recording pupils."
                ),
                evidence={"recording_ids": [r.id for r in recordings]},
                sources=(*recording_sources(recordings), "attendance"),
            )
        ]


def _during(recording: Recording, start: datetime, end: datetime) -> bool:
    """Whether ``start``-``end`` falls while the recording may have been running.

    The snapshot keeps a recording's start but not its end, so a recording is taken to run
    from its start until the session ends: a pupil who joins after recording began is in it.
    A recording with no known start is taken to cover the whole session.
    """
    return recording.started is None or end > recording.started


def _pupils_in(snapshot: SessionSnapshot, recording: Recording) -> list[str]:
    return sorted(
        person_id
        for person_id, spans in merged_intervals(snapshot).items()
        if snapshot.person(person_id).kind is PersonKind.PUPIL
        and any(_during(recording, start, end) for start, end in spans)
    )


def _consent_gap(registers: Registers, pupil_id: str, at: datetime, scope: str) -> str | None:
    """None if a consent of ``scope`` covers ``at``; otherwise why not, for the message."""
    consents = [c for c in registers.consents_for(pupil_id) if c.scope == scope]
    if any(c.valid_for(start=at, scope=scope) for c in consents):
        return None
    if not consents:
        return f"no {scope} consent from a parent or carer is on file"
    latest = max(consents, key=lambda c: c.granted_at)
    if latest.withdrawn_at is not None and latest.withdrawn_at <= at:
        return f"the {scope} consent was withdrawn on {latest.withdrawn_at:%d %b %Y}"
    if latest.granted_at > at:
        return f"the {scope} consent was given only after recording started"
    if latest.expires_at is not None and latest.expires_at <= at:
        return f"the {scope} consent expired on {latest.expires_at:%d %b %Y}"
    return f"no {scope} consent covers this recording"


def _consent_breaches(
    snapshot: SessionSnapshot, recordings: list[Recording], params: Params, context: RuleContext
) -> list[Outcome]:
    session_start = snapshot.actual_start or snapshot.scheduled_start or snapshot.collected_at
    gaps: dict[str, list[tuple[Recording, str]]] = {}
    for recording in recordings:
        at = recording.started or session_start
        for pupil_id in _pupils_in(snapshot, recording):
            gap = _consent_gap(context.registers, pupil_id, at, params.consent_scope)
            if gap is not None:
                gaps.setdefault(pupil_id, []).append((recording, gap))
    outcomes = []
    for pupil_id, items in sorted(gaps.items()):
        pupil = snapshot.person(pupil_id)
        recorded = [recording for recording, _ in items]
        reasons = "; ".join(dict.fromkeys(gap for _, gap in items))
        outcomes.append(
            Outcome(
                verdict=Verdict.BREACH,
                subject_key=pupil_id,
                observed=f"recorded without {params.consent_scope} consent",
                message=(
                    f"Pupil {pupil.display_name or pupil_id} was in "
                    f"{describe_recordings(recorded)} of {_label(snapshot)} "
                    f"({_starts(recorded, context)}): {reasons}."
                ),
                next_step=(
                    "DSL: have the recording deleted or the pupil removed from it. Teacher: "
                    "record a parent's or carer's written consent before recording a pupil."
                ),
                evidence={
                    "pupil_id": pupil_id,
                    "recording_ids": [r.id for r in recorded],
                    "started": [r.started.isoformat() if r.started else None for r in recorded],
                    "initiator_ids": [r.initiator_id for r in recorded],
                    "consent_scope": params.consent_scope,
                    "consent": reasons,
                },
                sources=(*recording_sources(recorded), "attendance", "consent_register"),
            )
        )
    return outcomes


def _alone_phrase(snapshot: SessionSnapshot, alone: list[Stretch], context: RuleContext) -> str:
    parts = []
    for stretch in alone:
        staff = snapshot.person(stretch.staff_id)
        pupil = snapshot.person(stretch.pupil_id)
        parts.append(
            f"{staff.display_name or 'a member of staff'} was alone with pupil "
            f"{pupil.display_name or stretch.pupil_id} for {describe_duration(stretch.seconds)} "
            f"from {local_clock(stretch.start, context)}"
        )
    return "it was running while " + " and while ".join(parts)


def _recording_breach(
    snapshot: SessionSnapshot,
    recording: Recording,
    problems: list[str],
    alone: list[Stretch],
    context: RuleContext,
) -> Outcome:
    initiator = snapshot.person(recording.initiator_id) if recording.initiator_id else None
    by = f" started by {initiator.display_name}" if initiator and initiator.display_name else ""
    when = f" at {local_time(recording.started, context)}" if recording.started else ""
    observed = "recorded while alone with one pupil" if alone else "recording of pupils"
    return Outcome(
        verdict=Verdict.BREACH,
        subject_key=recording.subject_key,
        observed=observed,
        message=(f"A {recording.kind} of {_label(snapshot)}{by}{when}: {'; '.join(problems)}."),
        next_step=(
            "DSL: review the recording and have it deleted if it should not exist. Teacher: do "
            "not record one-to-one sessions, or sessions with pupils where the school forbids it."
        ),
        evidence={
            "recording_id": recording.id,
            "kind": recording.kind,
            "started": recording.started.isoformat() if recording.started else None,
            "initiator_id": recording.initiator_id,
            "alone": [
                {
                    "staff_id": s.staff_id,
                    "pupil_id": s.pupil_id,
                    "from": s.start.isoformat(),
                    "until": s.end.isoformat(),
                }
                for s in alone
            ],
        },
        sources=(*recording_sources([recording]), "attendance"),
    )


def _presence_unknown(
    snapshot: SessionSnapshot, recording: Recording, context: RuleContext
) -> Outcome:
    when = f" at {local_time(recording.started, context)}" if recording.started else ""
    return Outcome(
        verdict=Verdict.UNKNOWN,
        subject_key=recording.subject_key,
        observed="who was recorded is not known",
        message=(
            f"A {recording.kind} of {_label(snapshot)} was made{when}, but attendance could "
            f"not be read, so which pupils were in the {recording.kind} is not known."
        ),
        next_step="Check the attendance-report permission; the session is re-checked.",
        evidence={"recording_id": recording.id, "kind": recording.kind},
        sources=recording_sources([recording]),
    )


def _label(snapshot: SessionSnapshot) -> str:
    return f"\u201c{snapshot.subject}\u201d" if snapshot.subject else "a session"


def _starts(recordings: list[Recording], context: RuleContext) -> str:
    times = [local_time(r.started, context) for r in recordings if r.started]
    return "started " + ", ".join(times) if times else "start not known"


RULE = RecordingInPupilSession()
