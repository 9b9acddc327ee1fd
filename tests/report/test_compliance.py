"""The compliance report walks the profile: every clause, counted by local session date."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.collect.models import SessionRow
from remote_guard.findings.service import record_findings
from remote_guard.policy.profile import Policy, load_policy
from remote_guard.report.compliance import ComplianceReport, build_report, render
from remote_guard.rules.base import Finding, Severity, Status
from remote_guard.rules.registry import load_rules
from remote_guard.store.db import make_engine, migrate, session_factory, transaction

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)


def _finding(session_id: str, status: Status, clause: str, rule: str, subject: str) -> Finding:
    return Finding(
        rule_id=rule,
        clause_id=clause,
        clause_version=1,
        profile_id="bramham-shadwell",
        status=status,
        severity=Severity.LOW,
        session_id=session_id,
        subject_key=subject,
        phase="ended",
        observed="x",
        message=f"{rule} on {session_id} =cmd()",
    )


@pytest.fixture
def db(database_url: str) -> sessionmaker[Session]:
    engine = make_engine(database_url)
    migrate(engine)
    factory = session_factory(engine)
    sessions = {
        # 23:30 UTC on 31 Oct is still 31 Oct in London (GMT); 23:30 UTC on 30 Sep is 1 Oct (BST).
        "inside": datetime(2026, 11, 10, 10, 0, tzinfo=UTC),
        "edge_bst": datetime(2026, 9, 30, 23, 30, tzinfo=UTC),
        "outside": datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
    }
    with transaction(factory) as session:
        for sid, start in sessions.items():
            session.add(
                SessionRow(
                    id=sid,
                    kind="meeting",
                    subject=f"Lesson {sid}",
                    scheduled_start=start,
                    first_seen_at=NOW,
                    last_collected_at=NOW,
                )
            )
        session.flush()
        chat = ("BSF-A.pupil-remote.7", "pupil_meeting_chat")
        record_findings(
            session,
            session_id="inside",
            findings=[
                _finding("inside", Status.WARN, *chat, "p1"),
                _finding("inside", Status.PASS, *chat, ""),
            ],
            evaluated_rules={"pupil_meeting_chat"},
            now=NOW,
            poll_run_id=None,
        )
        for sid in ("edge_bst", "outside"):
            record_findings(
                session,
                session_id=sid,
                findings=[_finding(sid, Status.WARN, *chat, "p2")],
                evaluated_rules={"pupil_meeting_chat"},
                now=NOW,
                poll_run_id=None,
            )
    return factory


def _report(
    db: sessionmaker[Session], start: date, end: date, packs: list[str] | None = None
) -> tuple[ComplianceReport, Policy]:
    registry = load_rules()
    policy = load_policy("bramham-shadwell", packs or [], [], registry)
    with db() as session:
        return build_report(
            session,
            policy=policy,
            registry=registry,
            period_from=start,
            period_to=end,
            timezone="Europe/London",
            now=NOW,
        ), policy


def test_every_clause_appears_and_counts_follow_local_dates(db: sessionmaker[Session]) -> None:
    """1 Oct to 18 Nov: the BST-edge session (1 Oct local) and the inside one count; 30 Nov not."""
    report, policy = _report(db, date(2026, 10, 1), date(2026, 11, 18))
    (section,) = report.profiles
    assert [line.clause_id for line in section.clauses] == [c.id for c in policy.profile.clauses]
    chat = next(line for line in section.clauses if line.clause_id == "BSF-A.pupil-remote.7")
    assert chat.counts["warn"] == 2
    assert chat.counts["pass"] == 1
    assert chat.verdict == "concerns"
    manual = [line for line in section.clauses if line.check == "manual"]
    assert manual
    assert all(line.manual_reason and line.verdict == "manual" for line in manual)
    assert report.sessions == 2
    covered = next(line for line in section.clauses if line.clause_id == "BSF-A.staff-remote.3")
    assert covered.verdict == "see BSF-A.staff-remote.4"


def test_formats(db: sessionmaker[Session]) -> None:
    """JSON parses, CSV has one row per clause with formulas neutralised, HTML escapes text."""
    report, policy = _report(db, date(2026, 11, 1), date(2026, 11, 30), ["national-guidance"])
    data = json.loads(render(report, "json"))
    assert [p["id"] for p in data["profiles"]] == ["bramham-shadwell", "national-guidance"]
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert len(rows) == sum(len(p.clauses) for p in policy.profiles)
    html = render(report, "html")
    assert "=cmd()" in html  # the message is shown, as text
    assert "<h1>" in html
    assert 'lang="en-GB"' in html
    with pytest.raises(ValueError, match="unknown format"):
        render(report, "pdf")


def test_report_command_writes_html(db: sessionmaker[Session], tmp_path: Path) -> None:
    """`remote-guard report` against a database, as an IT technician would run it."""
    url = str(db.kw["bind"].url)
    out = tmp_path / "report.html"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "remote_guard",
            "report",
            "--database",
            url,
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "BSF-A.staff-remote.4" in out.read_text(encoding="utf-8")
    backwards = subprocess.run(
        [
            sys.executable,
            "-m",
            "remote_guard",
            "report",
            "--database",
            url,
            "--from",
            "2026-11-30",
            "--to",
            "2026-11-01",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert backwards.returncode == 2
    assert "is before --from" in backwards.stderr
