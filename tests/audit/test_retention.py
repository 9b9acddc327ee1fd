"""The purge removes exactly what is due, is audited, and leaves the audit trail verifiable."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from remote_guard import audit
from remote_guard.audit.models import AuditEntryRow
from remote_guard.audit.verify import PURGE_ACTION, verify
from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.consent.models import ConsentRow, RegistrationRow
from remote_guard.consent.registers import ApprovalStatus, Consent, Registration
from remote_guard.consent.service import save_consent, save_registration
from remote_guard.findings.models import FindingEventRow, FindingRow
from remote_guard.privacy.retention import purge
from remote_guard.settings import RetentionSettings
from remote_guard.store.db import transaction
from tests.audit.conftest import Store

RETENTION = RetentionSettings()  # 120 / 365 / 2190 / 365 / 2190 days
NOW = datetime.now(UTC).replace(microsecond=0)


def _days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def _session(
    store: Store,
    session_id: str,
    *,
    last_read: datetime,
    findings: list[tuple[str, datetime, list[str]]],
) -> None:
    """A session read last at ``last_read`` with its snapshot and ``findings``: (current
    status, last changed, statuses it passed through)."""
    with transaction(store.db) as session:
        session.add(
            SessionRow(
                id=session_id,
                kind="meeting",
                subject="Year 4 reading",
                organizer_id="teacher-1",
                first_seen_at=last_read,
                last_collected_at=last_read,
                final_collected_at=last_read,
            )
        )
        session.flush()
        session.add(
            SnapshotRow(
                session_id=session_id, collected_at=last_read, digest="d" * 64, data={"people": {}}
            )
        )
        for number, (status, changed, history) in enumerate(findings):
            key = f"{session_id}-f{number}"
            session.add(
                FindingRow(
                    key=key,
                    profile_id="bramham-shadwell",
                    rule_id="pupil_meeting_chat",
                    clause_id="BS-CHAT-1",
                    clause_version=1,
                    session_id=session_id,
                    subject_key="pupil-1",
                    status=status,
                    severity="high",
                    phase="ended",
                    observed="",
                    message="",
                    evidence={},
                    sources=[],
                    first_seen_at=changed,
                    last_seen_at=changed,
                    last_changed_at=changed,
                )
            )
            session.flush()
            for previous, to in zip([None, *history], [*history, status], strict=True):
                session.add(
                    FindingEventRow(
                        finding_key=key, at=changed, from_status=previous, to_status=to, reason=""
                    )
                )


def _consent(store: Store, consent_id: str, **dates: datetime) -> None:
    with transaction(store.db) as session:
        save_consent(
            session,
            consent=Consent(
                id=consent_id,
                pupil_id="pupil-1",
                granted_by="Mrs Parent",
                relationship="mother",
                granted_at=_days(800),
                **dates,
            ),
            recorded_by="teacher-1",
            now=_days(800),
        )


def _old_entry(store: Store, days: float) -> None:
    with transaction(store.db) as session:
        audit.record(
            session,
            "case.viewed",
            object_type="case",
            object_id=f"case-{days}",
            detail={"pupil_id": "pupil-1"},
            at=_days(days),
        )


def _build(store: Store) -> None:
    _session(store, "clean-old", last_read=_days(121), findings=[("pass", _days(121), [])])
    _session(store, "clean-new", last_read=_days(119), findings=[("pass", _days(119), [])])
    _session(store, "concern-old", last_read=_days(366), findings=[("fail", _days(366), [])])
    _session(
        store,
        "concern-changed-recently",
        last_read=_days(400),
        findings=[("fail", _days(400), []), ("warn", _days(300), [])],
    )
    _session(store, "concern-mid", last_read=_days(200), findings=[("fail", _days(200), [])])
    # Once a failure, now passing: still a session with findings, kept as such.
    _session(store, "once-concern", last_read=_days(200), findings=[("pass", _days(200), ["fail"])])
    with transaction(store.db) as session:
        session.add(
            FindingRow(
                key="orphan-old",
                profile_id="bramham-shadwell",
                rule_id="pupil_meeting_chat",
                clause_id="BS-CHAT-1",
                clause_version=1,
                session_id="gone",
                subject_key="",
                status="fail",
                severity="high",
                phase="ended",
                observed="",
                message="",
                evidence={},
                sources=[],
                first_seen_at=_days(400),
                last_seen_at=_days(400),
                last_changed_at=_days(400),
            )
        )
    _consent(store, "withdrawn-old", withdrawn_at=_days(366))
    _consent(store, "withdrawn-recent", withdrawn_at=_days(100))
    _consent(store, "expired-old", expires_at=_days(400))
    _consent(store, "active")
    with transaction(store.db) as session:
        save_registration(
            session,
            registration=Registration(
                id="registration-1",
                staff_id="teacher-1",
                pupil_id="pupil-1",
                activity="speech and language",
                status=ApprovalStatus.APPROVED,
            ),
            consent_id="withdrawn-old",
            recorded_by="teacher-1",
            now=_days(500),
        )
    _old_entry(store, 2191)
    _old_entry(store, 2190.5)
    _old_entry(store, 2189)


def _ids(store: Store, column: object) -> set[str]:
    with store.db() as session:
        return set(session.scalars(select(column)))  # type: ignore[call-overload]


def test_purge_removes_exactly_what_is_due(store: Store) -> None:
    """Sessions, findings, consents and old audit content past their retention go; everything
    else stays; a dry run names the same and changes nothing; the trail still verifies."""
    _build(store)
    entries_before = len(_ids(store, AuditEntryRow.seq))

    planned = purge(store.db, RETENTION, now=NOW, dry_run=True)
    assert len(_ids(store, AuditEntryRow.seq)) == entries_before
    result = purge(store.db, RETENTION, now=NOW)

    for outcome in (planned, result):
        assert outcome.sessions_without_findings == ["clean-old"]
        assert outcome.sessions_with_findings == ["concern-old"]
        assert sorted(outcome.findings) == ["clean-old-f0", "concern-old-f0", "orphan-old"]
        assert outcome.consents == ["expired-old", "withdrawn-old"]
        assert outcome.registrations_unlinked == ["registration-1"]
        assert outcome.audit_entries == 2
    assert _ids(store, SessionRow.id) == {
        "clean-new",
        "concern-changed-recently",
        "concern-mid",
        "once-concern",
    }
    assert _ids(store, SnapshotRow.session_id) == _ids(store, SessionRow.id)
    assert _ids(store, FindingRow.key) == {
        "clean-new-f0",
        "concern-changed-recently-f0",
        "concern-changed-recently-f1",
        "concern-mid-f0",
        "once-concern-f0",
    }
    assert _ids(store, FindingEventRow.finding_key) == _ids(store, FindingRow.key)
    assert _ids(store, ConsentRow.id) == {"withdrawn-recent", "active"}
    with store.db() as session:
        registration = session.get(RegistrationRow, "registration-1")
        assert registration is not None
        assert registration.consent_id is None
        blanked = {
            e.object_id
            for e in session.scalars(select(AuditEntryRow).where(AuditEntryRow.payload.is_(None)))
        }
        purge_entry = session.scalars(
            select(AuditEntryRow).where(AuditEntryRow.action == PURGE_ACTION)
        ).one()
    assert blanked == {"case-2191", "case-2190.5"}
    assert purge_entry.seq == result.audit_seq == entries_before + 1
    assert purge_entry.object_id == f"{_days(2190):%Y-%m-%dT%H:%M:%S}.000000Z"
    content = json.loads(purge_entry.payload or "{}")["after"]
    assert content["consents"] == {"count": 2, "ids": ["expired-old", "withdrawn-old"]}
    assert content["audit_entries"]["count"] == 2

    report = verify(store.engine, store.config)
    assert report.ok, [str(p) for p in report.problems]
    assert report.purged == 2
    assert report.file_lines == report.entries
    assert '"object_id":"case-2191","object_type":"case","payload":null' in (
        store.file.read_text(encoding="utf-8")
    )


def test_purge_of_purge_entries_keeps_the_trail_verifiable(store: Store) -> None:
    """Years later the purge's own entry loses its content too; its cut-off, kept in its
    header, still accounts for every blanked entry, and a second purge with nothing due is a
    no-op that is audited all the same."""
    _build(store)
    purge(store.db, RETENTION, now=NOW)
    again = purge(store.db, RETENTION, now=NOW)
    assert again.counts() == dict.fromkeys(again.counts(), 0)

    later = purge(store.db, RETENTION, now=NOW + timedelta(days=2200))

    assert later.audit_entries > 0
    report = verify(store.engine, store.config)
    assert report.ok, [str(p) for p in report.problems]
    with store.db() as session:
        purges = list(
            session.scalars(select(AuditEntryRow).where(AuditEntryRow.action == PURGE_ACTION))
        )
    assert [p.payload is None for p in purges] == [True, True, False]


def test_nothing_is_due_for_recent_records(store: Store) -> None:
    """A store whose records are all within their retention loses nothing."""
    _session(store, "today", last_read=NOW, findings=[("fail", NOW, [])])
    _consent(store, "active")

    result = purge(store.db, RETENTION, now=NOW)

    assert result.counts() == dict.fromkeys(result.counts(), 0)
    assert _ids(store, SessionRow.id) == {"today"}


@pytest.mark.parametrize(
    ("key", "value"),
    [("sessions_without_findings_days", 29), ("findings_days", 119), ("audit_days", 364)],
)
def test_retention_shorter_than_the_service_needs_is_refused(key: str, value: int) -> None:
    """Periods shorter than the poller's own look-back or the repeated-breach window, or an
    audit content life under a year, are refused."""
    with pytest.raises(ValueError, match=key):
        RetentionSettings.model_validate({key: value})


def test_a_case_keeps_its_session_until_closed_long_enough(store: Store) -> None:
    """Findings past their retention stay while their session's case is open, and until the
    case has been closed for closed_cases_days; then they go like any other."""
    from remote_guard.cases.models import CaseRow

    for name in ("open-case", "closed-recently", "closed-long-ago"):
        _session(store, name, last_read=_days(400), findings=[("fail", _days(400), ["fail"])])
    with transaction(store.db) as session:
        for name, closed in (
            ("open-case", None),
            ("closed-recently", _days(30)),
            ("closed-long-ago", _days(2200)),
        ):
            session.add(
                CaseRow(
                    session_id=name,
                    status="closed" if closed else "in_review",
                    resolution="no_concern" if closed else None,
                    opened_at=_days(400),
                    updated_at=closed or _days(399),
                    closed_at=closed,
                )
            )
    result = purge(store.db, RETENTION, now=NOW)
    assert result.sessions_with_findings == ["closed-long-ago"]
    assert _ids(store, SessionRow.id) >= {"open-case", "closed-recently"}
