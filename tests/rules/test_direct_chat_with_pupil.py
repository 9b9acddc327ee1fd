"""A member of staff and a pupil talking in a Teams 1:1 or group chat outside any meeting."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import pytest

from remote_guard.collect.snapshot import ChatActivity, Missing, SessionKind, SessionSnapshot
from remote_guard.rules.base import RuleContext, Severity, Verdict
from remote_guard.rules.direct_chat_with_pupil import RULE, Params
from tests.rules.factory import COTEACHER, END, PUPIL, PUPIL2, TEACHER, at

NOW = END + timedelta(hours=1)


def _context(**params: bool) -> RuleContext:
    return RuleContext(now=NOW, tenant_id="t", params=Params(**params))


def _message(
    message_id: str,
    sender: str | None,
    minutes: float,
    kind: Literal["person", "system", "application"] = "person",
) -> ChatActivity:
    return ChatActivity(
        message_id=message_id, created=at(minutes), sender_kind=kind, sender_id=sender
    )


@pytest.fixture
def chat() -> SessionSnapshot:
    """A oneOnOne chat: the teacher wrote twice, the pupil once, between 10:05 and 10:20."""
    return SessionSnapshot(
        session_id="chat_1",
        kind=SessionKind.DIRECT_CHAT,
        chat_thread_id="19:teacher_pupil@unq.gbl.spaces",
        chat_type="oneOnOne",
        member_ids=[TEACHER.id, PUPIL.id],
        people={p.id: p for p in (TEACHER, PUPIL)},
        chat=[
            _message("m1", TEACHER.id, 5),
            _message("m2", PUPIL.id, 12),
            _message("m3", TEACHER.id, 20),
        ],
        actual_start=at(5),
        actual_end=at(20),
        collected_at=NOW,
    )


def test_one_on_one_chat_is_a_high_breach_about_the_pupil(chat: SessionSnapshot) -> None:
    """One outcome for the pupil, HIGH, with counts by sender kind and first/last times."""
    (outcome,) = RULE.evaluate(chat, _context())
    assert outcome.verdict is Verdict.BREACH
    assert outcome.subject_key == PUPIL.id
    assert outcome.severity is Severity.HIGH
    assert outcome.evidence["staff_ids"] == [TEACHER.id]
    assert outcome.evidence["messages_by_sender_kind"] == {"pupil": 1, "staff": 2}
    assert outcome.evidence["first_message_at"] == at(5).isoformat()
    assert outcome.evidence["last_message_at"] == at(20).isoformat()
    assert outcome.observed == "3 messages in a one-to-one Teams chat"
    assert "Ms Teacher and pupil Amelia K." in outcome.message
    assert "3 messages (2 from staff, 1 from the pupil)" in outcome.message
    assert "Wed 18 Nov 10:05 and Wed 18 Nov 10:20" in outcome.message


def test_message_times_are_on_the_school_clock(chat: SessionSnapshot) -> None:
    """In summer the message reads in BST, an hour ahead of UTC."""
    summer = timedelta(days=-150)  # 21 June 2026
    chat.chat = [_message("m1", TEACHER.id, 5).model_copy(update={"created": at(5) + summer})]
    (outcome,) = RULE.evaluate(chat, _context())
    assert "Sun 21 Jun 11:05" in outcome.message


def test_group_chat_gives_one_medium_breach_per_pupil(chat: SessionSnapshot) -> None:
    """Two pupils in a staff group chat are two findings, MEDIUM, naming both staff."""
    chat.chat_type = "group"
    chat.member_ids = [TEACHER.id, COTEACHER.id, PUPIL.id, PUPIL2.id]
    chat.people.update({COTEACHER.id: COTEACHER, PUPIL2.id: PUPIL2})
    outcomes = RULE.evaluate(chat, _context())
    assert [(o.verdict, o.subject_key, o.severity) for o in outcomes] == [
        (Verdict.BREACH, PUPIL.id, Severity.MEDIUM),
        (Verdict.BREACH, PUPIL2.id, Severity.MEDIUM),
    ]
    assert outcomes[0].evidence["staff_ids"] == [TEACHER.id, COTEACHER.id]
    assert "Ms Teacher, Mr Assistant and pupil Amelia K. are in a Teams group chat" in (
        outcomes[0].message
    )


def test_group_chats_allowed_by_the_school_pass(chat: SessionSnapshot) -> None:
    """allow_group_chats makes a group chat OK."""
    chat.chat_type = "group"
    chat.member_ids = [TEACHER.id, COTEACHER.id, PUPIL.id]
    chat.people[COTEACHER.id] = COTEACHER
    assert [o.verdict for o in RULE.evaluate(chat, _context(allow_group_chats=True))] == [
        Verdict.OK
    ]


def test_allowing_group_chats_does_not_allow_one_on_one(chat: SessionSnapshot) -> None:
    """allow_group_chats leaves a oneOnOne chat a breach."""
    outcomes = RULE.evaluate(chat, _context(allow_group_chats=True))
    assert [o.verdict for o in outcomes] == [Verdict.BREACH]


def test_pupil_writing_alone_still_counts(chat: SessionSnapshot) -> None:
    """A pupil's message to a teacher is contact in an unapproved channel too."""
    chat.chat = [_message("m2", PUPIL.id, 12)]
    (outcome,) = RULE.evaluate(chat, _context())
    assert outcome.verdict is Verdict.BREACH
    assert outcome.evidence["messages_by_sender_kind"] == {"pupil": 1}


def test_chat_with_only_system_and_bot_messages_is_ok(chat: SessionSnapshot) -> None:
    """Nobody has written: the chat alone is not contact."""
    chat.chat = [
        _message("s1", None, 1, "system"),
        _message("b1", "app:bot", 2, "application"),
    ]
    assert [o.verdict for o in RULE.evaluate(chat, _context())] == [Verdict.OK]


def test_chat_between_two_staff_is_not_applicable(chat: SessionSnapshot) -> None:
    """Without a pupil member the rule has nothing to say."""
    chat.member_ids = [TEACHER.id, COTEACHER.id]
    chat.people = {p.id: p for p in (TEACHER, COTEACHER)}
    assert [o.verdict for o in RULE.evaluate(chat, _context())] == [Verdict.NOT_APPLICABLE]


def test_chat_between_two_pupils_is_not_applicable(chat: SessionSnapshot) -> None:
    """Pupils chatting with each other are not staff contact."""
    chat.member_ids = [PUPIL.id, PUPIL2.id]
    chat.people = {p.id: p for p in (PUPIL, PUPIL2)}
    assert [o.verdict for o in RULE.evaluate(chat, _context())] == [Verdict.NOT_APPLICABLE]


def test_messages_not_read_is_unknown(chat: SessionSnapshot) -> None:
    """A staff-pupil chat whose messages were not read is UNKNOWN, never OK."""
    chat.chat = None
    assert [o.verdict for o in RULE.evaluate(chat, _context())] == [Verdict.UNKNOWN]


def test_meeting_is_not_applicable(lesson: SessionSnapshot) -> None:
    """Meeting chats belong to pupil_meeting_chat."""
    assert [o.verdict for o in RULE.evaluate(lesson, _context())] == [Verdict.NOT_APPLICABLE]


def test_chat_type_is_inferred_from_two_members(chat: SessionSnapshot) -> None:
    """Without chat_type, two members are a oneOnOne chat (HIGH)."""
    chat.chat_type = None
    (outcome,) = RULE.evaluate(chat, _context())
    assert outcome.severity is Severity.HIGH
    assert outcome.evidence["chat_type"] == "oneOnOne"


def test_engine_reports_an_unreadable_chat_as_an_error(chat: SessionSnapshot) -> None:
    """A recorded read failure of the chat becomes an error finding under the clause."""
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
                id="BSF-3.4",
                version=1,
                text="Contact pupils only through approved channels.",
                level="SHOULD",
                source="Section 3",
                rules=(RuleBinding(rule="direct_chat_with_pupil"),),
            ),
        ),
    )
    chat.chat = None
    chat.missing[Missing.CHAT] = "/chats/{id}/messages: HTTP 403 Forbidden"
    (finding,) = evaluate_snapshot(
        chat,
        bound_rules=bind_rules(profile, registry, source="t"),
        registry=registry,
        context=_context(),
    )
    assert finding.status.value == "error"
    assert "403" in finding.message


def test_params_refuse_unknown_fields() -> None:
    """A misspelt parameter in a profile is refused, not ignored."""
    with pytest.raises(ValueError, match="allow_group_chat"):
        Params(allow_group_chat=True)  # type: ignore[call-arg]
