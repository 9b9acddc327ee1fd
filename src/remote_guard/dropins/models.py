"""Stored monitoring drop-ins: an SLT member's planned visit to a live remote session.

A drop-in is scheduled from the SLT board; remote_guard puts an event with the lesson's join
link into the SLT member's own Outlook calendar (``graph_event_id`` once Graph has it), and the
SLT member later records what they saw. ``status`` moves scheduled -> done | missed, or
scheduled -> cancelled; ``service`` checks the moves and writes the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from remote_guard.store.db import Base, UTCDateTime

NOTES_MAX_CHARS = 10_000


class DropInStatus(StrEnum):
    SCHEDULED = "scheduled"
    DONE = "done"  # the SLT member joined the session
    MISSED = "missed"  # they could not join it
    CANCELLED = "cancelled"


class DropInOutcome(StrEnum):
    NO_CONCERN = "no_concern"  # visited, nothing of concern seen
    CONCERN_RAISED = "concern_raised"  # visited, a concern passed to the DSL
    NOT_ABLE_TO_JOIN = "not_able_to_join"


OUTCOME_LABELS = {
    DropInOutcome.NO_CONCERN: "Visited: no concern",
    DropInOutcome.CONCERN_RAISED: "Visited: concern raised with the DSL",
    DropInOutcome.NOT_ABLE_TO_JOIN: "Not able to join",
}

STATUS_LABELS = {
    DropInStatus.SCHEDULED: "Scheduled",
    DropInStatus.DONE: "Done",
    DropInStatus.MISSED: "Missed",
    DropInStatus.CANCELLED: "Cancelled",
}


class DropInRow(Base):
    """One monitoring drop-in by one SLT member into one session."""

    __tablename__ = "dropins"
    __table_args__ = (
        CheckConstraint("status IN ('scheduled', 'done', 'missed', 'cancelled')", name="status"),
        CheckConstraint(
            "outcome IS NULL OR outcome IN ('no_concern', 'concern_raised', 'not_able_to_join')",
            name="outcome",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    # The session's school when the drop-in was made, so lists can be limited by school.
    school: Mapped[str | None] = mapped_column(String(64), index=True)
    slt_user_id: Mapped[str] = mapped_column(String(64), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=DropInStatus.SCHEDULED.value)
    # Sent with every attempt to create the calendar event, so a retry never makes a second one.
    transaction_id: Mapped[str] = mapped_column(String(64))
    graph_event_id: Mapped[str | None] = mapped_column(Text)
    # Why the last attempt to put the event in the calendar failed (shown with a retry button).
    calendar_error: Mapped[str | None] = mapped_column(Text)
    calendar_attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(32))
    case_id: Mapped[int | None] = mapped_column(Integer)  # the DSL case a concern went to
    notes: Mapped[str | None] = mapped_column(Text)
    outcome_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome_recorded_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
