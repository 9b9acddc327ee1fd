"""Withdrawals of parental consent: when, who told the school, the note, who recorded it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from remote_guard.store.db import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_withdrawals",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("consent_id", sa.String(length=64), nullable=False),
        sa.Column("withdrawn_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("told_by", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consents.id"],
            name=op.f("fk_consent_withdrawals_consent_id_consents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_withdrawals")),
    )
    op.create_index(
        op.f("ix_consent_withdrawals_consent_id"), "consent_withdrawals", ["consent_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_consent_withdrawals_consent_id"), table_name="consent_withdrawals")
    op.drop_table("consent_withdrawals")
