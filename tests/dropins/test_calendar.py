"""The drop-in's calendar event: what is sent to Graph, and the sentence shown when it fails."""

from __future__ import annotations

from datetime import UTC, datetime

from remote_guard.dropins.calendar import DropInEvent, _explain, transaction_id_for
from remote_guard.graph.errors import GraphError, GraphPermissionError

JOIN = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0?context=%7b%7d&a=1"


def _event(subject: str = "Oak maths") -> DropInEvent:
    return DropInEvent(
        slt_user_id="slt-1",
        transaction_id=transaction_id_for("d-1"),
        session_subject=subject,
        teacher_name="Olive <b>Oak</b>",
        join_url=JOIN,
        starts_at=datetime(2026, 11, 18, 10, 0, tzinfo=UTC),
        ends_at=datetime(2026, 11, 18, 10, 45, tzinfo=UTC),
        timezone="Europe/London",
    )


def test_the_transaction_id_is_stable_per_drop_in() -> None:
    assert transaction_id_for("d-1") == transaction_id_for("d-1")
    assert transaction_id_for("d-1") != transaction_id_for("d-2")


def test_the_event_is_an_appointment_with_the_join_link_never_a_teams_meeting() -> None:
    payload = _event().payload()
    assert payload["isOnlineMeeting"] is False
    assert "onlineMeetingProvider" not in payload
    assert "attendees" not in payload
    assert payload["start"] == {"dateTime": "2026-11-18T10:00:00", "timeZone": "UTC"}
    assert payload["end"] == {"dateTime": "2026-11-18T10:45:00", "timeZone": "UTC"}
    assert payload["transactionId"] == transaction_id_for("d-1")
    content = payload["body"]["content"]
    assert 'href="' + JOIN.replace("&", "&amp;") + '"' in content
    assert "Olive &lt;b&gt;Oak&lt;/b&gt;" in content  # names from Teams are escaped
    assert "Wed 18 Nov 10:00-10:45" in content  # school local time (GMT in November)


def test_a_long_subject_is_cut_to_outlooks_limit() -> None:
    subject = _event("x" * 400).subject
    assert subject.startswith("Safeguarding drop-in: x")
    assert len(subject) == 255


def test_failures_read_as_what_to_do() -> None:
    forbidden = GraphPermissionError("Access is denied.", status=403, endpoint="/users/{id}/events")
    assert "Calendars.ReadWrite" in _explain(forbidden)
    throttled = GraphError("Too many", status=429, endpoint="/users/{id}/events", retryable=True)
    assert "HTTP 429" in _explain(throttled)
