"""Stored sessions and their snapshots, and the staff calendars as change tracking left them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
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
    # A digest of what the latest snapshot was built from (the calendar copies, the call records
    # matched to it, its occurrence in a series): while it stays the same, the session is not
    # read from Graph again (see collect.changes). None: read it again at the next poll.
    source_digest: Mapped[str | None] = mapped_column(String(64))
    # Whether the latest snapshot has something in ``missing``: such a session is read again
    # at every poll while it is upcoming or live (see collect.collector Collector._choose).
    has_gaps: Mapped[bool | None] = mapped_column(Boolean)


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


class CalendarSyncRow(Base):
    """One staff mailbox's calendar as change tracking (``calendarView/delta``) last left it.

    ``delta_link`` asks Graph for what changed since; it covers ``window_start``..``window_end``,
    the window the round began with. None means the next round must start afresh (the link went
    stale, or no round has finished yet) while the events stored so far are kept.
    """

    __tablename__ = "calendar_syncs"

    mailbox_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    delta_link: Mapped[str | None] = mapped_column(Text)
    # Counts changes to this mailbox's stored events, so a copy kept in memory knows it is stale.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    full_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CalendarEventRow(Base):
    """One event on a staff calendar, as the last delta round delivered it.

    ``data`` is the event's Graph payload without its body text: only the meeting links found
    in the body are kept (that is all the collector reads there), so invitations' text is not
    stored. ``digest`` is of ``data`` without the properties that change on every save.
    """

    __tablename__ = "calendar_events"

    mailbox_id: Mapped[str] = mapped_column(
        ForeignKey("calendar_syncs.mailbox_id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    digest: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
