"""A Teams meeting with pupils whose meeting chat is switched on.

Enforces BSF-A.pupil-remote.7 (BSF Appendix A, pupils working remotely: pupils are asked not to
use the Teams chat) before the lesson rather than after it: while ``allowMeetingChat`` is
``enabled`` (or ``limited``, chat during the meeting only) pupils can post, so the teacher is
warned in every phase, from the moment the meeting is on the calendar, and can switch chat off.
``pupil_meeting_chat`` reports the messages pupils actually posted.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from remote_guard.collect.snapshot import Missing, SessionSnapshot
from remote_guard.rules._people import (
    channel_members_unknown,
    expected_pupils,
    options_not_applicable,
    pupil_sources,
    session_label,
)
from remote_guard.rules.base import NoParams, Outcome, RuleContext, Severity, Verdict

# allowMeetingChat values that let attendees (pupils) post: "limited" still allows the chat
# while the meeting is running, which is when the code of practice asks pupils not to use it.
_OPEN = frozenset({"enabled", "limited"})
_TURN_OFF = (
    "Teacher: in Teams, open the meeting in your calendar, choose Meeting options, set Meeting "
    "chat to Off and Save."
)


class MeetingChatOpenToPupils:
    id: ClassVar[str] = "meeting_chat_open_to_pupils"
    title: ClassVar[str] = "Meeting chat switched on for pupils"
    clauses: ClassVar[tuple[str, ...]] = ("BSF-A.pupil-remote.7",)
    severity: ClassVar[Severity] = Severity.LOW
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.SETTINGS, Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = NoParams

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        skip = options_not_applicable(snapshot, what="its chat setting")
        if skip is not None:
            return [skip]
        pupils = expected_pupils(snapshot)
        # A channel meeting whose team could not be read may be a class's: decided below.
        pupils_unknown = not pupils and channel_members_unknown(snapshot)
        label = session_label(snapshot, context)
        setting = snapshot.settings.allow_meeting_chat if snapshot.settings else None
        evidence = {
            "allow_meeting_chat": setting,
            "expected_pupil_ids": sorted(pupils),
            "scheduled_start": snapshot.scheduled_start.isoformat()
            if snapshot.scheduled_start
            else None,
        }
        sources = ("settings", *pupil_sources(snapshot))
        if setting is None:
            # The engine reports unreadable options; an option Graph left out is not "off".
            return [
                Outcome(
                    verdict=Verdict.UNKNOWN,
                    subject_key="allow_meeting_chat",
                    observed="meeting chat setting not reported",
                    message=f"Whether the meeting chat is on for {label} could not be read.",
                    next_step=_TURN_OFF,
                    evidence=evidence,
                    sources=sources,
                )
            ]
        if setting not in _OPEN:
            return [
                Outcome(
                    verdict=Verdict.OK,
                    subject_key="allow_meeting_chat",
                    observed=f"meeting chat {setting}",
                    message=f"The meeting chat is off for {label}.",
                    evidence=evidence,
                    sources=sources,
                )
            ]
        if pupils_unknown:
            return [
                Outcome(
                    verdict=Verdict.UNKNOWN,
                    subject_key="allow_meeting_chat",
                    observed=f"meeting chat {setting}; pupils not known",
                    message=(
                        f"The meeting chat is on for {label}, a channel meeting whose team members "
                        "could not be read, so whether pupils can post in it is not known."
                    ),
                    next_step=(
                        "Teacher: if pupils are in the team, open Meeting options in Teams and set "
                        "Meeting chat to Off. IT: check that remote_guard can read team members."
                    ),
                    evidence=evidence,
                    sources=("settings", "channel"),
                )
            ]
        count = len(pupils)
        during = " while the meeting runs" if setting == "limited" else ""
        return [
            Outcome(
                verdict=Verdict.BREACH,
                subject_key="allow_meeting_chat",
                observed=f"meeting chat {setting}",
                message=(
                    f"The meeting chat is on{during} for {label}, so the {count} "
                    f"pupil{'s' if count != 1 else ''} expected can post in it, although pupils "
                    "are asked not to use the Teams chat."
                ),
                next_step=_TURN_OFF,
                evidence=evidence,
                sources=sources,
            )
        ]


RULE = MeetingChatOpenToPupils()
