"""The whole pipe with the real msal + requests client over HTTPS against the fake tenant."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from remote_guard.collect.models import SessionRow, SnapshotRow
from remote_guard.collect.snapshot import Missing, SessionSnapshot
from remote_guard.consent.service import load_registers
from remote_guard.findings.models import FindingRow
from remote_guard.graph.permissions import call_for
from remote_guard.poll.service import run_poll
from remote_guard.rules.engine import evaluate_snapshot
from tests.e2e.conftest import Running, school, start

pytestmark = pytest.mark.database


def _open(running: Running) -> set[tuple[str, str]]:
    keys = {running.scenario.person_id(p.key): p.key for p in running.scenario.people}
    with running.poller.db() as session:
        rows = session.scalars(
            select(FindingRow).where(FindingRow.status.in_(["fail", "warn", "error"]))
        )
        return {(row.rule_id, keys.get(row.subject_key, row.subject_key)) for row in rows}


EXPECTED = {
    ("pupil_meeting_chat", "p2"),
    ("one_to_one_without_consent", "p1"),
    ("meeting_chat_open_to_pupils", "allow_meeting_chat"),
}


def test_poll_finds_the_breaches_and_nothing_else(running: Running) -> None:
    """Pupil chat by p2 and the teacher left alone with p1 are found; the clean lesson is not."""
    result = run_poll(running.poller)
    assert result.status == "ok", result.errors
    assert _open(running) == EXPECTED


def test_token_is_acquired_once_and_reused(running: Running) -> None:
    """Many Graph calls over two polls, one token request."""
    run_poll(running.poller)
    run_poll(running.poller)
    token_requests = [r for r in running.server.requests if r.path.endswith("/oauth2/v2.0/token")]
    graph_requests = [r for r in running.server.requests if r.path.startswith("/v1.0/")]
    assert len(token_requests) == 1
    assert len(graph_requests) > 10
    assert running.poller.graph.tokens.tokens_issued == 1


def test_paged_group_members_are_read_to_the_end(running: Running) -> None:
    """The fake pages 5 at a time; all 12 pupils and 3 staff are read."""
    run_poll(running.poller)
    pages = [r for r in running.server.requests if "/transitiveMembers" in r.path]
    assert len(pages) >= 4
    assert running.poller.graph.stats.requests["/groups/{id}/transitiveMembers"] == len(pages)
    with running.poller.db() as session:
        assert session.scalar(select(func.count()).select_from(SessionRow)) == 2


def test_429_is_honoured_and_retried(running: Running) -> None:
    """A throttled calendar read waits Retry-After and the poll still completes."""
    running.server.state.inject(r"/calendarView", status=429, count=2, retry_after=0.2)
    result = run_poll(running.poller)
    assert result.status == "ok"
    statuses = [r.status for r in running.server.requests if "/calendarView" in r.path]
    assert statuses[:3] == [429, 429, 200]
    assert sum(running.poller.graph.stats.throttled.values()) == 2
    assert _open(running) == EXPECTED


def test_missing_permission_is_recorded_as_missing_and_gives_errors_not_passes(
    tmp_path: Path,
) -> None:
    """Without attendance, call-record and chat permissions, every check that needs attendance
    or the chat is an error, never a pass."""
    scenario = school()
    permissions = [
        p
        for p in scenario.app.permissions
        if p not in {"OnlineMeetingArtifact.Read.All", "CallRecords.Read.All", "Chat.Read.All"}
    ]
    scenario = scenario.model_copy(
        update={"app": scenario.app.model_copy(update={"permissions": permissions})}
    )
    for running in start(scenario, tmp_path):
        result = run_poll(running.poller)
        assert result.status == "partial"
        with running.poller.db() as session:
            rows = list(session.scalars(select(FindingRow)))
            snapshots = [
                SessionSnapshot.model_validate(s.data) for s in session.scalars(select(SnapshotRow))
            ]
        needs = {
            rule_id
            for rule_id, rule in running.poller.registry.items()
            if rule.requires & {Missing.PRESENCE, Missing.CHAT}
        }
        assert {row.rule_id for row in rows} & needs
        assert {row.status for row in rows if row.rule_id in needs} == {"error"}
        assert all("presence" in snap.missing and "chat" in snap.missing for snap in snapshots)
        assert any("403" in snap.missing["presence"] for snap in snapshots)


def test_repolling_never_duplicates_findings(running: Running) -> None:
    """The same facts polled twice give the same finding rows."""
    run_poll(running.poller)
    with running.poller.db() as session:
        first = sorted(session.scalars(select(FindingRow.key)))
    run_poll(running.poller)
    with running.poller.db() as session:
        second = sorted(session.scalars(select(FindingRow.key)))
    assert first == second
    assert len(first) == len(set(first))


def test_every_graph_request_is_in_the_permissions_table(running: Running) -> None:
    """The least-privilege table covers every call a full poll makes."""
    run_poll(running.poller)
    graph = [r for r in running.server.requests if r.path.startswith("/v1.0/")]
    unlisted = {
        (r.method, r.path.split("?")[0]) for r in graph if call_for(r.method, r.path) is None
    }
    assert unlisted == set()


def test_stored_snapshot_round_trips_to_the_same_findings(running: Running) -> None:
    """Serialise, load, evaluate: the same findings as the poll stored (first-stage rules; the
    second stage reads the store, not the snapshot)."""
    run_poll(running.poller)
    poller = running.poller
    stage_one = poller.rule_ids(stage=1)
    with poller.db() as session:
        stored = {
            row.key: row.status
            for row in session.scalars(select(FindingRow))
            if row.rule_id in stage_one
        }
        snapshots = [
            SessionSnapshot.model_validate_json(
                SessionSnapshot.model_validate(s.data).model_dump_json()
            )
            for s in session.scalars(select(SnapshotRow))
        ]
        registers = load_registers(session)
    again = {}
    for snapshot in snapshots:
        for finding in evaluate_snapshot(
            snapshot,
            bound_rules=poller.policy.bound_rules,
            registry=poller.registry,
            context=poller.context(registers, poller.clock()),
        ):
            again[finding.key] = finding.status.value
    assert again == stored
