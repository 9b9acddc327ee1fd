"""The tamper-evident audit trail: who did what to which record, and when.

Call :func:`record` (or a helper) with the SQLAlchemy session that makes the change, so the
entry commits in the same transaction. Bind who is acting with :func:`acting_as`.
"""

from remote_guard.audit.trail import (
    SYSTEM,
    Actor,
    AuditError,
    Event,
    TrailConfig,
    acting_as,
    config_for,
    configure,
    current_actor,
    log_head,
    record,
    record_finding_events,
    record_many,
    record_row_change,
    record_startup,
    rewrite_file,
    sync_file,
)

__all__ = [
    "SYSTEM",
    "Actor",
    "AuditError",
    "Event",
    "TrailConfig",
    "acting_as",
    "config_for",
    "configure",
    "current_actor",
    "log_head",
    "record",
    "record_finding_events",
    "record_many",
    "record_row_change",
    "record_startup",
    "rewrite_file",
    "sync_file",
]
