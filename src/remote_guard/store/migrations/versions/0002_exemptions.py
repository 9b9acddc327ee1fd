"""Exemptions, the exemption a finding carries, and a parent's contact address on a consent.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from remote_guard.store.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exemptions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("pupil_id", sa.String(length=64), nullable=True),
        sa.Column("staff_id", sa.String(length=64), nullable=True),
        sa.Column("series_id", sa.Text(), nullable=True),
        sa.Column("session_id", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.String(length=320), nullable=False),
        sa.Column("granted_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=320), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exemptions")),
    )
    op.create_index(op.f("ix_exemptions_rule_id"), "exemptions", ["rule_id"])
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("exemption", sa.JSON(), nullable=True))
    with op.batch_alter_table("consents") as batch:
        batch.add_column(sa.Column("contact_email", sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("contact_email")
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("exemption")
    op.drop_index(op.f("ix_exemptions_rule_id"), table_name="exemptions")
    op.drop_table("exemptions")
