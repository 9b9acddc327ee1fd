"""Stored sessions and their snapshots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from remote_guard.store.db import Base, UTCDateTime


class SessionRow(Base):
    """One remote session, however many mailboxes it was seen in."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(Text)
    organizer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    school: Mapped[str | None] = mapped_column(String(64), index=True)
    join_url: Mapped[str | None] = mapped_column(Text)
    scheduled_start: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    scheduled_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_collected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set once everything that appears after a session ends (attendance, call record, chat,
    # recordings) has been read; later polls re-evaluate the stored snapshot without Graph calls.
    final_collected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    latest_snapshot_id: Mapped[int | None] = mapped_column(Integer)


class SnapshotRow(Base):
    """A snapshot as collected; a new row only when its content changed."""

    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_session_collected", "session_id", "collected_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    poll_run_id: Mapped[str | None] = mapped_column(String(36))
    digest: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
