"""Poll runs and the checkpoints that let a poll resume."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from remote_guard.store.db import Base, UTCDateTime


class PollRunRow(Base):
    """One poll cycle: what was read, how many requests it took, and what went wrong."""

    __tablename__ = "poll_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # running | ok | partial | failed
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)
    graph: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CheckpointRow(Base):
    """A named resume point (e.g. a mailbox's delta link), committed with the work it covers."""

    __tablename__ = "checkpoints"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
