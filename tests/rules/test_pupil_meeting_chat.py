"""A pupil posting in the meeting chat; system, staff and bot messages do not count."""

from __future__ import annotations

from datetime import timedelta

from remote_guard.collect.snapshot import ChatActivity, Missing, SessionKind, SessionSnapshot
from remote_guard.rules.base import NoParams, RuleContext, Verdict
from remote_guard.rules.pupil_meeting_chat import RULE
from tests.rules.factory import END, PUPIL, TEACHER, at

CONTEXT = RuleContext(now=END + timedelta(hours=1), tenant_id="t", params=NoParams())


def _message(
    message_id: str, sender: str | None, kind: str = "person", event: str | None = None
) -> ChatActivity:
    return ChatActivity(
        message_id=message_id, created=at(5), sender_kind=kind, sender_id=sender, event_type=event
    )  # type: ignore[arg-type]


def test_pupil_message_is_a_breach_naming_the_pupil(lesson: SessionSnapshot) -> None:
    """Two pupil messages give one outcome for that pupil with both message ids."""
    lesson.chat = [_message("m1", PUPIL.id), _message("m2", PUPIL.id), _message("m3", TEACHER.id)]
    (outcome,) = RULE.evaluate(lesson, CONTEXT)
    assert outcome.verdict is Verdict.BREACH
    assert outcome.subject_key == PUPIL.id
    assert outcome.evidence["message_ids"] == ["m1", "m2"]
    assert outcome.observed == "2 messages in the meeting chat"


def test_teacher_system_and_bot_messages_are_fine(lesson: SessionSnapshot) -> None:
    """Only pupils' own messages count."""
    lesson.chat = [
        _message("m1", TEACHER.id),
        _message("m2", None, "system", "callEndedEventMessageDetail"),
        _message("m3", "app:bot", "application"),
    ]
    assert [o.verdict for o in RULE.evaluate(lesson, CONTEXT)] == [Verdict.OK]


def test_chat_not_read_after_the_meeting_is_unknown(lesson: SessionSnapshot) -> None:
    """No chat data for an ended meeting is UNKNOWN, never OK."""
    lesson.chat = None
    assert [o.verdict for o in RULE.evaluate(lesson, CONTEXT)] == [Verdict.UNKNOWN]


def test_peer_to_peer_call_is_not_applicable(lesson: SessionSnapshot) -> None:
    """Direct calls have no meeting chat."""
    lesson.kind = SessionKind.PEER_TO_PEER
    assert [o.verdict for o in RULE.evaluate(lesson, CONTEXT)] == [Verdict.NOT_APPLICABLE]


def test_engine_turns_missing_chat_into_an_error(lesson: SessionSnapshot) -> None:
    """The engine reports a required source that could not be read as UNKNOWN."""
    from remote_guard.policy.profile import Clause, Profile, RuleBinding, bind_rules
    from remote_guard.rules.engine import evaluate_snapshot
    from remote_guard.rules.registry import load_rules

    registry = load_rules()
    profile = Profile(
        id="p",
        name="p",
        school="s",
        source_document="d",
        version="1",
        clauses=(
            Clause(
                id="X.1",
                version=2,
                text="Pupils should not chat in meetings.",
                level="SHOULD",
                source="App A",
                rules=(RuleBinding(rule="pupil_meeting_chat"),),
            ),
        ),
    )
    lesson.missing[Missing.CHAT] = "/chats/{id}/messages: HTTP 403 Forbidden"
    (finding,) = evaluate_snapshot(
        lesson,
        bound_rules=bind_rules(profile, registry, source="t"),
        registry=registry,
        context=CONTEXT,
    )
    assert finding.status.value == "error"
    assert finding.clause_ref == "X.1v2"
    assert "403" in finding.message
