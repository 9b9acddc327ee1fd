"""Stored calendar delta links and the events they have delivered, per mailbox (frugal polling).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from remote_guard.store.db import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calendar_syncs",
        sa.Column("mailbox_id", sa.String(length=64), nullable=False),
        sa.Column("window_start", UTCDateTime(timezone=True), nullable=False),
        sa.Column("window_end", UTCDateTime(timezone=True), nullable=False),
        sa.Column("delta_link", sa.Text(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("synced_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("full_synced_at", UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("mailbox_id", name=op.f("pk_calendar_syncs")),
    )
    op.create_table(
        "calendar_events",
        sa.Column("mailbox_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=512), nullable=False),
        sa.Column("start", UTCDateTime(timezone=True), nullable=True),
        sa.Column("end", UTCDateTime(timezone=True), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["calendar_syncs.mailbox_id"],
            name=op.f("fk_calendar_events_mailbox_id_calendar_syncs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mailbox_id", "event_id", name=op.f("pk_calendar_events")),
    )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("source_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("has_gaps", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("has_gaps")
        batch.drop_column("source_digest")
    op.drop_table("calendar_events")
    op.drop_table("calendar_syncs")
