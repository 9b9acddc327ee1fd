"""Seeded random fault schedules against scenarios with known ground truth.

Each run polls a scenario 1-3 times under a random fault schedule (see ``ChaosRates.random``),
then once more with the faults stopped, and checks the invariants of ``tests/chaos/harness.py``
after every poll. The seed decides the schedule and the fault drawn for each request, so a
failing run is repeated by running its test id again.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from remote_guard.fakegraph.demo import demo_scenario
from remote_guard.fakegraph.faults import ChaosRates
from remote_guard.fakegraph.harness import import_registers
from remote_guard.fakegraph.scenario import Scenario, load_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.runtime import build_poller
from tests import databases
from tests.chaos.conftest import RUNS
from tests.chaos.harness import (
    Baseline,
    Report,
    chaos_settings,
    check_during,
    check_final,
    check_poll_runs,
    clean_baseline,
    facts,
    finding_dicts,
    frozen_clock,
    poll_once,
)

pytestmark = pytest.mark.database

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios"
# Library files chosen so that together they read every kind of Graph data the collector reads:
# calendars, meeting options, attendance, call records and participants, meeting and direct
# chats, recordings and transcripts, user and group lookups, teams and channels, a series.
SCENARIOS = (
    "meeting_chat_pupil_posts",
    "peer_call_staff_pupil",
    "outsider_guest_unknown",
    "uninvited_pupil_group_invitation",
    "recording_started_by_pupil",
    "direct_chat_teacher_pupil",
    "uninvited_pupil_channel_lesson",
    "exemption_series_meeting_chat",
    "repeated_breaches_chat_three_lessons",
)
SEEDS = range(1, 4)
# A Wednesday mid-morning: the demo school has ended, live and upcoming lessons.
DEMO_NOW = datetime(2026, 11, 18, 11, 30, tzinfo=UTC)
DEMO_SEEDS = range(101, 102)
SLOW_SECONDS = 0.6  # longer than the client's 0.4 s timeout: a read timeout


def chaos_run(baseline: Baseline, *, at: datetime, seed: int, folder: Path) -> Report:
    """Poll under a random fault schedule, then once clean; check the invariants each time."""
    scenario = baseline.scenario
    rng = random.Random(seed)  # noqa: S311 - a repeatable fault schedule, not security
    clock = frozen_clock(at)
    report = Report()
    with FakeTenantServer(scenario, state_dir=folder / "tenant", clock=clock) as server:
        settings = chaos_settings(
            server, scenario, database_url=databases.database_url(folder, "chaos"), clock=clock
        )
        poller = build_poller(settings, clock=clock)
        import_registers(poller, scenario, server, clock=clock)
        # Short pages, so that collections are paged and an item can be served twice.
        server.state.faults.page_size = rng.choice((2, 3, 5))
        rates = ChaosRates.random(rng, slow_seconds=SLOW_SECONDS)
        server.state.chaos.start(rates, seed=seed)
        for number in range(1, rng.randint(1, 3) + 1):
            status, raised = poll_once(poller)
            report.polls[status] += 1
            report.extend(f"faulted poll {number}", raised)
            current = facts(poller.db, baseline.sessions)
            deleted = server.state.chaos.deleted
            report.extend(
                f"faulted poll {number}",
                check_during(baseline, current, deleted=deleted, tolerated=report.tolerated),
            )
        server.state.chaos.stop(server.state)
        status, raised = poll_once(poller)
        report.polls[f"clean {status}"] += 1
        if status == "failed":
            # MSAL keeps a 5xx from the token endpoint for its Retry-After (5 s without one)
            # and answers with it meanwhile, on purpose: poll once more after that.
            time.sleep(5.5)
            status, raised = poll_once(poller)
            report.polls[f"clean again {status}"] += 1
        report.extend("clean poll", raised)
        if status != "ok":
            report.problems.append(f"clean poll: ended {status}")
        current = facts(poller.db, baseline.sessions)
        findings = finding_dicts(poller.db, baseline.sessions, baseline.subjects)
        report.extend(
            "after faults stopped",
            check_final(baseline, current, findings, score_truth=scenario.name != "demo"),
        )
        report.extend("poll runs", check_poll_runs(poller.db))
        RUNS.record(scenario.name, seed, server.state.chaos.counts, report)
    return report


_BASELINES: dict[str, Baseline] = {}


def baseline_for(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Baseline, datetime]:
    if name == "demo":
        scenario: Scenario = demo_scenario()
        at = DEMO_NOW
    else:
        scenario = load_scenario(LIBRARY / f"{name}.yaml")
        at = scenario.reference_now()
    if name not in _BASELINES:
        _BASELINES[name] = clean_baseline(scenario, at=at, folder=tmp_path_factory.mktemp(name))
    return _BASELINES[name], at


@pytest.mark.e2e
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", SCENARIOS)
def test_library_scenario_survives_a_random_fault_schedule(
    name: str, seed: int, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Under faults nothing unread passes; once they stop the ground truth is met exactly."""
    baseline, at = baseline_for(name, tmp_path_factory)
    assert baseline.truth_problems == [], "the clean run must meet the scenario's ground truth"

    report = chaos_run(baseline, at=at, seed=seed, folder=tmp_path)

    assert report.problems == [], "\n".join(report.problems)


@pytest.mark.e2e
@pytest.mark.parametrize("seed", DEMO_SEEDS)
def test_mid_sized_school_survives_a_random_fault_schedule(
    seed: int, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The demo federation (144 people, 28 sessions) under faults converges to its clean run."""
    baseline, at = baseline_for("demo", tmp_path_factory)

    report = chaos_run(baseline, at=at, seed=seed, folder=tmp_path)

    # The demo's own expectations are written for its live clock (some lessons are still to come
    # at this frozen time), so the clean run is the reference here, not its expect list.
    assert report.problems == [], "\n".join(report.problems)


@pytest.mark.e2e
def test_the_scheduled_poller_keeps_polling_through_faults(tmp_path: Path) -> None:
    """The scheduler (as `remote-guard poll` runs it) goes on cycle after cycle under a heavy
    fault schedule, and each cycle leaves a poll run with its status and reasons."""
    from remote_guard.poll.scheduler import run_scheduled

    scenario = load_scenario(LIBRARY / "meeting_chat_pupil_posts.yaml")
    clock = frozen_clock(scenario.reference_now())
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        settings = chaos_settings(
            server, scenario, database_url=databases.database_url(tmp_path), clock=clock
        )
        poller = build_poller(settings, clock=clock)
        heavy = ChaosRates(
            throttle=0.1,
            unavailable=0.1,
            reset=0.1,
            malformed=0.1,
            missing_field=0.1,
            # No token endpoint faults here: MSAL would answer later cycles from its throttle
            # cache without asking the tenant (the random schedules cover them).
            expire_tokens=0.1,
            storm_length=8,
            retry_after_seconds=0.01,
            slow_seconds=SLOW_SECONDS,
        )
        server.state.chaos.start(heavy, seed=7)
        cycles = run_scheduled(
            poller, interval_seconds=0.2, max_cycles=4, install_signal_handlers=False
        )
        counts = server.state.chaos.counts

    assert cycles == 4
    assert sum(counts.values()) > 10, counts
    assert check_poll_runs(poller.db) == []
    with poller.db() as session:
        from remote_guard.poll.models import PollRunRow

        assert session.query(PollRunRow).count() == 4
