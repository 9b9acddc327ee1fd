"""The audit trail: append-only entries, the head row that serialises writers, and triggers that
refuse deletes and every update except a purge blanking an entry's content.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from remote_guard.store.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64

# The columns a purge may not touch; it may only set payload and salt to NULL.
_KEPT = (
    "seq",
    "at",
    "actor_id",
    "actor_role",
    "action",
    "object_type",
    "object_id",
    "run_id",
    "content_digest",
    "prev_hash",
    "hash",
    "keyed",
)

_PG_FUNCTION = f"""
CREATE FUNCTION audit_entries_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit entries are append-only: % cannot be deleted', OLD.seq;
    END IF;
    IF ({", ".join(f"NEW.{c}" for c in _KEPT)}) IS DISTINCT FROM
       ({", ".join(f"OLD.{c}" for c in _KEPT)})
       OR NEW.payload IS NOT NULL OR NEW.salt IS NOT NULL THEN
        RAISE EXCEPTION 'audit entries are append-only: % can only have its content purged', OLD.seq;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""

_SQLITE_CHANGED = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _KEPT)


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=320), nullable=False),
        sa.Column("actor_role", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("salt", sa.String(length=32), nullable=True),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("keyed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_entries")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_entries_hash")),
    )
    op.create_index(op.f("ix_audit_entries_at"), "audit_entries", ["at"])
    op.create_index(op.f("ix_audit_entries_action"), "audit_entries", ["action"])
    op.create_index("ix_audit_entries_object", "audit_entries", ["object_type", "object_id"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries "
            "FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()"
        )
    elif dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
            "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER audit_entries_purge_only BEFORE UPDATE ON audit_entries "
            f"WHEN {_SQLITE_CHANGED} OR NEW.payload IS NOT NULL OR NEW.salt IS NOT NULL "
            "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only: only a purge may "
            "remove their content'); END"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_entries_append_only ON audit_entries")
        op.execute("DROP FUNCTION IF EXISTS audit_entries_append_only()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_entries_purge_only")
        op.execute("DROP TRIGGER IF EXISTS audit_entries_no_delete")
    op.drop_table("audit_head")
    op.drop_index("ix_audit_entries_object", table_name="audit_entries")
    op.drop_index(op.f("ix_audit_entries_action"), table_name="audit_entries")
    op.drop_index(op.f("ix_audit_entries_at"), table_name="audit_entries")
    op.drop_table("audit_entries")
