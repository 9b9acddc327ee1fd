"""Leases by which several poller processes share work (tenants, mailbox shards).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from remote_guard.store.db import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("fencing_token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("renewed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("done_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
