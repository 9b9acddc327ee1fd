"""The audit trail's tables: the entries, append-only, and the one-row head that serialises writers.

An entry's hash covers its header (sequence, time, actor, action, object, run id, the previous
entry's hash) and a digest of its content, not the content itself. Retention can therefore blank
an old entry's content and salt while the chain stays verifiable. The database refuses any other
update, and every delete (triggers created by migration 0003).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from remote_guard.store.db import Base, UTCDateTime

GENESIS_HASH = "0" * 64  # the "previous hash" of entry 1
HEAD_ROW_ID = 1


class AuditEntryRow(Base):
    """One audited event. ``seq`` runs 1, 2, 3, ... with no gaps."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_object", "object_type", "object_id"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor_id: Mapped[str] = mapped_column(String(320))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[str | None] = mapped_column(String(64))
    # Canonical JSON ({"before": ..., "after": ..., "detail": ...}); NULL once purged.
    payload: Mapped[str | None] = mapped_column(Text)
    # Random, per entry, so that the digest of a purged small payload cannot be guessed back.
    salt: Mapped[str | None] = mapped_column(String(32))
    content_digest: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    keyed: Mapped[bool] = mapped_column(Boolean)  # HMAC-SHA256 with the configured key


class AuditHeadRow(Base):
    """The chain's last sequence number and hash; updating it is how a writer takes the lock."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
