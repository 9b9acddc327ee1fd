"""Monitoring drop-ins; retiring an approved activity; the reason SLT gave for a decision.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from remote_guard.store.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dropins",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("school", sa.String(length=64), nullable=True),
        sa.Column("slt_user_id", sa.String(length=64), nullable=False),
        sa.Column("starts_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("scheduled_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("graph_event_id", sa.Text(), nullable=True),
        sa.Column("calendar_error", sa.Text(), nullable=True),
        sa.Column("calendar_attempted_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("outcome_recorded_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome_recorded_by", sa.String(length=64), nullable=True),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('scheduled', 'done', 'missed', 'cancelled')",
            name=op.f("ck_dropins_status"),
        ),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('no_concern', 'concern_raised', 'not_able_to_join')",
            name=op.f("ck_dropins_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_dropins_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dropins")),
    )
    op.create_index(op.f("ix_dropins_session_id"), "dropins", ["session_id"])
    op.create_index(op.f("ix_dropins_school"), "dropins", ["school"])
    op.create_index(op.f("ix_dropins_slt_user_id"), "dropins", ["slt_user_id"])
    with op.batch_alter_table("approved_activities") as batch:
        batch.add_column(sa.Column("retired_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("retired_by", sa.String(length=64), nullable=True))
    with op.batch_alter_table("registrations") as batch:
        batch.add_column(sa.Column("decision_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("registrations") as batch:
        batch.drop_column("decision_reason")
    with op.batch_alter_table("approved_activities") as batch:
        batch.drop_column("retired_by")
        batch.drop_column("retired_at")
    op.drop_index(op.f("ix_dropins_slt_user_id"), table_name="dropins")
    op.drop_index(op.f("ix_dropins_school"), table_name="dropins")
    op.drop_index(op.f("ix_dropins_session_id"), table_name="dropins")
    op.drop_table("dropins")
