"""A poll run left ``running`` (its process was killed) is marked ``interrupted`` by the next
run, with an audit entry, and its sessions are read again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.fakegraph.harness import import_registers
from remote_guard.fakegraph.scenario import load_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.poll.models import PollRunRow
from remote_guard.poll.service import run_poll
from remote_guard.runtime import build_poller
from remote_guard.store.db import transaction
from tests import databases
from tests.chaos.harness import chaos_settings, check_poll_runs, frozen_clock

pytestmark = pytest.mark.database

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "meeting_chat_pupil_posts.yaml"


@pytest.mark.e2e
def test_a_run_left_running_is_marked_interrupted_by_the_next(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIO)
    clock = frozen_clock(scenario.reference_now())
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        settings = chaos_settings(
            server, scenario, database_url=databases.database_url(tmp_path), clock=clock
        )
        poller = build_poller(settings, clock=clock)
        import_registers(poller, scenario, server, clock=clock)
        with transaction(poller.db) as session:
            # What a killed process leaves: a run that started and never finished; and one of
            # another tenant, which is not this poller's to judge.
            for run_id, tenant in (("killed", settings.tenant.tenant_id), ("other", "other")):
                session.add(
                    PollRunRow(
                        id=run_id,
                        tenant_id=tenant,
                        started_at=clock() - timedelta(minutes=5),
                        status="running",
                        counts={},
                        errors=[],
                        graph={},
                    )
                )
        result = run_poll(poller)

    assert result.status == "ok"
    with poller.db() as session:
        killed = session.get(PollRunRow, "killed")
        other = session.get(PollRunRow, "other")
        entries = list(
            session.scalars(select(AuditEntryRow).where(AuditEntryRow.action == "poll.interrupted"))
        )
    assert killed is not None
    assert other is not None
    assert killed.status == "interrupted"
    assert killed.finished_at is None
    assert killed.errors[0].startswith(
        f"interrupted: the poller stopped before this run finished (found by run {result.run_id}"
    )
    assert other.status == "running"
    assert [(e.object_id, e.run_id) for e in entries] == [("killed", result.run_id)]
    assert check_poll_runs(poller.db) == [
        "poll run other is still 'running'",
        "poll run other (running) has no finished_at",
    ]


@pytest.mark.e2e
def test_a_cycle_that_raises_is_recorded_as_failed_not_left_running(tmp_path: Path) -> None:
    """Whatever goes wrong inside a cycle (here a registry without the profile's rules, so
    evaluation raises KeyError), the run ends ``failed`` naming the exception, with its
    ``poll.finished`` audit entry, and run_poll returns rather than raising."""
    from dataclasses import replace

    scenario = load_scenario(SCENARIO)
    clock = frozen_clock(scenario.reference_now())
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        settings = chaos_settings(
            server, scenario, database_url=databases.database_url(tmp_path), clock=clock
        )
        broken = replace(build_poller(settings, clock=clock), registry={})
        result = run_poll(broken)

    assert result.status == "failed"
    assert result.errors[0].startswith("crashed: KeyError: ")
    assert check_poll_runs(broken.db) == []
    with broken.db() as session:
        row = session.get(PollRunRow, result.run_id)
        finished = list(
            session.scalars(
                select(AuditEntryRow).where(
                    AuditEntryRow.action == "poll.finished",
                    AuditEntryRow.object_id == result.run_id,
                )
            )
        )
    assert row is not None
    assert (row.status, row.errors) == ("failed", result.errors)
    assert row.finished_at is not None
    assert len(finished) == 1
