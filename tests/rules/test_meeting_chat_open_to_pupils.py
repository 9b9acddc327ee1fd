"""Meeting chat left on in a Teams meeting with pupils: a warning before, during and after."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import (
    ChannelRef,
    MeetingSettings,
    Missing,
    SessionKind,
    SessionSnapshot,
)
from remote_guard.rules.base import NoParams, RuleContext, SchoolDay, Verdict
from remote_guard.rules.meeting_chat_open_to_pupils import RULE
from tests.rules.factory import COTEACHER, END, PUPIL, PUPIL2, START, TEACHER, presence

NOW = END + timedelta(hours=1)
CONTEXT = RuleContext(now=NOW, tenant_id="t", params=NoParams())


@pytest.fixture
def upcoming(lesson: SessionSnapshot) -> SessionSnapshot:
    """The lesson as seen the day before: pupils invited, no attendance yet, chat on."""
    lesson.presence = None
    lesson.chat = None
    lesson.recordings = None
    lesson.collected_at = START - timedelta(days=1)
    lesson.settings = MeetingSettings(allow_meeting_chat="enabled")
    return lesson


def _before(hours: float) -> RuleContext:
    return RuleContext(now=START - timedelta(hours=hours), tenant_id="t", params=NoParams())


def test_chat_enabled_before_the_lesson_is_a_breach(upcoming: SessionSnapshot) -> None:
    """The teacher is warned while there is still time to switch chat off."""
    (outcome,) = RULE.evaluate(upcoming, _before(20))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.subject_key == "allow_meeting_chat"
    assert outcome.observed == "meeting chat enabled"
    assert outcome.evidence["expected_pupil_ids"] == [PUPIL.id, PUPIL2.id]
    assert "Meeting options" in outcome.next_step
    assert outcome.sources == ("settings", "calendar")


@pytest.mark.parametrize(
    ("setting", "verdict"),
    [("enabled", Verdict.BREACH), ("limited", Verdict.BREACH), ("disabled", Verdict.OK)],
)
def test_each_chat_setting(upcoming: SessionSnapshot, setting: str, verdict: Verdict) -> None:
    """ "limited" (chat during the meeting only) still lets pupils post while they are taught."""
    upcoming.settings = MeetingSettings(allow_meeting_chat=setting)
    assert [o.verdict for o in RULE.evaluate(upcoming, _before(1))] == [verdict]


@pytest.mark.parametrize("now", [START + timedelta(minutes=5), NOW], ids=["live", "ended"])
def test_evaluated_in_every_phase(lesson: SessionSnapshot, now: object) -> None:
    """Live and ended lessons with chat on are reported too (the finding keeps its key)."""
    lesson.settings = MeetingSettings(allow_meeting_chat="enabled")
    context = RuleContext(now=now, tenant_id="t", params=NoParams())  # type: ignore[arg-type]
    (outcome,) = RULE.evaluate(lesson, context)
    assert (outcome.verdict, outcome.subject_key) == (Verdict.BREACH, "allow_meeting_chat")


def test_staff_only_meeting_is_not_applicable(upcoming: SessionSnapshot) -> None:
    """A meeting with no pupil invited or present is not what the clause is about."""
    upcoming.invitee_ids = [COTEACHER.id]
    assert [o.verdict for o in RULE.evaluate(upcoming, _before(1))] == [Verdict.NOT_APPLICABLE]


def test_pupil_who_turned_up_uninvited_counts(lesson: SessionSnapshot) -> None:
    """Pupils present count as expected even when the invitation named none."""
    lesson.invitee_ids = []
    lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    lesson.settings = MeetingSettings(allow_meeting_chat="enabled")
    (outcome,) = RULE.evaluate(lesson, CONTEXT)
    assert outcome.verdict is Verdict.BREACH
    assert outcome.evidence["expected_pupil_ids"] == [PUPIL.id]


def test_channel_meeting_pupils_are_the_team_members(upcoming: SessionSnapshot) -> None:
    """A channel meeting needs no invitation: the team's pupils are expected."""
    upcoming.kind = SessionKind.CHANNEL_MEETING
    upcoming.invitee_ids = []
    upcoming.channel = ChannelRef(
        thread_id="19:abc@thread.tacv2", member_ids=[TEACHER.id, PUPIL.id]
    )
    (outcome,) = RULE.evaluate(upcoming, _before(1))
    assert outcome.verdict is Verdict.BREACH
    assert outcome.evidence["expected_pupil_ids"] == [PUPIL.id]
    assert outcome.sources == ("settings", "channel")


def test_message_names_the_lesson_in_school_time(upcoming: SessionSnapshot) -> None:
    """Times are on the school's clock: 10:00 UTC in June is 11:00 in London."""
    summer = START.replace(month=6, day=17)
    upcoming.scheduled_start = summer
    upcoming.scheduled_end = summer + timedelta(minutes=30)
    context = RuleContext(
        now=summer - timedelta(hours=1),
        tenant_id="t",
        params=NoParams(),
        school_day=SchoolDay(
            timezone="Europe/London",
            start=START.time(),
            end=END.time(),
            weekdays=frozenset({1, 2, 3, 4, 5}),
        ),
    )
    (outcome,) = RULE.evaluate(upcoming, context)
    assert "\u201cYear 3 maths\u201d (Wed 17 Jun 11:00)" in outcome.message


def test_chat_setting_not_reported_is_unknown(upcoming: SessionSnapshot) -> None:
    """An option Graph left out is not "off"."""
    upcoming.settings = MeetingSettings()
    assert [o.verdict for o in RULE.evaluate(upcoming, _before(1))] == [Verdict.UNKNOWN]


@pytest.mark.parametrize(
    "change",
    [{"kind": SessionKind.PEER_TO_PEER}, {"is_cancelled": True}],
    ids=["peer-to-peer", "cancelled"],
)
def test_not_applicable_sessions(upcoming: SessionSnapshot, change: dict[str, object]) -> None:
    """Direct calls have no meeting options; a cancelled lesson will not take place."""
    changed = upcoming.model_copy(update=change)
    assert [o.verdict for o in RULE.evaluate(changed, _before(1))] == [Verdict.NOT_APPLICABLE]


def test_engine_reports_unreadable_options_as_an_error(upcoming: SessionSnapshot) -> None:
    """Options that could not be read give an error finding under BSF-A.pupil-remote.7."""
    from remote_guard.policy.profile import bind_rules, builtin_profile_dir, load_profile
    from remote_guard.rules.engine import evaluate_snapshot
    from remote_guard.rules.registry import load_rules

    registry = load_rules()
    profile = load_profile(builtin_profile_dir() / "bramham-shadwell.toml")
    bound = [b for b in bind_rules(profile, registry, source="t") if b.rule_id == RULE.id]
    upcoming.settings = None
    upcoming.missing[Missing.SETTINGS] = "onlineMeetings: HTTP 403 Forbidden"
    (finding,) = evaluate_snapshot(
        upcoming, bound_rules=bound, registry=registry, context=_before(1)
    )
    assert (finding.status.value, finding.clause_id) == ("error", "BSF-A.pupil-remote.7")
    assert "403" in finding.message


def test_channel_meeting_with_unread_team_is_unknown(upcoming: SessionSnapshot) -> None:
    """Chat on in a channel meeting whose team members could not be read: unknown, not N/A."""
    upcoming.kind = SessionKind.CHANNEL_MEETING
    upcoming.invitee_ids = []
    upcoming.channel = ChannelRef(thread_id="19:abc@thread.tacv2")
    (outcome,) = RULE.evaluate(upcoming, _before(1))
    assert (outcome.verdict, outcome.subject_key) == (Verdict.UNKNOWN, "allow_meeting_chat")


def test_channel_meeting_with_unread_team_and_chat_off_is_ok(upcoming: SessionSnapshot) -> None:
    """With chat off, who is in the team does not matter."""
    upcoming.kind = SessionKind.CHANNEL_MEETING
    upcoming.invitee_ids = []
    upcoming.channel = ChannelRef(thread_id="19:abc@thread.tacv2")
    upcoming.settings = MeetingSettings(allow_meeting_chat="disabled")
    assert [o.verdict for o in RULE.evaluate(upcoming, _before(1))] == [Verdict.OK]
