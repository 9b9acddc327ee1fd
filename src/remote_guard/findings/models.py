"""Stored findings and the history of their status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from remote_guard.store.db import Base, UTCDateTime


class FindingRow(Base):
    """The current state of one finding; ``key`` is stable across polls (see Finding.key)."""

    __tablename__ = "findings"
    __table_args__ = (
        Index("ix_findings_status_severity", "status", "severity"),
        Index("ix_findings_session", "session_id"),
    )

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(64))
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    clause_id: Mapped[str] = mapped_column(String(64))
    clause_version: Mapped[int] = mapped_column(Integer)
    session_id: Mapped[str] = mapped_column(String(64))
    subject_key: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16))
    # The exemption that covers this finding, if any: the finding stays, marked as exempted.
    exemption: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    severity: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16))
    observed: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    next_step: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    sources: Mapped[list[str]] = mapped_column(JSON)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    poll_run_id: Mapped[str | None] = mapped_column(String(36))


class FindingEventRow(Base):
    """A change of a finding's status: when, from what, to what, and why."""

    __tablename__ = "finding_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    finding_key: Mapped[str] = mapped_column(
        ForeignKey("findings.key", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    poll_run_id: Mapped[str | None] = mapped_column(String(36))
