"""Putting a drop-in into the SLT member's own Outlook calendar through Graph.

``POST /users/{id}/events`` with a ``transactionId`` derived from the drop-in's id: Graph (and
the fake tenant) answer a repeated transactionId with the event made the first time, so a retry
after a timeout, a 429 or a crash between the call and the database write never makes a second
event. The event is a plain appointment holding the lesson's join link: ``isOnlineMeeting`` is
false and no ``onlineMeetingProvider`` is sent, because either would make Graph create a new
Teams meeting, which cannot be undone. No attendees are added (each would be sent an
invitation, and the teacher must not be told a visit is coming).
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import (
    GraphAuthError,
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
)

REMINDER_MINUTES = 10
SUBJECT_PREFIX = "Safeguarding drop-in: "
# Outlook's limit on an event's subject is 255 characters.
_SUBJECT_MAX = 255
# Fixed, so the same drop-in id always gives the same transactionId on any server.
_TRANSACTION_NAMESPACE = uuid.UUID("6f1c2d4e-8a3b-4c5d-9e7f-0a1b2c3d4e5f")


def transaction_id_for(dropin_id: str) -> str:
    """The ``transactionId`` sent with every attempt to create this drop-in's event."""
    return str(uuid.uuid5(_TRANSACTION_NAMESPACE, f"remote_guard drop-in {dropin_id}"))


@dataclass(frozen=True)
class DropInEvent:
    """What goes into the calendar event."""

    slt_user_id: str
    transaction_id: str
    session_subject: str
    teacher_name: str
    join_url: str | None
    starts_at: datetime
    ends_at: datetime
    timezone: str

    @property
    def subject(self) -> str:
        return (SUBJECT_PREFIX + (self.session_subject or "remote session"))[:_SUBJECT_MAX]

    def body_html(self) -> str:
        """The event's body: what to do, and the lesson's join link (every value escaped, since
        subjects and names come from Teams)."""
        zone = ZoneInfo(self.timezone)
        when = (
            f"{self.starts_at.astimezone(zone):%a %-d %b %H:%M}-"
            f"{self.ends_at.astimezone(zone):%H:%M}"
        )
        lines = [
            "<p>A safeguarding monitoring drop-in scheduled in remote_guard.</p>",
            f"<p>Session: {html.escape(self.session_subject or 'remote session')}<br>"
            f"Teacher: {html.escape(self.teacher_name or 'unknown')}<br>"
            f"When: {html.escape(when)}</p>",
        ]
        if self.join_url:
            link = html.escape(self.join_url, quote=True)
            lines.append(f'<p><a href="{link}">Join the lesson to monitor</a><br>{link}</p>')
        else:
            lines.append("<p>This session has no Teams join link.</p>")
        lines.append(
            "<p>Join with your camera and microphone off, then record what you saw in "
            "remote_guard.</p>"
        )
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "body": {"contentType": "HTML", "content": self.body_html()},
            "start": _graph_time(self.starts_at),
            "end": _graph_time(self.ends_at),
            "isOnlineMeeting": False,
            "isReminderOn": True,
            "reminderMinutesBeforeStart": REMINDER_MINUTES,
            "showAs": "busy",
            "transactionId": self.transaction_id,
        }


def _graph_time(moment: datetime) -> dict[str, str]:
    return {
        "dateTime": moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "timeZone": "UTC",
    }


class CalendarError(Exception):
    """The event could not be put in the calendar. ``str()`` is a sentence for the SLT member
    (no token, no internal detail); ``reason`` is for the log and the audit trail."""

    def __init__(self, message: str, *, reason: str, status: int | None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


def create_event(graph: GraphClient, event: DropInEvent) -> str:
    """Create (or, for a transactionId already used, find) the event; its Graph id.

    Raises:
        CalendarError: Graph refused or could not be reached, after the client's retries.
    """
    try:
        answer = graph.post(f"/users/{event.slt_user_id}/events", event.payload())
    except GraphError as exc:
        raise CalendarError(_explain(exc), reason=exc.reason, status=exc.status) from exc
    event_id = answer.get("id") if isinstance(answer, dict) else None
    if not isinstance(event_id, str) or not event_id:
        raise CalendarError(
            "Microsoft 365 answered without saying which calendar event it made. Try again.",
            reason="POST /users/{id}/events: 2xx without an event id",
            status=None,
        )
    return event_id


def _explain(error: GraphError) -> str:
    """A sentence for the SLT member saying what went wrong and what to do."""
    if isinstance(error, GraphPermissionError):
        return (
            "Microsoft 365 refused to add the event to your calendar (HTTP 403: access denied). "
            "remote_guard needs the application permission Calendars.ReadWrite, and your "
            "mailbox must not be excluded by an Exchange application access policy. Ask your "
            "IT support to check both, then retry."
        )
    if isinstance(error, GraphNotFoundError):
        return (
            "Microsoft 365 has no mailbox for your account (HTTP 404), so there is no calendar "
            "to add the event to. Ask your IT support whether your account has a mailbox."
        )
    if isinstance(error, GraphAuthError):
        return (
            "remote_guard could not sign in to Microsoft 365 to add the event. Try again in a "
            "few minutes; if it keeps happening, tell your IT support."
        )
    if error.status == 429:
        return (
            "Microsoft 365 is busy and asked remote_guard to slow down (HTTP 429, too many "
            "requests); it kept trying, without success. Retry in a few minutes."
        )
    if error.retryable:
        shown = f"HTTP {error.status}" if error.status else "no answer"
        return (
            f"Microsoft 365 could not be reached or did not answer properly ({shown}). Retry in "
            "a few minutes."
        )
    shown = f"HTTP {error.status}" if error.status else "an error"
    return (
        f"Microsoft 365 did not accept the event ({shown}). Retry; if it happens again, tell "
        "your IT support."
    )
