"""Change-notification subscriptions, received notifications and live alerts.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from remote_guard.store.db import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _session_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["session_id"],
        ["sessions.id"],
        name=op.f(f"fk_{table}_session_id_sessions"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "graph_subscriptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=1000), nullable=False),
        sa.Column("graph_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("api", sa.String(length=8), nullable=False),
        sa.Column("change_type", sa.String(length=64), nullable=False),
        sa.Column("session_ids", sa.JSON(), nullable=False),
        sa.Column("wanted_until", UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("renewed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_notification_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'pending', 'deleted')", name=op.f("ck_graph_subscriptions_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_graph_subscriptions")),
        sa.UniqueConstraint("kind", "target", name=op.f("uq_graph_subscriptions_kind")),
        sa.UniqueConstraint("graph_id", name=op.f("uq_graph_subscriptions_graph_id")),
    )
    op.create_table(
        "live_meetings",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("join_url", sa.Text(), nullable=True),
        sa.Column("call_started_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("call_ended_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("roster_complete", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        _session_fk("live_meetings"),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_live_meetings")),
    )
    op.create_index(
        op.f("ix_live_meetings_updated_at"), "live_meetings", ["updated_at"], unique=False
    )
    op.create_table(
        "live_participants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.String(length=200), nullable=False),
        sa.Column("person_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("joined_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("left_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("complete_call", sa.Boolean(), nullable=False),
        _session_fk("live_participants"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_participants")),
    )
    op.create_index(
        op.f("ix_live_participants_session_id"), "live_participants", ["session_id"], unique=False
    )
    op.create_table(
        "live_chat_messages",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("sender_id", sa.String(length=200), nullable=False),
        sa.Column("sender_name", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", UTCDateTime(timezone=True), nullable=False),
        _session_fk("live_chat_messages"),
        sa.PrimaryKeyConstraint("session_id", "message_id", name=op.f("pk_live_chat_messages")),
    )
    op.create_table(
        "live_alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("school", sa.String(length=64), nullable=True),
        sa.Column("staff_id", sa.String(length=200), nullable=False),
        sa.Column("pupil_id", sa.String(length=200), nullable=False),
        sa.Column("join_url", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("raised_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("cleared_reason", sa.Text(), nullable=True),
        sa.Column("mailed_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("mail_error", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.CheckConstraint("status IN ('open', 'cleared')", name=op.f("ck_live_alerts_status")),
        _session_fk("live_alerts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_alerts")),
    )
    op.create_index(op.f("ix_live_alerts_session_id"), "live_alerts", ["session_id"], unique=False)
    op.create_index(op.f("ix_live_alerts_school"), "live_alerts", ["school"], unique=False)
    op.create_index(op.f("ix_live_alerts_status"), "live_alerts", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_live_alerts_status"), table_name="live_alerts")
    op.drop_index(op.f("ix_live_alerts_school"), table_name="live_alerts")
    op.drop_index(op.f("ix_live_alerts_session_id"), table_name="live_alerts")
    op.drop_table("live_alerts")
    op.drop_table("live_chat_messages")
    op.drop_index(op.f("ix_live_participants_session_id"), table_name="live_participants")
    op.drop_table("live_participants")
    op.drop_index(op.f("ix_live_meetings_updated_at"), table_name="live_meetings")
    op.drop_table("live_meetings")
    op.drop_table("graph_subscriptions")
