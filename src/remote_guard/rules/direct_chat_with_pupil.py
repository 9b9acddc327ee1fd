"""A member of staff and a pupil talking in a Teams 1:1 or group chat outside any meeting.

Enforces WPS-3.4 / BSF-3.4 (every contact with pupils goes through the school's approved
channels), NG-2 (approved school channels, not private chats), WPS-10.2 where Teams chat is not
one of the channels the School Management Team approved, and BSF-A.pupil-remote.7 (pupils are
asked not to use Teams Chat). A chat is a breach
once anyone has written in it: the members alone say only that a chat was opened. Each pupil in
the chat gets one finding; a oneOnOne chat is more serious than a group chat, where other adults
can see what is written.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from remote_guard.collect.snapshot import (
    Missing,
    PersonKind,
    SessionKind,
    SessionSnapshot,
)
from remote_guard.rules._people import local_time
from remote_guard.rules.base import Outcome, RuleContext, Severity, Verdict

ONE_ON_ONE = "oneOnOne"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # True: the school allows staff to chat with pupils in group chats (other adults can see
    # them), so only oneOnOne chats are breaches.
    allow_group_chats: bool = False


class DirectChatWithPupil:
    id: ClassVar[str] = "direct_chat_with_pupil"
    title: ClassVar[str] = "Member of staff chatting with a pupil in Teams chat"
    clauses: ClassVar[tuple[str, ...]] = (
        "WPS-3.4",
        "BSF-3.4",
        "WPS-10.2",
        "BSF-A.pupil-remote.7",
        "NG-2",
    )
    severity: ClassVar[Severity] = Severity.HIGH
    requires: ClassVar[frozenset[Missing]] = frozenset({Missing.CHAT, Missing.DIRECTORY})
    stage: ClassVar[int] = 1
    Params: ClassVar[type[BaseModel]] = Params

    def evaluate(self, snapshot: SessionSnapshot, context: RuleContext) -> list[Outcome]:
        params = context.params
        if not isinstance(params, Params):
            raise TypeError(f"{self.id} needs its own Params, got {type(params).__name__}")
        if snapshot.kind is not SessionKind.DIRECT_CHAT:
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed=f"not a direct chat ({snapshot.kind.value})",
                    message="Only 1:1 and group chats outside meetings are checked by this rule.",
                )
            ]
        members = list(dict.fromkeys(snapshot.member_ids))
        staff_ids = [m for m in members if snapshot.person(m).kind is PersonKind.STAFF]
        pupil_ids = [m for m in members if snapshot.person(m).kind is PersonKind.PUPIL]
        if not staff_ids or not pupil_ids:
            return [
                Outcome(
                    verdict=Verdict.NOT_APPLICABLE,
                    observed="no member of staff with a pupil",
                    message="This chat does not have both a member of staff and a pupil in it.",
                    evidence={"member_ids": members},
                    sources=("chat",),
                )
            ]
        if snapshot.chat is None:
            # The engine reports a recorded read failure; a chat that was simply not read must
            # not pass either.
            return [
                Outcome(
                    verdict=Verdict.UNKNOWN,
                    observed="chat messages not read",
                    message=(
                        "The messages of this chat between staff and a pupil were not read, so "
                        "whether they talked in it could not be checked."
                    ),
                    next_step="Check remote_guard's Chat.Read.All permission; it repeats on the "
                    "next poll.",
                    sources=("chat",),
                )
            ]
        chat_type = snapshot.chat_type or (ONE_ON_ONE if len(members) == 2 else "group")
        one_on_one = chat_type == ONE_ON_ONE
        written = [
            m for m in snapshot.chat if m.sender_kind == "person" and m.sender_id is not None
        ]
        if not written:
            return [
                Outcome(
                    verdict=Verdict.OK,
                    observed="no messages",
                    message="Nobody has written in this chat between staff and a pupil.",
                    sources=("chat",),
                )
            ]
        if not one_on_one and params.allow_group_chats:
            return [
                Outcome(
                    verdict=Verdict.OK,
                    observed="group chat, allowed by the school",
                    message="The school allows staff to talk with pupils in group chats.",
                    evidence={"chat_type": chat_type, "member_ids": members},
                    sources=("chat",),
                )
            ]

        by_kind = Counter(
            snapshot.person(m.sender_id).kind.value for m in written if m.sender_id is not None
        )
        first = min(message.created for message in written)
        last = max(message.created for message in written)
        staff_names = [
            snapshot.person(pid).display_name or "a member of staff" for pid in staff_ids
        ]
        counts = _describe_counts(by_kind, pupils=len(pupil_ids))
        what = "a one-to-one Teams chat" if one_on_one else "a Teams group chat"
        count = len(written)
        outcomes: list[Outcome] = []
        for pupil_id in pupil_ids:
            pupil = snapshot.person(pupil_id)
            outcomes.append(
                Outcome(
                    verdict=Verdict.BREACH,
                    subject_key=pupil_id,
                    observed=f"{count} message{'s' if count != 1 else ''} in {what}",
                    message=(
                        f"{_join([*staff_names, f'pupil {pupil.display_name or pupil_id}'])} "
                        f"are in {what}, with {counts} between "
                        f"{local_time(first, context)} and {local_time(last, context)}; Teams chat is not an "
                        "approved channel for contact with pupils."
                    ),
                    next_step=(
                        "DSL: read the chat and talk to the member of staff. Staff: contact "
                        "pupils only through the school's approved channels (the class team or "
                        "year-group e-mail), never in a private chat."
                    ),
                    evidence={
                        "chat_id": snapshot.chat_thread_id or snapshot.session_id,
                        "chat_type": chat_type,
                        "pupil_id": pupil_id,
                        "staff_ids": staff_ids,
                        "member_ids": members,
                        "messages_by_sender_kind": dict(sorted(by_kind.items())),
                        "first_message_at": first.isoformat(),
                        "last_message_at": last.isoformat(),
                    },
                    sources=("chat",),
                    severity=Severity.HIGH if one_on_one else Severity.MEDIUM,
                )
            )
        return outcomes


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _describe_counts(by_kind: Counter[str], *, pupils: int) -> str:
    """``3 messages (2 from the pupil, 1 from staff)``."""
    labels = {
        PersonKind.STAFF.value: "staff",
        PersonKind.PUPIL.value: "the pupil" if pupils == 1 else "pupils",
    }
    total = sum(by_kind.values())
    parts = [
        f"{count} from {labels.get(kind, kind + ' accounts')}"
        for kind, count in sorted(by_kind.items(), key=lambda item: (-item[1], item[0]))
    ]
    return f"{total} message{'s' if total != 1 else ''} ({', '.join(parts)})"


RULE = DirectChatWithPupil()
