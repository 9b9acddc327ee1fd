"""What gets audited: poll runs, findings, registers, exemptions, start-up; and who did it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from remote_guard import audit
from remote_guard.audit import trail
from remote_guard.audit.models import AuditEntryRow
from remote_guard.audit.verify import verify
from remote_guard.consent.registers import ApprovalStatus, Consent, Registration
from remote_guard.consent.service import save_approved_activity, save_consent, save_registration
from remote_guard.exemptions.exemption import Exemption, ExemptionScope
from remote_guard.exemptions.service import revoke_exemption, save_exemption
from remote_guard.findings.models import FindingRow
from remote_guard.findings.service import record_findings
from remote_guard.poll.service import run_poll
from remote_guard.rules.base import Finding, Severity, Status
from remote_guard.store.db import transaction
from tests.audit.conftest import Store
from tests.e2e.conftest import Running, school, start

pytestmark = pytest.mark.database

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)


def _entries(store_db: Any, action: str | None = None) -> list[AuditEntryRow]:
    with store_db() as session:
        query = select(AuditEntryRow).order_by(AuditEntryRow.seq)
        if action is not None:
            query = query.where(AuditEntryRow.action == action)
        return list(session.scalars(query))


def _content(entry: AuditEntryRow) -> dict[str, Any]:
    assert entry.payload is not None
    content: dict[str, Any] = json.loads(entry.payload)
    return content


def _finding(status: Status, subject: str = "pupil-1") -> Finding:
    return Finding(
        rule_id="pupil_meeting_chat",
        clause_id="BS-CHAT-1",
        clause_version=1,
        profile_id="bramham-shadwell",
        status=status,
        severity=Severity.HIGH,
        session_id="mtg_1",
        subject_key=subject,
        phase="ended",
        observed="posted 1 message",
        message="Amelia K. posted in the meeting chat of Year 4 reading.",
    )


@pytest.mark.e2e
def test_a_poll_is_audited_and_the_trail_verifies(tmp_path: Path) -> None:
    """One poll of the e2e school: start-up, the run's start and end with its counts, and one
    entry per finding created, all in one verifiable chain; a second poll that changes nothing
    adds only its start and end."""
    running: Running
    for running in start(school(), tmp_path):
        result = run_poll(running.poller)
        db = running.poller.db
        with db() as session:
            findings = {row.key: row for row in session.scalars(select(FindingRow))}

        started = _entries(db, "service.started")
        assert len(started) == 1
        assert re.fullmatch(r"[0-9a-f]{64}", _content(started[0])["after"]["config_sha256"])
        assert re.fullmatch(r"[0-9a-f]{64}", _content(started[0])["after"]["profile_sha256"])
        (finished,) = _entries(db, "poll.finished")
        after = _content(finished)["after"]
        assert after["status"] == result.status == "ok"
        assert after["counts"] == dict(result.counts)
        assert after["graph"]["requests"] == result.graph["requests"]
        assert finished.run_id == result.run_id
        created = _entries(db, "finding.created")
        assert {e.object_id for e in created} == set(findings)
        for entry in created:
            content = _content(entry)
            row = findings[entry.object_id]
            assert content["after"]["status"] == row.status
            assert content["detail"]["subject"] == row.subject_key
            assert entry.run_id == result.run_id
            # The finding's message names people; the audit entry does not carry it.
            assert row.message not in (entry.payload or "")

        count = len(_entries(db))
        run_poll(running.poller)
        later = _entries(db)[count:]
        assert [e.action for e in later] == ["poll.started", "poll.finished"]

        engine = db.kw["bind"]
        report = verify(engine)
        assert report.ok, [str(p) for p in report.problems]
        assert report.file is not None
        assert report.file_lines == report.entries == count + 2


def _record_then_fail(store: Store) -> None:
    with transaction(store.db) as session:
        record_findings(
            session,
            session_id="mtg_1",
            findings=[_finding(Status.FAIL)],
            evaluated_rules=["pupil_meeting_chat"],
            now=NOW,
            poll_run_id="run-1",
        )
        raise RuntimeError("the poll failed after evaluating")


def test_findings_and_their_entries_commit_together(store: Store) -> None:
    """A transaction that fails after recording findings leaves neither findings nor entries;
    a change of status is recorded with the status before and after."""
    with pytest.raises(RuntimeError, match="failed after evaluating"):
        _record_then_fail(store)
    with store.db() as session:
        assert session.scalars(select(FindingRow)).all() == []
    assert _entries(store.db) == []

    for status in (Status.FAIL, Status.PASS):
        with transaction(store.db) as session:
            record_findings(
                session,
                session_id="mtg_1",
                findings=[_finding(status)],
                evaluated_rules=["pupil_meeting_chat"],
                now=NOW,
                poll_run_id="run-2",
            )
    created, changed = _entries(store.db)
    assert (created.action, changed.action) == ("finding.created", "finding.changed")
    assert _content(changed)["before"] == {"status": "fail"}
    assert _content(changed)["after"] == {"status": "pass", "exemption": None}
    assert changed.run_id == "run-2"
    assert verify(store.engine, store.config).ok


def _consent(**changes: Any) -> Consent:
    values: dict[str, Any] = {
        "id": "consent-1",
        "pupil_id": "pupil-1",
        "scope": "one_to_one",
        "granted_by": "Mrs Parent",
        "relationship": "mother",
        "contact_email": "parent@family.example",
        "granted_at": NOW - timedelta(days=10),
        "method": "paper",
        "evidence_ref": "form 2026/14",
    }
    values.update(changes)
    return Consent(**values)


def test_register_changes_record_only_what_changed(store: Store) -> None:
    """A new consent records its key fields (not the parent's name or address); a withdrawal
    records only the withdrawal; saving it unchanged records nothing. Registrations and
    approved activities are recorded too."""
    with transaction(store.db) as session:
        save_consent(session, consent=_consent(), recorded_by="teacher-1", now=NOW)
    with transaction(store.db) as session:
        withdrawn = _consent(withdrawn_at=NOW)
        save_consent(session, consent=withdrawn, recorded_by="teacher-1", now=NOW)
    with transaction(store.db) as session:
        save_consent(session, consent=withdrawn, recorded_by="teacher-1", now=NOW)
    with transaction(store.db) as session:
        save_registration(
            session,
            registration=Registration(
                id="registration-1",
                staff_id="teacher-1",
                pupil_id="pupil-1",
                activity="speech and language",
                status=ApprovalStatus.APPROVED,
                approved_by="slt-1",
                approved_at=NOW,
            ),
            consent_id="consent-1",
            recorded_by="teacher-1",
            now=NOW,
        )
        save_approved_activity(session, name="speech and language", approved_by="slt-1", now=NOW)

    entries = _entries(store.db)
    assert [e.action for e in entries] == [
        "consent.created",
        "consent.changed",
        "registration.created",
        "activity.approved",
    ]
    created = _content(entries[0])["after"]
    assert created["pupil_id"] == "pupil-1"
    assert "granted_by" not in created
    assert "Mrs Parent" not in (entries[0].payload or "")
    assert "parent@family.example" not in (entries[0].payload or "")
    assert _content(entries[1]) == {
        "before": {"withdrawn_at": None},
        "after": {"withdrawn_at": "2026-11-18T16:00:00.000000Z"},
    }
    assert _content(entries[2])["after"]["approved_by"] == "slt-1"


def test_exemptions_and_the_actor_are_recorded(store: Store) -> None:
    """Granting and revoking an exemption are recorded against whoever is acting."""
    exemption = Exemption(
        id="exemption-1",
        rule_id="one_to_one_without_consent",
        scope=ExemptionScope.PAIR,
        pupil_id="pupil-1",
        staff_id="teacher-1",
        reason="Speech therapy agreed with parents",
        granted_by="J. Smith (DSL)",
        granted_at=NOW,
        expires_at=NOW + timedelta(days=30),
    )
    dsl = audit.Actor(id="dsl-1", role="dsl")
    with audit.acting_as(dsl, request_id="req-7"), transaction(store.db) as session:
        save_exemption(session, exemption)
    with audit.acting_as(dsl, request_id="req-8"), transaction(store.db) as session:
        revoke_exemption(session, "exemption-1", by="J. Smith (DSL)", now=NOW + timedelta(days=1))

    granted, revoked = _entries(store.db)
    assert (granted.action, revoked.action) == ("exemption.created", "exemption.revoked")
    assert (granted.actor_id, granted.actor_role, granted.run_id) == ("dsl-1", "dsl", "req-7")
    assert revoked.run_id == "req-8"
    assert _content(granted)["after"]["reason"] == "Speech therapy agreed with parents"
    assert _content(revoked)["after"]["revoked_by"] == "J. Smith (DSL)"
    # Outside the block the service acts for itself.
    store.write(1)
    assert _entries(store.db)[-1].actor_id == "system"


def test_head_hash_is_logged_once_a_day(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first commit of a day writes the head to the structured log; later ones do not."""
    monkeypatch.setattr(trail, "_anchored", {})
    with capture_logs() as logs:
        store.write(2)
    anchors = [line for line in logs if line["event"] == "audit.head"]
    assert len(anchors) == 1
    assert anchors[0]["seq"] == 1
    assert re.fullmatch(r"[0-9a-f]{64}", anchors[0]["hash"])
