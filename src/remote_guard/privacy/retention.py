"""The daily purge: remove what has been kept for as long as ``[retention]`` allows.

What goes, and when (the reasons are in docs/retention.md):

* a session in which nothing was ever found (no finding was ever fail, warn or error), with its
  snapshots and its pass / not-applicable results, ``sessions_without_findings_days`` after it
  was last read;
* a session with findings, with its snapshots, findings and their history, once the session was
  last read and every one of its findings last changed more than ``findings_days`` ago (the
  evidence and the findings resting on it go together);
* a consent, ``consents_after_withdrawal_days`` after it was withdrawn or expired; a
  registration that pointed at it keeps its other details and loses the link;
* the content (before/after/detail) of audit entries older than ``audit_days``. Their header
  (time, actor, action, object, hashes) stays, so the chain still verifies.

Closed cases (``closed_cases_days``) arrive with the web app; nothing here holds them yet.
The purge is one transaction, and records itself in the audit trail: counts, the ids removed and,
as the entry's object id, the cut-off before which audit content was removed (``audit verify``
checks every blanked entry against it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.audit.chain import utc_text
from remote_guard.audit.models import AuditEntryRow
from remote_guard.audit.verify import PURGE_ACTION
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.consent.models import ConsentRow, RegistrationRow
from remote_guard.findings.models import FindingEventRow, FindingRow
from remote_guard.rules.base import OPEN_STATUSES
from remote_guard.settings import RetentionSettings
from remote_guard.store.db import transaction

log = structlog.get_logger(__name__)

_CHUNK = 500  # ids per IN (...) list: well under SQLite's bound-parameter limit
_LISTED = 1000  # ids named in the purge's audit entry per kind; the counts are always exact
_CONCERNS = sorted(status.value for status in OPEN_STATUSES)


@dataclass(frozen=True)
class Cutoffs:
    sessions_without_findings: datetime
    findings: datetime
    closed_cases: datetime
    consents: datetime
    audit: datetime

    @classmethod
    def at(cls, now: datetime, retention: RetentionSettings) -> Cutoffs:
        return cls(
            sessions_without_findings=now
            - timedelta(days=retention.sessions_without_findings_days),
            findings=now - timedelta(days=retention.findings_days),
            closed_cases=now - timedelta(days=retention.closed_cases_days),
            consents=now - timedelta(days=retention.consents_after_withdrawal_days),
            audit=now - timedelta(days=retention.audit_days),
        )


@dataclass
class PurgeResult:
    """What a purge removed (or, with ``dry_run``, would remove)."""

    cutoffs: Cutoffs
    dry_run: bool
    sessions_without_findings: list[str] = field(default_factory=list)
    sessions_with_findings: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    consents: list[str] = field(default_factory=list)
    registrations_unlinked: list[str] = field(default_factory=list)
    audit_entries: int = 0
    audit_seq_range: tuple[int, int] | None = None
    audit_seq: int | None = None  # the purge's own entry

    def counts(self) -> dict[str, int]:
        return {
            "sessions_without_findings": len(self.sessions_without_findings),
            "sessions_with_findings": len(self.sessions_with_findings),
            "findings": len(self.findings),
            "consents": len(self.consents),
            "registrations_unlinked": len(self.registrations_unlinked),
            "audit_entries": self.audit_entries,
        }


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _concern_sessions(session: Session) -> set[str]:
    """Sessions with a finding that is, or ever was, fail, warn or error."""
    now_open = select(FindingRow.session_id).where(FindingRow.status.in_(_CONCERNS))
    once_open = (
        select(FindingRow.session_id)
        .join(FindingEventRow, FindingEventRow.finding_key == FindingRow.key)
        .where(FindingEventRow.to_status.in_(_CONCERNS))
    )
    return set(session.scalars(now_open.union(once_open)))


def _sessions_held_by_cases(session: Session, cut: Cutoffs) -> set[str]:
    """Sessions whose case is open, or closed more recently than the closed-case cut-off."""
    from remote_guard.cases.models import CaseRow

    return set(
        session.scalars(
            select(CaseRow.session_id).where(
                CaseRow.closed_at.is_(None) | (CaseRow.closed_at >= cut.closed_cases)
            )
        )
    )


def plan(session: Session, retention: RetentionSettings, *, now: datetime) -> PurgeResult:
    """What is due for removal at ``now``; nothing is changed."""
    cut = Cutoffs.at(now, retention)
    result = PurgeResult(cutoffs=cut, dry_run=True)
    concerns = _concern_sessions(session)
    latest_change = dict(
        session.execute(
            select(FindingRow.session_id, func.max(FindingRow.last_changed_at)).group_by(
                FindingRow.session_id
            )
        ).all()
    )
    stale = session.execute(
        select(SessionRow.id, SessionRow.last_collected_at)
        .where(SessionRow.last_collected_at < max(cut.sessions_without_findings, cut.findings))
        .order_by(SessionRow.id)
    ).all()
    held = _sessions_held_by_cases(session, cut)
    for session_id, last_read in stale:
        if session_id in held:
            # A case keeps its session, findings and notes: while it is open, and until it has
            # been closed for closed_cases_days (a safeguarding record outlives the findings).
            continue
        if session_id not in concerns:
            if last_read < cut.sessions_without_findings:
                result.sessions_without_findings.append(session_id)
        elif last_read < cut.findings and (
            latest_change.get(session_id) is None or latest_change[session_id] < cut.findings
        ):
            result.sessions_with_findings.append(session_id)
    gone = result.sessions_without_findings + result.sessions_with_findings
    for chunk in _chunks(gone):
        result.findings.extend(
            session.scalars(
                select(FindingRow.key)
                .where(FindingRow.session_id.in_(chunk))
                .order_by(FindingRow.key)
            )
        )
    # Findings whose session row is gone (it never had one, or was removed by hand).
    result.findings.extend(
        session.scalars(
            select(FindingRow.key)
            .where(
                FindingRow.session_id.not_in(select(SessionRow.id)),
                FindingRow.last_changed_at < cut.findings,
            )
            .order_by(FindingRow.key)
        )
    )
    ended = func.coalesce(ConsentRow.withdrawn_at, ConsentRow.expires_at)
    result.consents = list(
        session.scalars(
            select(ConsentRow.id)
            .where(
                (ConsentRow.withdrawn_at < cut.consents)
                | ((ConsentRow.withdrawn_at.is_(None)) & (ConsentRow.expires_at < cut.consents))
            )
            .order_by(ended, ConsentRow.id)
        )
    )
    for chunk in _chunks(result.consents):
        result.registrations_unlinked.extend(
            session.scalars(
                select(RegistrationRow.id)
                .where(RegistrationRow.consent_id.in_(chunk))
                .order_by(RegistrationRow.id)
            )
        )
    due_audit = session.execute(
        select(func.count(), func.min(AuditEntryRow.seq), func.max(AuditEntryRow.seq)).where(
            AuditEntryRow.at < cut.audit, AuditEntryRow.payload.is_not(None)
        )
    ).one()
    result.audit_entries = int(due_audit[0])
    if result.audit_entries:
        result.audit_seq_range = (int(due_audit[1]), int(due_audit[2]))
    return result


def _remove(session: Session, result: PurgeResult) -> None:
    for chunk in _chunks(result.findings):
        session.execute(delete(FindingEventRow).where(FindingEventRow.finding_key.in_(chunk)))
        session.execute(delete(FindingRow).where(FindingRow.key.in_(chunk)))
    sessions = result.sessions_without_findings + result.sessions_with_findings
    for chunk in _chunks(sessions):
        session.execute(delete(SnapshotRow).where(SnapshotRow.session_id.in_(chunk)))
        session.execute(delete(SessionRow).where(SessionRow.id.in_(chunk)))
    for chunk in _chunks(result.registrations_unlinked):
        session.execute(
            update(RegistrationRow).where(RegistrationRow.id.in_(chunk)).values(consent_id=None)
        )
    for chunk in _chunks(result.consents):
        session.execute(delete(ConsentRow).where(ConsentRow.id.in_(chunk)))
    if result.audit_entries:
        session.execute(
            update(AuditEntryRow)
            .where(AuditEntryRow.at < result.cutoffs.audit, AuditEntryRow.payload.is_not(None))
            .values(payload=None, salt=None)
        )


def _listed(ids: list[str]) -> dict[str, Any]:
    return {"count": len(ids), "ids": ids[:_LISTED]}


def purge(
    db: sessionmaker[Session],
    retention: RetentionSettings,
    *,
    now: datetime,
    dry_run: bool = False,
) -> PurgeResult:
    """Remove everything due at ``now`` in one transaction, audited; with ``dry_run`` only say
    what is due. After a purge of audit content the JSON-lines file is rewritten from the table.

    Raises:
        remote_guard.audit.AuditError: the audit trail cannot be written; nothing is removed.
        sqlalchemy.exc.SQLAlchemyError: the database refused; nothing is removed.
    """
    if dry_run:
        with db() as session:
            return plan(session, retention, now=now)
    with transaction(db) as session:
        result = plan(session, retention, now=now)
        result.dry_run = False
        _remove(session, result)
        entry = audit.record(
            session,
            PURGE_ACTION,
            object_type="retention",
            # Kept when this entry's own content is purged: verify checks blanked entries by it.
            object_id=utc_text(result.cutoffs.audit),
            after={
                "sessions_without_findings": _listed(result.sessions_without_findings),
                "sessions_with_findings": _listed(result.sessions_with_findings),
                "findings": _listed(result.findings),
                "consents": _listed(result.consents),
                "registrations_unlinked": _listed(result.registrations_unlinked),
                "audit_entries": {
                    "count": result.audit_entries,
                    "seq_range": result.audit_seq_range,
                },
            },
            detail={"cutoffs": {k: utc_text(v) for k, v in asdict(result.cutoffs).items()}},
        )
        result.audit_seq = entry.seq
    engine = _engine(db)
    if result.audit_entries:
        audit.rewrite_file(engine)
    log.info("retention.purged", **result.counts(), audit_seq=result.audit_seq)
    audit.log_head(engine)
    return result


def _engine(db: sessionmaker[Session]) -> Engine:
    bind = db.kw["bind"]
    if not isinstance(bind, Engine):
        raise TypeError("the session factory must be bound to an engine")
    return bind
