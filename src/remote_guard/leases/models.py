"""The lease table: who holds which piece of work, until when, under which fencing token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from remote_guard.store.db import Base, UTCDateTime


class LeaseRow(Base):
    """One piece of work (a tenant's shard, a session) and the worker that holds it, if any.

    A row outlives its holders: it keeps the fencing token, which only ever grows, and when the
    work was last finished (``done_at``), which is how a worker tells whether it is due again.
    """

    __tablename__ = "leases"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    # host:pid:random of the worker holding it; NULL once released.
    holder: Mapped[str | None] = mapped_column(String(200))
    # Grows by one each time a different worker takes the lease: a write fenced with an older
    # token is refused, so a worker that lost its lease (paused, cut off) cannot overwrite the
    # work of the one that took over.
    fencing_token: Mapped[int] = mapped_column(BigInteger, default=0)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The poll run the holder is doing under this lease: a run still marked running whose lease
    # has expired was cut short.
    run_id: Mapped[str | None] = mapped_column(String(36))
