"""Stored withdrawals of parental consent: when, who told the school, and the school's note.

The consent row itself (``consent.models.ConsentRow.withdrawn_at``) is what the rules read; a
withdrawal row keeps the account of it that a DSL or SLT member may need later.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from remote_guard.store.db import Base, UTCDateTime


class ConsentWithdrawalRow(Base):
    """A parent's or carer's withdrawal of one consent, as a member of staff recorded it."""

    __tablename__ = "consent_withdrawals"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    consent_id: Mapped[str] = mapped_column(
        ForeignKey("consents.id", ondelete="CASCADE"), index=True
    )
    withdrawn_at: Mapped[datetime] = mapped_column(UTCDateTime)
    told_by: Mapped[str] = mapped_column(Text)  # who told the school (a parent's name, say)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
