"""A session with pupils arranged on another provider than the school's Teams."""

from __future__ import annotations

from datetime import timedelta

import pytest

from remote_guard.collect.snapshot import SessionKind, SessionSnapshot
from remote_guard.rules.base import NoParams, RuleContext, Verdict
from remote_guard.rules.non_teams_meeting import RULE, reduce_link, service_of
from tests.rules.factory import END, PUPIL, START, TEACHER, presence

BEFORE = RuleContext(now=START - timedelta(days=1), tenant_id="t", params=NoParams())
AFTER = RuleContext(now=END + timedelta(hours=1), tenant_id="t", params=NoParams())
ZOOM = "https://us06web.zoom.us/j/85512345678?pwd=Q2xhc3NSb29tMQ.1"


@pytest.fixture
def zoom_lesson(lesson: SessionSnapshot) -> SessionSnapshot:
    """An upcoming lesson invitation with a Zoom link and no Teams meeting."""
    lesson.kind = SessionKind.OTHER_PROVIDER
    lesson.provider = "unknown"
    lesson.join_url = None
    lesson.foreign_links = [ZOOM]
    lesson.presence = None
    lesson.chat = None
    lesson.recordings = None
    return lesson


def _verdicts(snapshot: SessionSnapshot, context: RuleContext = AFTER) -> list[Verdict]:
    return [o.verdict for o in RULE.evaluate(snapshot, context)]


def test_zoom_link_is_flagged_before_the_lesson(zoom_lesson: SessionSnapshot) -> None:
    """The invitation alone is enough: the breach shows before anyone joins."""
    (outcome,) = RULE.evaluate(zoom_lesson, BEFORE)
    assert outcome.verdict is Verdict.BREACH
    assert outcome.subject_key == ""
    assert outcome.observed == "Zoom link"
    assert outcome.evidence["links"] == ["https://us06web.zoom.us/j/85512345678"]
    assert outcome.evidence["provider"] == "unknown"
    assert "set up on Zoom (https://us06web.zoom.us/j/85512345678)" in outcome.message


def test_passcode_never_reaches_the_finding(zoom_lesson: SessionSnapshot) -> None:
    """The query string (pwd=...) is dropped from evidence and message."""
    (outcome,) = RULE.evaluate(zoom_lesson, BEFORE)
    assert "pwd" not in repr(outcome.evidence)
    assert "Q2xhc3NSb29tMQ" not in outcome.message


def test_teams_meeting_with_a_google_meet_link_is_a_breach(lesson: SessionSnapshot) -> None:
    """A Teams invitation that also sends pupils to Google Meet is flagged."""
    lesson.provider = "teamsForBusiness"
    lesson.foreign_links = ["https://meet.google.com/abc-defg-hij"]
    (outcome,) = RULE.evaluate(lesson, AFTER)
    assert outcome.verdict is Verdict.BREACH
    assert "is a Teams meeting, but its invitation also gives a link to Google Meet" in (
        outcome.message
    )


@pytest.mark.parametrize("provider", ["skypeForConsumer", "skypeForBusiness"])
def test_other_online_meeting_provider_is_a_breach(
    zoom_lesson: SessionSnapshot, provider: str
) -> None:
    """onlineMeetingProvider other than teamsForBusiness, even without a link."""
    zoom_lesson.provider = provider
    zoom_lesson.foreign_links = []
    (outcome,) = RULE.evaluate(zoom_lesson, BEFORE)
    assert outcome.verdict is Verdict.BREACH
    assert outcome.evidence["provider"] == provider
    assert "Skype" in outcome.message


def test_other_provider_without_a_named_service_is_still_a_breach(
    zoom_lesson: SessionSnapshot,
) -> None:
    """An online event that is not on Teams breaches even if the service cannot be named."""
    zoom_lesson.foreign_links = []
    assert _verdicts(zoom_lesson, BEFORE) == [Verdict.BREACH]


def test_teams_marked_event_without_a_join_link_is_unknown(zoom_lesson: SessionSnapshot) -> None:
    """teamsForBusiness but no Teams link read: neither a breach nor a pass."""
    zoom_lesson.provider = "teamsForBusiness"
    zoom_lesson.foreign_links = []
    assert _verdicts(zoom_lesson, BEFORE) == [Verdict.UNKNOWN]


def test_other_providers_own_join_link_is_reported(zoom_lesson: SessionSnapshot) -> None:
    """The event's non-Teams join URL is evidence too, without its query."""
    zoom_lesson.foreign_links = []
    zoom_lesson.join_url = "https://acme.webex.com/acme/j.php?MTID=m0123"
    (outcome,) = RULE.evaluate(zoom_lesson, BEFORE)
    assert outcome.evidence["links"] == ["https://acme.webex.com/acme/j.php"]
    assert outcome.observed == "Webex link"


def test_plain_teams_lesson_is_ok(lesson: SessionSnapshot) -> None:
    """A Teams meeting with no other link passes."""
    lesson.provider = "teamsForBusiness"
    assert _verdicts(lesson) == [Verdict.OK]


def test_teams_lesson_with_provider_not_recorded_is_ok(lesson: SessionSnapshot) -> None:
    """provider None on a Teams meeting is not a finding."""
    lesson.provider = None
    assert _verdicts(lesson) == [Verdict.OK]


def test_zoom_staff_meeting_is_not_applicable(zoom_lesson: SessionSnapshot) -> None:
    """No pupils invited or present: the clause is about contact with pupils."""
    zoom_lesson.invitee_ids = []
    assert _verdicts(zoom_lesson, BEFORE) == [Verdict.NOT_APPLICABLE]


def test_pupil_present_counts_as_expected(zoom_lesson: SessionSnapshot) -> None:
    """A pupil who turned up without an invitation makes it a session with pupils."""
    zoom_lesson.invitee_ids = []
    zoom_lesson.presence = [presence(TEACHER, (0, 30)), presence(PUPIL, (0, 30))]
    assert _verdicts(zoom_lesson) == [Verdict.BREACH]


def test_cancelled_invitation_is_not_applicable(zoom_lesson: SessionSnapshot) -> None:
    """A cancelled Zoom lesson that nobody joined is no contact."""
    zoom_lesson.is_cancelled = True
    assert _verdicts(zoom_lesson, BEFORE) == [Verdict.NOT_APPLICABLE]


@pytest.mark.parametrize("kind", [SessionKind.PEER_TO_PEER, SessionKind.DIRECT_CHAT])
def test_calls_and_chats_are_not_applicable(lesson: SessionSnapshot, kind: SessionKind) -> None:
    """Direct calls and chats have no invitation."""
    lesson.kind = kind
    assert _verdicts(lesson) == [Verdict.NOT_APPLICABLE]


def test_meet_now_without_a_calendar_entry_is_not_applicable(lesson: SessionSnapshot) -> None:
    """A meeting found only from its call record is a Teams meeting by construction."""
    lesson.scheduled_start = lesson.scheduled_end = None
    assert _verdicts(lesson) == [Verdict.NOT_APPLICABLE]


@pytest.mark.parametrize(
    ("link", "reduced"),
    [
        (ZOOM, "https://us06web.zoom.us/j/85512345678"),
        ("https://meet.google.com/abc-defg-hij.", "https://meet.google.com/abc-defg-hij"),
        ("https://facetime.apple.com/join#v=1&p=secret", "https://facetime.apple.com/join"),
        ("HTTPS://User:pw@Whereby.com/mrs-smith", "https://whereby.com/mrs-smith"),
    ],
)
def test_links_keep_scheme_host_and_path_only(link: str, reduced: str) -> None:
    """Queries, fragments, credentials and a trailing full stop are dropped."""
    assert reduce_link(link) == reduced


@pytest.mark.parametrize(
    ("link", "name"),
    [
        ("https://us06web.zoom.us/j/1", "Zoom"),
        ("https://meet.google.com/a", "Google Meet"),
        ("https://acme.my.webex.com/x", "Webex"),
        ("https://whereby.com/room", "Whereby"),
        ("https://join.skype.com/abc", "Skype"),
        ("https://evilzoom.us/j/1", "evilzoom.us"),
    ],
)
def test_services_are_named_by_host(link: str, name: str) -> None:
    """A host is matched on whole labels, so evilzoom.us is not Zoom."""
    assert service_of(link) == name
