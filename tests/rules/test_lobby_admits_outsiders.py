"""Meeting options that let outsiders skip the lobby or let pupils present: one finding each."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from remote_guard.collect.snapshot import ChannelRef, MeetingSettings, SessionKind, SessionSnapshot
from remote_guard.rules.base import RuleContext, Verdict
from remote_guard.rules.lobby_admits_outsiders import RULE, Params
from tests.rules.factory import COTEACHER, PUPIL, PUPIL2, START

SAFE = MeetingSettings(
    allow_meeting_chat="disabled",
    lobby_scope="invited",
    dial_in_bypass=False,
    allowed_presenters="organizer",
)


def _context(**params: object) -> RuleContext:
    return RuleContext(now=START - timedelta(hours=2), tenant_id="t", params=Params(**params))


@pytest.fixture
def upcoming(lesson: SessionSnapshot) -> SessionSnapshot:
    """The lesson two hours before it starts, pupils invited, every option safe."""
    lesson.presence = None
    lesson.chat = None
    lesson.recordings = None
    lesson.collected_at = START - timedelta(hours=2)
    lesson.settings = SAFE
    return lesson


def _breaches(snapshot: SessionSnapshot, context: RuleContext | None = None) -> list[str]:
    outcomes = RULE.evaluate(snapshot, context or _context())
    return [o.subject_key for o in outcomes if o.verdict is Verdict.BREACH]


def test_safe_options_give_one_ok(upcoming: SessionSnapshot) -> None:
    """Lobby for invited people, no dial-in bypass, organiser presents: one OK."""
    outcomes = RULE.evaluate(upcoming, _context())
    assert [(o.verdict, o.subject_key) for o in outcomes] == [(Verdict.OK, "")]


@pytest.mark.parametrize(
    ("scope", "breached"),
    [
        ("everyone", ["lobby_scope"]),
        ("organizationAndFederated", ["lobby_scope"]),
        ("organization", []),
        ("organizationExcludingGuests", []),
        ("organizer", []),
        ("invited", []),
    ],
)
def test_lobby_scope(upcoming: SessionSnapshot, scope: str, breached: list[str]) -> None:
    """Only scopes beyond the school let strangers with the link straight in."""
    upcoming.settings = SAFE.model_copy(update={"lobby_scope": scope})
    assert _breaches(upcoming) == breached


def test_everyone_lobby_is_reported_before_the_lesson(upcoming: SessionSnapshot) -> None:
    """The finding names the option and tells the teacher what to set."""
    upcoming.settings = SAFE.model_copy(update={"lobby_scope": "everyone"})
    (outcome,) = RULE.evaluate(upcoming, _context())
    assert outcome.observed == "lobby bypass: everyone"
    assert "anyone who has the link" in outcome.message
    assert "People who were invited" in outcome.next_step
    assert outcome.evidence["lobby_scope"] == "everyone"


def test_dial_in_bypass_is_its_own_finding(upcoming: SessionSnapshot) -> None:
    """Phone callers skipping the lobby is reported under its own subject key."""
    upcoming.settings = SAFE.model_copy(update={"dial_in_bypass": True})
    assert _breaches(upcoming) == ["dial_in_bypass"]


@pytest.mark.parametrize(
    ("presenters", "breached"),
    [
        ("everyone", ["allowed_presenters"]),
        ("organization", ["allowed_presenters"]),
        ("roleIsPresenter", []),
        ("organizer", []),
    ],
)
def test_allowed_presenters(
    upcoming: SessionSnapshot, presenters: str, breached: list[str]
) -> None:
    """Pupils as presenters can record and remove people; only chosen presenters are fine."""
    upcoming.settings = SAFE.model_copy(update={"allowed_presenters": presenters})
    assert _breaches(upcoming) == breached


def test_every_risky_option_is_reported(upcoming: SessionSnapshot) -> None:
    """Three risky options give three findings, in a stable order."""
    upcoming.settings = MeetingSettings(
        lobby_scope="everyone", dial_in_bypass=True, allowed_presenters="everyone"
    )
    assert _breaches(upcoming) == ["lobby_scope", "dial_in_bypass", "allowed_presenters"]


def test_option_not_reported_is_skipped(upcoming: SessionSnapshot) -> None:
    """A missing option is left out; the others are still judged."""
    upcoming.settings = MeetingSettings(lobby_scope=None, dial_in_bypass=True)
    assert _breaches(upcoming) == ["dial_in_bypass"]


def test_no_option_reported_is_unknown(upcoming: SessionSnapshot) -> None:
    """With nothing to judge, the answer is unknown, never OK."""
    upcoming.settings = MeetingSettings()
    assert [o.verdict for o in RULE.evaluate(upcoming, _context())] == [Verdict.UNKNOWN]


def test_profile_can_narrow_the_allowed_scopes(upcoming: SessionSnapshot) -> None:
    """A school that wants its guests held in the lobby drops "organization"."""
    upcoming.settings = SAFE.model_copy(update={"lobby_scope": "organization"})
    context = _context(allowed_lobby_scopes=["organizer", "invited"])
    assert _breaches(upcoming, context) == ["lobby_scope"]


def test_params_refuse_unknown_keys() -> None:
    """A misspelt parameter is refused."""
    with pytest.raises(ValidationError):
        Params(allowed_lobby_scope=["everyone"])  # type: ignore[call-arg]


def test_staff_meeting_is_not_applicable(upcoming: SessionSnapshot) -> None:
    """Without pupils, the clause does not apply."""
    upcoming.invitee_ids = [COTEACHER.id]
    upcoming.settings = SAFE.model_copy(update={"lobby_scope": "everyone"})
    assert [o.verdict for o in RULE.evaluate(upcoming, _context())] == [Verdict.NOT_APPLICABLE]


def test_peer_to_peer_call_is_not_applicable(upcoming: SessionSnapshot) -> None:
    """Direct calls have no lobby."""
    upcoming.kind = SessionKind.PEER_TO_PEER
    assert [o.verdict for o in RULE.evaluate(upcoming, _context())] == [Verdict.NOT_APPLICABLE]


def test_evidence_lists_the_pupils(upcoming: SessionSnapshot) -> None:
    """Evidence names the pupils whose lesson it is."""
    upcoming.settings = SAFE.model_copy(update={"lobby_scope": "everyone"})
    (outcome,) = RULE.evaluate(upcoming, _context())
    assert outcome.evidence["expected_pupil_ids"] == sorted([PUPIL.id, PUPIL2.id])


def test_channel_meeting_with_unread_team_is_unknown(upcoming: SessionSnapshot) -> None:
    """Risky options in a channel meeting whose team could not be read: unknown per option."""
    upcoming.kind = SessionKind.CHANNEL_MEETING
    upcoming.invitee_ids = []
    upcoming.channel = ChannelRef(thread_id="19:abc@thread.tacv2")
    upcoming.settings = SAFE.model_copy(update={"lobby_scope": "everyone", "dial_in_bypass": True})
    outcomes = RULE.evaluate(upcoming, _context())
    assert [(o.verdict, o.subject_key) for o in outcomes] == [
        (Verdict.UNKNOWN, "lobby_scope"),
        (Verdict.UNKNOWN, "dial_in_bypass"),
    ]


def test_channel_meeting_of_a_class_team(upcoming: SessionSnapshot) -> None:
    """The team's pupils make the options matter without any invitation."""
    upcoming.kind = SessionKind.CHANNEL_MEETING
    upcoming.invitee_ids = []
    upcoming.channel = ChannelRef(thread_id="19:abc@thread.tacv2", member_ids=[PUPIL.id])
    upcoming.settings = SAFE.model_copy(update={"lobby_scope": "everyone"})
    assert _breaches(upcoming) == ["lobby_scope"]
