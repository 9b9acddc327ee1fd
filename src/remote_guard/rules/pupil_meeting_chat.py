"""A pupil posting in a meeting's chat.

Enforces BSF Appendix A (pupils working remotely): pupils should not use the Teams chat facility.
System messages (call started/ended, recordings), staff messages and bots do not count.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from remote_guard.collect.snapshot import (
    Missing,
    PersonKind,
    SessionKind,
    SessionPhase,
    SessionSnapshot,
)
from remote_guard.rules.base import NoParams, Outcome, RuleContext, Severity, Verdict

_MEETINGS = frozenset({SessionKind.MEETING, SessionKind.CHANNEL_MEETING})


class PupilMeetingChat:
    id: ClassVar[str] = "pupil_meeting_chat"
    title: ClassVar[str] = "Pupil use of the meeting chat"
    clauses: ClassVar[tuple[str, ...]] = ("BSF-A.pupil-remote.7",)
    severity: ClassVar[Severity] = Severity.LOW
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.CHAT, Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = NoParams

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        if snapshot.kind not in _MEETINGS:
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed=f"not a meeting ({snapshot.kind.value})",
                    message="Only meeting chats are checked by this rule.",
                )
            ]
        if snapshot.chat is None:
            if snapshot.phase(context.now) is SessionPhase.ENDED:
                return [
                    Outcome(
                        verdict=Verdict.UNKNOWN,
                        observed="meeting chat not read",
                        message="The meeting chat was not read, so pupil chat could not be checked.",
                        next_step="It is read after the meeting ends; check Chat.Read.All access.",
                        sources=("chat",),
                    )
                ]
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed="chat is read after the meeting ends",
                    message="The meeting chat is checked once the meeting has ended.",
                )
            ]
        by_pupil: dict[str, list[str]] = {}
        times: dict[str, list[str]] = {}
        for message in snapshot.chat:
            if message.sender_kind != "person" or message.sender_id is None:
                continue
            if snapshot.person(message.sender_id).kind is not PersonKind.PUPIL:
                continue
            by_pupil.setdefault(message.sender_id, []).append(message.message_id)
            times.setdefault(message.sender_id, []).append(message.created.isoformat())
        if not by_pupil:
            return [
                Outcome(
                    verdict=Verdict.OK,
                    observed="no pupil messages",
                    message="No pupil posted in the meeting chat.",
                    sources=("chat",),
                )
            ]
        outcomes = []
        for pupil_id, message_ids in sorted(by_pupil.items()):
            pupil = snapshot.person(pupil_id)
            count = len(message_ids)
            outcomes.append(
                Outcome(
                    verdict=Verdict.BREACH,
                    subject_key=pupil_id,
                    observed=f"{count} message{'s' if count != 1 else ''} in the meeting chat",
                    message=(
                        f"Pupil {pupil.display_name or pupil_id} posted {count} "
                        f"message{'s' if count != 1 else ''} in the chat of "
                        f"\u201c{snapshot.subject or 'a meeting'}\u201d."
                    ),
                    next_step=(
                        "Teacher: remind the pupil and parents of the code of practice, and set "
                        "the meeting chat to off for pupils in future lessons."
                    ),
                    evidence={"message_ids": message_ids, "posted_at": times[pupil_id]},
                    sources=("chat",),
                )
            )
        return outcomes


RULE = PupilMeetingChat()
