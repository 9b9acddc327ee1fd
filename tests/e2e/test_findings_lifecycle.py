"""Findings over time, through the real client against the fake tenant: a pre-session finding
resolved by a consent registered later, exemptions, repeated breaches, and the report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from remote_guard.consent.registers import ApprovalStatus, Consent, Registration
from remote_guard.consent.service import save_consent, save_registration
from remote_guard.exemptions.exemption import Exemption, ExemptionScope
from remote_guard.exemptions.service import revoke_exemption, save_exemption
from remote_guard.findings.models import FindingEventRow, FindingRow
from remote_guard.poll.service import run_poll
from remote_guard.report.compliance import build_report, render
from remote_guard.rules.base import Finding
from remote_guard.store.db import transaction
from tests.e2e.conftest import Running, school, start

pytestmark = [pytest.mark.e2e, pytest.mark.database]

ONE_TO_ONE = "one_to_one_without_consent"


def _upcoming_one_to_one() -> list[dict[str, Any]]:
    return [
        {
            "key": "reading",
            "subject": "Reading with Pupil 1",
            "organizer": "t.jones",
            "start": "2026-11-19T10:00:00Z",
            "end": "2026-11-19T10:20:00Z",
            "invitees": ["p1"],
            "settings": {"allow_meeting_chat": "disabled"},
        }
    ]


@pytest.fixture
def upcoming(tmp_path: Path) -> Iterator[Running]:
    yield from start(school(meetings=_upcoming_one_to_one(), expect=[]), tmp_path)


def _rows(running: Running, rule: str) -> list[FindingRow]:
    with running.poller.db() as session:
        return list(session.scalars(select(FindingRow).where(FindingRow.rule_id == rule)))


def _events(running: Running, key: str) -> list[tuple[str | None, str, str]]:
    with running.poller.db() as session:
        rows = session.scalars(
            select(FindingEventRow)
            .where(FindingEventRow.finding_key == key)
            .order_by(FindingEventRow.id)
        )
        return [(r.from_status, r.to_status, r.reason) for r in rows]


def test_consent_registered_later_resolves_the_pre_session_finding(upcoming: Running) -> None:
    """Before the session: fail. The teacher registers it with consent and SLT approve it: the
    next poll turns the same finding to pass, and the change is recorded."""
    run_poll(upcoming.poller)
    (row,) = _rows(upcoming, ONE_TO_ONE)
    assert (row.status, row.phase) == ("fail", "upcoming")
    scenario, now = upcoming.scenario, upcoming.poller.clock()
    with transaction(upcoming.poller.db) as session:
        save_consent(
            session,
            consent=Consent(
                id="c1",
                pupil_id=scenario.person_id("p1"),
                granted_by="Mrs Parent",
                relationship="mother",
                granted_at=now - timedelta(hours=1),
            ),
            recorded_by=scenario.person_id("t.jones"),
            now=now,
        )
        save_registration(
            session,
            registration=Registration(
                id="r1",
                staff_id=scenario.person_id("t.jones"),
                pupil_id=scenario.person_id("p1"),
                activity="reading",
                join_url=upcoming.server.join_url("reading"),
                status=ApprovalStatus.APPROVED,
                approved_by=scenario.person_id("h.head"),
                approved_at=now,
            ),
            consent_id="c1",
            recorded_by=scenario.person_id("t.jones"),
            now=now,
        )
    run_poll(upcoming.poller)
    (after,) = _rows(upcoming, ONE_TO_ONE)
    assert after.key == row.key
    assert after.status == "pass"
    assert [e[:2] for e in _events(upcoming, row.key)] == [(None, "fail"), ("fail", "pass")]


def test_exempted_finding_stays_visible_and_revocation_reopens_it(upcoming: Running) -> None:
    """An exemption marks the finding, keeps its status and records the change; revoking it
    records that too. Nothing is deleted."""
    scenario = upcoming.scenario
    now = upcoming.poller.clock()
    exemption = Exemption(
        id="x1",
        rule_id=ONE_TO_ONE,
        scope=ExemptionScope.PAIR,
        pupil_id=scenario.person_id("p1"),
        staff_id=scenario.person_id("t.jones"),
        reason="Speech and language support agreed with parents and SENCo",
        granted_by="Ms Head",
        granted_at=now - timedelta(minutes=5),
        expires_at=now + timedelta(days=30),
    )
    with transaction(upcoming.poller.db) as session:
        save_exemption(session, exemption)
    run_poll(upcoming.poller)
    (row,) = _rows(upcoming, ONE_TO_ONE)
    assert row.status == "fail"
    assert row.exemption is not None
    assert row.exemption["id"] == "x1"
    with transaction(upcoming.poller.db) as session:
        revoke_exemption(session, "x1", by="Ms Head", now=upcoming.poller.clock())
    run_poll(upcoming.poller)
    (reopened,) = _rows(upcoming, ONE_TO_ONE)
    assert reopened.status == "fail"
    assert reopened.exemption is None
    reasons = [reason for _, _, reason in _events(upcoming, row.key)]
    assert reasons[-1] == "exemption no longer applies (expired or revoked)"


def _chatty_lesson(key: str, day: str) -> dict[str, Any]:
    return {
        "key": key,
        "subject": f"Year 4 reading {day}",
        "organizer": "t.jones",
        "start": f"2026-11-{day}T10:00:00Z",
        "end": f"2026-11-{day}T10:30:00Z",
        "invitees": ["p1", "p2", "p3"],
        "attendance": [
            {"who": w, "intervals": [[f"2026-11-{day}T10:00:00Z", f"2026-11-{day}T10:30:00Z"]]}
            for w in ("t.jones", "p1", "p2", "p3")
        ],
        "chat": [{"at": f"2026-11-{day}T10:06:00Z", "sender": "p2", "text": "hi"}],
    }


def test_repeated_chat_by_one_pupil_is_raised_in_the_third_session(tmp_path: Path) -> None:
    """Three lessons in a fortnight with pupil chat: one repeated-breach finding, in the third."""
    meetings = [_chatty_lesson(k, d) for k, d in (("a", "04"), ("b", "11"), ("c", "18"))]
    scenario = school(meetings=meetings, expect=[])
    for running in start(scenario, tmp_path):
        run_poll(running.poller)
        rows = [r for r in _rows(running, "repeated_breaches") if r.status == "fail"]
        assert [r.subject_key for r in rows] == [scenario.person_id("p2")]
        assert rows[0].session_id == next(
            sid for sid, key in _session_keys(running).items() if key == "c"
        )
        # The report walks the profile: the sanctions clause is there with its count.
        with running.poller.db() as session:
            report = build_report(
                session,
                policy=running.poller.policy,
                registry=running.poller.registry,
                period_from=running.poller.clock().date() - timedelta(days=30),
                period_to=running.poller.clock().date(),
                timezone="Europe/London",
                now=running.poller.clock(),
            )
        lines = {line.clause_id: line for line in report.profiles[0].clauses}
        assert set(lines) == {c.id for c in running.poller.policy.profile.clauses}
        assert lines["BSF-A.sanction-remote.3"].counts["fail"] == 1
        html = render(report, "html")
        assert "BSF-A.sanction-remote.3" in html
        assert "<script" not in html


def _session_keys(running: Running) -> dict[str, str]:
    from remote_guard.fakegraph.harness import key_maps

    sessions, _ = key_maps(running.scenario, running.server)
    return sessions


def test_a_registration_made_during_a_cycle_is_not_undone_by_it(upcoming: Running) -> None:
    """The poll loads the registers when it starts; a registration saved while it runs (here,
    the moment the finding appears) is still honoured by the end of the same cycle."""
    scenario = upcoming.scenario

    def register_now(finding: Finding, previous: str | None) -> None:
        now = upcoming.poller.clock()
        with transaction(upcoming.poller.db) as session:
            save_consent(
                session,
                consent=Consent(
                    id="c-mid",
                    pupil_id=scenario.person_id("p1"),
                    granted_by="Mrs Parent",
                    relationship="mother",
                    granted_at=now - timedelta(days=1),
                ),
                recorded_by=None,
                now=now,
            )
            save_registration(
                session,
                registration=Registration(
                    id="r-mid",
                    staff_id=scenario.person_id("t.jones"),
                    pupil_id=scenario.person_id("p1"),
                    activity="reading",
                    join_url=upcoming.server.join_url("reading"),
                    status=ApprovalStatus.APPROVED,
                    approved_by=scenario.person_id("h.head"),
                    approved_at=now,
                ),
                consent_id="c-mid",
                recorded_by=None,
                now=now,
            )

    upcoming.poller.on_finding = register_now
    run_poll(upcoming.poller)
    (row,) = _rows(upcoming, ONE_TO_ONE)
    assert row.status == "pass"
