"""Stored cases and their notes.

A case gathers the open findings of one session for the DSL's review. Its status moves
new -> in_review -> closed (closing needs a resolution) and closed -> in_review to reopen;
``service`` checks the moves and writes the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from remote_guard.store.db import Base, UTCDateTime

NOTE_MAX_CHARS = 10_000


class CaseStatus(StrEnum):
    NEW = "new"
    IN_REVIEW = "in_review"
    CLOSED = "closed"


class Resolution(StrEnum):
    NO_CONCERN = "no_concern"
    CONCERN_RECORDED = "concern_recorded"
    REFERRED_ON = "referred_on"
    FALSE_POSITIVE = "false_positive"


class NoteKind(StrEnum):
    NOTE = "note"  # a DSL's or deputy DSL's note
    CONTEXT = "context"  # a teacher's note on their own session
    STATUS_CHANGE = "status_change"  # the note given with a move of the case's status


class CaseRow(Base):
    """The review of one session's findings."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint("status IN ('new', 'in_review', 'closed')", name="status"),
        CheckConstraint(
            "resolution IS NULL OR resolution IN "
            "('no_concern', 'concern_recorded', 'referred_on', 'false_positive')",
            name="resolution",
        ),
        # A closed case always says how it was resolved.
        CheckConstraint("status != 'closed' OR resolution IS NOT NULL", name="closed_resolved"),
        Index("ix_cases_status_updated", "status", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), unique=True
    )
    school: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.NEW.value)
    resolution: Mapped[str | None] = mapped_column(String(32))
    assignee_id: Mapped[str | None] = mapped_column(String(64), index=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(64))


class CaseNoteRow(Base):
    """A note on a case: a DSL's note, a teacher's context, or the note of a status change."""

    __tablename__ = "case_notes"
    __table_args__ = (CheckConstraint("kind IN ('note', 'context', 'status_change')", name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[str] = mapped_column(String(64))
    author_role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
