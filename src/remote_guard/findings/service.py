"""Storing findings idempotently and tracking how their status changes over time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from remote_guard import audit
from remote_guard.exemptions.exemption import ExemptionRef
from remote_guard.findings.models import FindingEventRow, FindingRow
from remote_guard.rules.base import Finding, Status


@dataclass
class RecordResult:
    created: list[Finding]
    changed: list[tuple[str, Finding]]  # (previous status, finding)
    unchanged: int
    retired: int


def record_findings(
    session: Session,
    *,
    session_id: str,
    findings: Sequence[Finding],
    evaluated_rules: Iterable[str],
    now: datetime,
    poll_run_id: str | None,
) -> RecordResult:
    """Upsert the findings of one evaluation of one session (one stage of rules).

    The same rule, clause and object always map to the same row, so re-polling never duplicates.
    A change of status is recorded as an event. A finding an evaluation no longer produces is
    retired (``not_applicable``) only if its rule ran cleanly this time: after an error the old
    finding is kept, so an outage never erases what was found.
    """
    existing = {
        row.key: row
        for row in session.scalars(select(FindingRow).where(FindingRow.session_id == session_id))
    }
    result = RecordResult(created=[], changed=[], unchanged=0, retired=0)
    produced: set[str] = set()
    errored_rules = {f.rule_id for f in findings if f.status is Status.ERROR}
    # Events reference findings by key; they are added after the findings are flushed.
    events: list[FindingEventRow] = []

    def event(key: str, from_status: str | None, to_status: str, reason: str) -> FindingEventRow:
        return FindingEventRow(
            finding_key=key,
            at=now,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            poll_run_id=poll_run_id,
        )

    for finding in findings:
        key = finding.key
        if key in produced:
            continue
        produced.add(key)
        row = existing.get(key)
        if row is None:
            session.add(_new_row(finding, now=now, poll_run_id=poll_run_id))
            events.append(event(key, None, finding.status.value, "first evaluated"))
            result.created.append(finding)
            continue
        row.last_seen_at = now
        row.poll_run_id = poll_run_id
        exemption = finding.exemption.model_dump(mode="json") if finding.exemption else None
        if row.status != finding.status.value:
            events.append(event(key, row.status, finding.status.value, finding.observed))
            result.changed.append((row.status, finding))
            row.last_changed_at = now
        elif (row.exemption or {}).get("id") != (exemption or {}).get("id"):
            reason = (
                f"exempted by {finding.exemption.granted_by} until "
                f"{finding.exemption.expires_at:%Y-%m-%d}: {finding.exemption.reason}"
                if finding.exemption
                else "exemption no longer applies (expired or revoked)"
            )
            events.append(event(key, row.status, finding.status.value, reason))
            result.changed.append((row.status, finding))
            row.last_changed_at = now
        else:
            result.unchanged += 1
        _copy(finding, row)
    evaluated = set(evaluated_rules) - errored_rules
    for key, row in existing.items():
        if key in produced or row.rule_id not in evaluated:
            continue
        if row.status == Status.NOT_APPLICABLE.value:
            continue
        events.append(
            event(
                key,
                row.status,
                Status.NOT_APPLICABLE.value,
                "no longer produced by the latest evaluation",
            )
        )
        row.status = Status.NOT_APPLICABLE.value
        row.last_changed_at = now
        row.last_seen_at = now
        result.retired += 1
    session.flush()
    session.add_all(events)
    audit.record_finding_events(session, events)
    session.flush()
    return result


def _new_row(finding: Finding, *, now: datetime, poll_run_id: str | None) -> FindingRow:
    row = FindingRow(
        key=finding.key,
        first_seen_at=now,
        last_seen_at=now,
        last_changed_at=now,
        poll_run_id=poll_run_id,
    )
    _copy(finding, row)
    return row


def _copy(finding: Finding, row: FindingRow) -> None:
    row.profile_id = finding.profile_id
    row.rule_id = finding.rule_id
    row.clause_id = finding.clause_id
    row.clause_version = finding.clause_version
    row.session_id = finding.session_id
    row.subject_key = finding.subject_key
    row.status = finding.status.value
    row.severity = finding.severity.value
    row.phase = finding.phase
    row.observed = finding.observed
    row.message = finding.message
    row.next_step = finding.next_step
    row.evidence = finding.evidence
    row.sources = list(finding.sources)
    row.exemption = finding.exemption.model_dump(mode="json") if finding.exemption else None


def finding_from_row(row: FindingRow) -> Finding:
    return Finding(
        rule_id=row.rule_id,
        clause_id=row.clause_id,
        clause_version=row.clause_version,
        profile_id=row.profile_id,
        status=Status(row.status),
        severity=row.severity,
        session_id=row.session_id,
        subject_key=row.subject_key,
        phase=row.phase,
        observed=row.observed,
        message=row.message,
        next_step=row.next_step,
        evidence=row.evidence,
        sources=row.sources,
        exemption=ExemptionRef.model_validate(row.exemption) if row.exemption else None,
    )


def list_findings(
    session: Session, *, statuses: Iterable[Status] | None = None
) -> list[FindingRow]:
    query = select(FindingRow).order_by(FindingRow.first_seen_at, FindingRow.key)
    if statuses is not None:
        query = query.where(FindingRow.status.in_([s.value for s in statuses]))
    return list(session.scalars(query))
