"""Stored subscriptions, what the live notifications said, and live alerts to SLT.

Every live table hangs off ``sessions`` (``ondelete=CASCADE``), so what retention removes with a
session goes with it. No chat text is stored: a live chat message is who posted, and when.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from remote_guard.store.db import Base, UTCDateTime


class SubscriptionKind(StrEnum):
    CALL_RECORDS = "call_records"  # /communications/callRecords, one per tenant
    MEETING_CHAT = "meeting_chat"  # /chats/{thread}/messages, one per live or upcoming meeting
    # /teams/{team}/channels/{channel}/messages: a channel meeting's conversation is replies to
    # its post in the channel; one per channel with a live or upcoming meeting
    CHANNEL_CHAT = "channel_chat"
    CALENDAR = "calendar"  # /users/{id}/events, one per staff mailbox
    ROSTER = "roster"  # beta /communications/onlineMeetings/?$filter=JoinWebUrl eq '...'


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"  # Graph has it (graph_id), until expires_at
    PENDING = "pending"  # wanted, not (or no longer) at Graph: created at the next sync
    DELETED = "deleted"  # no longer wanted, deleted at Graph


class SubscriptionRow(Base):
    """One subscription remote_guard wants, and the Graph subscription that serves it now.

    ``(kind, target)`` names what is watched (``target`` is the chat thread, the join URL, the
    mailbox id, or ``tenant`` for call records); ``graph_id`` changes when it is recreated.
    """

    __tablename__ = "graph_subscriptions"
    __table_args__ = (
        UniqueConstraint("kind", "target"),
        CheckConstraint("status IN ('active', 'pending', 'deleted')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(1000))
    graph_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.PENDING.value)
    resource: Mapped[str] = mapped_column(Text)
    api: Mapped[str] = mapped_column(String(8), default="v1.0")  # v1.0 | beta
    change_type: Mapped[str] = mapped_column(String(64))
    # The sessions a per-meeting subscription serves (a series' occurrences share one chat and
    # one join URL); empty for the tenant- and mailbox-wide ones.
    session_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    # When the meeting it serves is over (plus linger): deleted after that. None: kept.
    wanted_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # at Graph, this graph_id
    renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_notification_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LiveMeetingRow(Base):
    """A live meeting's call as the roster events tell it (beta, opt-in).

    ``roster_complete`` is true only once CallStarted was seen for the current call: Graph sends
    who joins and leaves, never who was already there, so a roster followed from the middle of a
    call is partial and is never used to conclude who is absent (or alone).
    """

    __tablename__ = "live_meetings"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    join_url: Mapped[str | None] = mapped_column(Text)
    call_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    call_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    roster_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LiveParticipantRow(Base):
    """One stay of one participant in a live meeting's call: joined, and left (None: still in)."""

    __tablename__ = "live_participants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    participant_id: Mapped[str] = mapped_column(String(200))  # the call's participant id
    person_id: Mapped[str] = mapped_column(String(200))  # as the collector names people
    kind: Mapped[str] = mapped_column(String(32))  # collect.snapshot.PersonKind
    display_name: Mapped[str] = mapped_column(Text, default="")
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Seen while the roster was complete (after CallStarted): only such stays are presence.
    complete_call: Mapped[bool] = mapped_column(Boolean, default=False)


class LiveChatMessageRow(Base):
    """A pupil's message in a live meeting's chat, as a notification named it (no text)."""

    __tablename__ = "live_chat_messages"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    thread_id: Mapped[str] = mapped_column(Text)
    sender_id: Mapped[str] = mapped_column(String(200))
    sender_name: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LiveAlertStatus(StrEnum):
    OPEN = "open"
    CLEARED = "cleared"


class LiveAlertRow(Base):
    """A live alert to SLT: a member of staff alone with one pupil, right now, in a session with
    no valid one-to-one registration. Cleared when the roster changes or the call ends."""

    __tablename__ = "live_alerts"
    __table_args__ = (CheckConstraint("status IN ('open', 'cleared')", name="status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    school: Mapped[str | None] = mapped_column(String(64), index=True)
    staff_id: Mapped[str] = mapped_column(String(200))
    pupil_id: Mapped[str] = mapped_column(String(200))
    join_url: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)  # why no registration covers it
    status: Mapped[str] = mapped_column(String(16), default=LiveAlertStatus.OPEN.value, index=True)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cleared_reason: Mapped[str | None] = mapped_column(Text)
    mailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mail_error: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
