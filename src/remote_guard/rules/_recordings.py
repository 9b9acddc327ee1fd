"""The recordings and transcripts of a session, each counted once, with who started it.

Graph reports one Teams recording in two places: the recordings API (``callRecording``, which
has a creation time but no initiator) and the meeting chat's system message
(``callRecordingEventMessageDetail``, which names the initiator). The collector keeps both, so
the recording rules pair them here: a recordings-API item takes the initiator of the chat event
of the same kind that started closest to it, within :data:`MATCH_WINDOW`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from remote_guard.collect.snapshot import (
    RecordingEvent,
    SessionKind,
    SessionPhase,
    SessionSnapshot,
)
from remote_guard.rules.base import Outcome, RuleContext, Verdict

# How far apart the recordings API's createdDateTime and the chat event's createdDateTime of
# the same recording may be. Both are stamped when recording starts; the slack allows for the
# recording service's start-up delay without pairing two separate recordings of one lesson.
MATCH_WINDOW = timedelta(minutes=5)

_KIND_NOUNS = {
    SessionKind.MEETING: "meeting",
    SessionKind.CHANNEL_MEETING: "channel meeting",
    SessionKind.PEER_TO_PEER: "direct call",
    SessionKind.OTHER_PROVIDER: "meeting",
}


@dataclass(frozen=True)
class Recording:
    """One recording or transcript, merged from the places Graph reports it."""

    id: str  # the recordings-API id when Graph listed it, else the chat event's
    kind: Literal["recording", "transcript"]
    started: datetime | None
    initiator_id: str | None
    event_ids: tuple[str, ...]  # the snapshot's RecordingEvent ids merged into this one
    sources: tuple[str, ...]  # recordings_api, chat_event, call_record

    @property
    def subject_key(self) -> str:
        return f"recording:{self.id}"


def distinct_recordings(snapshot: SessionSnapshot) -> list[Recording]:
    """Every recording and transcript of ``snapshot`` once, in the order they started.

    An item without an initiator (from the recordings API) is paired with the nearest unpaired
    chat event of the same kind within :data:`MATCH_WINDOW` and takes its initiator; chat events
    left unpaired are recordings of their own (channel meetings have no recordings API).
    """
    events = list(snapshot.recordings or [])
    named = [e for e in events if e.initiator_id is not None and e.source == "chat_event"]
    named_ids = {e.id for e in named}
    paired: set[str] = set()
    merged: list[Recording] = []
    for event in events:
        if event.id in named_ids:
            continue
        partner = None
        if event.initiator_id is None and event.started is not None:
            unpaired = [n for n in named if n.id not in paired]
            partner = _nearest(event.kind, event.started, unpaired)
        if partner is None:
            merged.append(_single(event))
            continue
        paired.add(partner.id)
        merged.append(
            Recording(
                id=event.id,
                kind=event.kind,
                started=event.started,
                initiator_id=partner.initiator_id,
                event_ids=(event.id, partner.id),
                sources=(event.source, partner.source),
            )
        )
    merged.extend(_single(event) for event in named if event.id not in paired)
    return sorted(merged, key=lambda r: (r.started is None, r.started or snapshot.collected_at))


def _nearest(
    kind: str, started: datetime, candidates: list[RecordingEvent]
) -> RecordingEvent | None:
    best: tuple[timedelta, RecordingEvent] | None = None
    for candidate in candidates:
        if candidate.kind != kind or candidate.started is None:
            continue
        gap = abs(candidate.started - started)
        if gap <= MATCH_WINDOW and (best is None or gap < best[0]):
            best = (gap, candidate)
    return best[1] if best else None


def _single(event: RecordingEvent) -> Recording:
    return Recording(
        id=event.id,
        kind=event.kind,
        started=event.started,
        initiator_id=event.initiator_id,
        event_ids=(event.id,),
        sources=(event.source,),
    )


def describe_recordings(recordings: list[Recording]) -> str:
    """``a recording``, ``2 recordings``, ``a recording and a transcript``."""
    parts = []
    for kind in ("recording", "transcript"):
        count = sum(1 for r in recordings if r.kind == kind)
        if count:
            parts.append(f"a {kind}" if count == 1 else f"{count} {kind}s")
    return " and ".join(parts)


def recording_sources(recordings: list[Recording]) -> tuple[str, ...]:
    """The parts of the snapshot the recordings came from, as findings name them."""
    names = {"recordings_api": "recordings", "chat_event": "chat", "call_record": "call_record"}
    return tuple(sorted({names[source] for r in recordings for source in r.sources}))


def not_recordable(snapshot: SessionSnapshot) -> Outcome | None:
    """NOT_APPLICABLE for a chat outside any meeting or call, which has nothing to record, and
    for a meeting on another service, whose recordings Teams never holds (that the meeting is
    on another service is itself a finding of non_teams_meeting)."""
    if snapshot.kind is SessionKind.DIRECT_CHAT:
        return Outcome(
            verdict=Verdict.NOT_APPLICABLE,
            observed="a chat, not a call",
            message="A chat outside a meeting or call has nothing to record.",
        )
    if snapshot.kind is SessionKind.OTHER_PROVIDER:
        return Outcome(
            verdict=Verdict.NOT_APPLICABLE,
            observed="not a Teams meeting",
            message="The meeting is on another service, so Teams holds no recordings of it.",
        )
    return None


def recordings_not_read(snapshot: SessionSnapshot, context: RuleContext, what: str) -> Outcome:
    """The outcome when ``snapshot.recordings`` is None: not yet (the session has not ended)
    or not at all (UNKNOWN: ``what`` could not be checked)."""
    if snapshot.phase(context.now) is not SessionPhase.ENDED:
        return Outcome(
            verdict=Verdict.NOT_APPLICABLE,
            observed="recordings are read after the session ends",
            message="Recordings of this session are checked once it has ended.",
        )
    # Ended and still not read: the collector does not read the recordings of this kind of
    # session (a direct call, an ad-hoc meeting), so nothing can be said about them.
    subject = (
        f"\u201c{snapshot.subject}\u201d"
        if snapshot.subject
        else f"this {_KIND_NOUNS.get(snapshot.kind, 'session')}"
    )
    return Outcome(
        verdict=Verdict.UNKNOWN,
        observed="recordings not read",
        message=f"The recordings of {subject} were not read, so {what} could not be checked.",
        next_step="Check in Teams whether this session was recorded and by whom.",
        evidence={"session_kind": snapshot.kind.value},
        sources=("recordings",),
    )
