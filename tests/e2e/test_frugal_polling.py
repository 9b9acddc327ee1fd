"""Frugal polling against the fake tenant: the same findings as the naive reading, with far
fewer requests, and only what changed read again."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from remote_guard.collect.collector import Collector, session_id_for_join_url
from remote_guard.consent.registers import ApprovalStatus, Consent, Registration
from remote_guard.consent.service import save_approved_activity, save_consent, save_registration
from remote_guard.fakegraph.demo import demo_scenario
from remote_guard.fakegraph.harness import import_registers, settings_for
from remote_guard.fakegraph.scenario import Scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.fakegraph.tenant import RequestRecord
from remote_guard.findings.models import FindingRow
from remote_guard.poll.service import Poller, PollResult, run_poll
from remote_guard.runtime import build_poller
from remote_guard.store.db import transaction
from tests import databases
from tests.e2e.conftest import SCHOOL, school

pytestmark = [pytest.mark.e2e, pytest.mark.database]

# A Wednesday mid-morning: the demo federation has ended, live and upcoming lessons.
DEMO_NOW = datetime(2026, 11, 18, 11, 30, tzinfo=UTC)
SCHOOL_NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)


class Clock:
    """The time both the fake tenant and the poller read; tests move it on."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Cycle:
    result: PollResult
    requests: list[RequestRecord]

    @property
    def round_trips(self) -> int:
        """HTTP requests to Graph (a $batch envelope is one)."""
        return sum(1 for r in self.requests if r.path.startswith("/v1.0/") and not r.in_batch)

    @property
    def graph_requests(self) -> int:
        """Requests as Graph counts them against its limits: each batch item is one."""
        return sum(
            1
            for r in self.requests
            if r.path.startswith("/v1.0/") and (r.in_batch or "$batch" not in r.path)
        )

    def paths(self, fragment: str) -> list[str]:
        return [r.path for r in self.requests if fragment in r.path]


def _poll(poller: Poller, server: FakeTenantServer) -> Cycle:
    before = len(server.requests)
    result = run_poll(poller)
    return Cycle(result, server.requests[before:])


def _findings(poller: Poller) -> dict[str, tuple[str, bool]]:
    with poller.db() as session:
        return {
            row.key: (row.status, row.exemption is not None)
            for row in session.scalars(select(FindingRow))
        }


def _poller(server: FakeTenantServer, scenario: Scenario, clock: Clock, path: Path) -> Poller:
    """A poller storing in the test database named by ``path`` (its folder and stem)."""
    url = databases.database_url(path.parent, path.stem)
    settings = settings_for(server, scenario, database_url=url, clock=clock)
    poller = build_poller(settings, clock=clock)
    import_registers(poller, scenario, server, clock=clock)
    return poller


def test_frugal_and_naive_polls_find_the_same_and_frugal_asks_far_less(tmp_path: Path) -> None:
    """The demo federation polled twice each way: the same stored findings after each cycle;
    on the second cycle the frugal poll makes fewer requests, whether counted as round trips
    or as Graph counts them (each batch item)."""
    scenario = demo_scenario()
    clock = Clock(DEMO_NOW)
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        frugal = _poller(server, scenario, clock, tmp_path / "frugal.db")
        naive = _poller(server, scenario, clock, tmp_path / "naive.db")
        naive.frugal = False
        cycles: dict[str, list[Cycle]] = {"frugal": [], "naive": []}
        for _ in range(2):
            cycles["frugal"].append(_poll(frugal, server))
            cycles["naive"].append(_poll(naive, server))
            assert cycles["frugal"][-1].result.status == "ok", cycles["frugal"][-1].result.errors
            assert cycles["naive"][-1].result.status == "ok", cycles["naive"][-1].result.errors
            assert _findings(frugal) == _findings(naive)
            clock.at += timedelta(minutes=5)
    assert len(_findings(frugal)) > 100
    second_frugal, second_naive = cycles["frugal"][1], cycles["naive"][1]
    assert second_frugal.graph_requests * 3 < second_naive.graph_requests
    assert second_frugal.round_trips * 10 < second_naive.round_trips
    # The naive reading reads calendars in full and call records one by one, without batches.
    assert second_naive.paths("/calendarView?")
    assert not second_frugal.paths("/calendarView?")
    assert second_naive.paths("/communications/callRecords/")
    assert second_naive.paths("/$batch") == []


# --- the small school: what a frugal poll reads again ----------------------------------------------

UPCOMING: dict[str, Any] = {
    "key": "upcoming",
    "subject": "Year 5 catch-up",
    "organizer": "t.patel",
    "start": "2026-11-18T17:00:00Z",
    "end": "2026-11-18T17:30:00Z",
    "invitees": ["p6", "p7"],
}


@dataclass
class School:
    server: FakeTenantServer
    poller: Poller
    clock: Clock

    def poll(self, minutes: float = 5) -> Cycle:
        self.clock.at += timedelta(minutes=minutes)
        return _poll(self.poller, self.server)


@pytest.fixture
def small(tmp_path: Path) -> Iterator[School]:
    scenario = school(meetings=[*SCHOOL["meetings"], UPCOMING])
    clock = Clock(SCHOOL_NOW)
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        poller = _poller(server, scenario, clock, tmp_path / "rg.db")
        first = _poll(poller, server)
        assert first.result.status == "ok", first.result.errors
        yield School(server, poller, clock)


def _upcoming_id(small: School) -> str:
    return session_id_for_join_url(small.server.state.meetings["upcoming"].join_url or "")


def test_an_unchanged_school_is_polled_with_a_handful_of_requests(small: School) -> None:
    """Nothing changed: one delta round per mailbox and the call-record listing, in batches;
    no session, group or meeting is read again."""
    cycle = small.poll()
    assert cycle.result.status == "ok"
    assert cycle.result.counts["sessions_unchanged"] == 1
    items = {re.sub(r"\?.*", "", r.path) for r in cycle.requests if r.in_batch}
    assert all(
        path.endswith("/calendarView/delta") or path == "/v1.0/communications/callRecords"
        for path in items
    ), items
    assert cycle.round_trips <= 3


def test_a_changed_meeting_is_read_again_at_the_next_poll(small: School) -> None:
    small.server.state.update_meeting("upcoming", subject="Year 5 catch-up (moved)")
    cycle = small.poll()
    assert len(cycle.paths("/onlineMeetings?")) == 1
    assert cycle.result.counts["sessions"] == 1
    assert cycle.result.counts["sessions_unchanged"] == 0


def test_an_upcoming_meetings_options_are_read_again_after_some_hours(small: School) -> None:
    assert small.poll(minutes=60).paths("/onlineMeetings?") == []
    due = small.poll(minutes=125)  # three hours and five minutes after the first poll
    assert len(due.paths("/onlineMeetings?")) == 1


def test_a_session_that_starts_is_judged_again_without_reading_it(small: School) -> None:
    """17:00 passes between two polls: the unchanged session is evaluated again (it is now
    live) from its stored snapshot, with no Graph request for it."""
    small.clock.at = datetime(2026, 11, 18, 16, 58, tzinfo=UTC)
    run_poll(small.poller)
    cycle = small.poll()
    assert cycle.result.counts["sessions"] == 1
    assert cycle.result.counts["sessions_unchanged"] == 1
    assert cycle.paths("/onlineMeetings") == []
    with small.poller.db() as session:
        phases = set(
            session.scalars(
                select(FindingRow.phase).where(FindingRow.session_id == _upcoming_id(small))
            )
        )
    assert phases == {"live"}


def test_stale_delta_links_resync_every_calendar_with_the_same_findings(small: School) -> None:
    before = _findings(small.poller)
    small.server.state.invalidate_delta_tokens()
    cycle = small.poll()
    assert cycle.result.status == "ok", cycle.result.errors
    assert len([p for p in cycle.paths("/calendarView/delta") if "startDateTime" in p]) == 3
    assert _findings(small.poller) == before


def test_a_calendar_that_cannot_be_read_loses_none_of_its_sessions(small: School) -> None:
    """One teacher's delta round fails: the poll is partial and says why, her sessions stay
    as found before, and the next poll catches up."""
    before = _findings(small.poller)
    jones = small.server.scenario.person_id("t.jones")
    small.server.state.inject(re.escape(f"/users/{jones}/calendarView/delta"), 503, count=50)
    cycle = small.poll()
    assert cycle.result.status == "partial"
    assert any(error.startswith(f"calendar of {jones}") for error in cycle.result.errors)
    assert _findings(small.poller) == before
    small.server.state.fault_plan.clear_injections()
    assert small.poll().result.status == "ok"


def test_the_directory_is_read_again_only_after_its_refresh_interval(small: School) -> None:
    assert small.poll(minutes=30).paths("/transitiveMembers") == []
    assert small.poll(minutes=31).paths("/transitiveMembers") != []


def test_collect_sessions_reads_a_named_session_whatever_the_store_says(small: School) -> None:
    """A change notification can ask for one session now: it is read even though nothing
    changed, and nothing else is."""
    poller = small.poller
    collector = Collector(
        graph=poller.graph,
        settings=poller.settings,
        directory=poller.memory.directory.current(poller.graph, poller.settings, small.clock())
        if poller.memory is not None
        else pytest.fail("the first poll made the memory"),
        clock=small.clock,
        memory=poller.memory,
    )
    before = len(small.server.requests)
    collected = list(
        collector.collect_sessions(
            [_upcoming_id(small)],
            window_start=small.clock() - timedelta(hours=36),
            window_end=small.clock() + timedelta(days=7),
        )
    )
    assert [c.snapshot.session_id for c in collected] == [_upcoming_id(small)]
    assert collected[0].snapshot.settings is not None
    assert len([r for r in small.server.requests[before:] if "/onlineMeetings?" in r.path]) == 1


def test_an_ended_meeting_nobody_joined_is_looked_at_again_only_every_few_hours(
    tmp_path: Path,
) -> None:
    """No attendance report or call record ever came for a lesson that ended at noon: its
    snapshot says so (an error, never a pass), and it is read again every
    reread_every_hours rather than at every poll."""
    empty = {
        "key": "empty",
        "subject": "Year 5 spelling",
        "organizer": "t.patel",
        "start": "2026-11-18T12:00:00Z",
        "end": "2026-11-18T12:30:00Z",
        "invitees": ["p8"],
    }
    scenario = school(meetings=[*SCHOOL["meetings"], empty])
    clock = Clock(SCHOOL_NOW)
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        poller = _poller(server, scenario, clock, tmp_path / "rg.db")
        first = _poll(poller, server)
        assert len(first.paths("/onlineMeetings?")) == 3
        clock.at += timedelta(minutes=5)
        assert _poll(poller, server).paths("/onlineMeetings?") == []
        clock.at += timedelta(hours=3)
        assert len(_poll(poller, server).paths("/onlineMeetings?")) == 1
    session_id = session_id_for_join_url(server.state.meetings["empty"].join_url or "")
    with poller.db() as session:
        statuses = set(
            session.scalars(
                select(FindingRow.status).where(
                    FindingRow.session_id == session_id,
                    FindingRow.rule_id == "outsider_in_pupil_session",
                )
            )
        )
    assert statuses == {"error"}


def test_a_register_changed_between_polls_is_applied_without_reading_graph_again(
    small: School,
) -> None:
    """The lesson was read in full by the first poll; a registration and consent for the
    teacher's time alone with p1 are recorded before the next (without the web app's own
    re-evaluation): that poll judges the stored lesson again and reads nothing of it."""
    scenario = small.server.scenario
    lesson = session_id_for_join_url(small.server.join_url("lesson"))
    teacher, pupil = scenario.person_id("t.jones"), scenario.person_id("p1")

    def status() -> set[str]:
        with small.poller.db() as session:
            return set(
                session.scalars(
                    select(FindingRow.status).where(
                        FindingRow.session_id == lesson,
                        FindingRow.rule_id == "one_to_one_without_consent",
                        FindingRow.subject_key == pupil,
                    )
                )
            )

    assert status() == {"fail"}
    now = small.clock()
    with transaction(small.poller.db) as session:
        save_approved_activity(session, name="reading", approved_by=None, now=now)
        save_consent(
            session,
            consent=Consent(
                id="consent-p1",
                pupil_id=pupil,
                granted_by="Parent of p1",
                relationship="parent",
                granted_at=now - timedelta(days=7),
            ),
            recorded_by=teacher,
            now=now,
        )
        save_registration(
            session,
            registration=Registration(
                id="registration-p1",
                staff_id=teacher,
                pupil_id=pupil,
                activity="reading",
                join_url=small.server.join_url("lesson"),
                status=ApprovalStatus.APPROVED,
                approved_by=scenario.person_id("h.head"),
                approved_at=now - timedelta(days=7),
            ),
            consent_id="consent-p1",
            recorded_by=teacher,
            now=now,
        )
    cycle = small.poll()
    assert status() == {"pass"}
    assert cycle.paths("/onlineMeetings") == []
    assert cycle.paths("/chats/") == []


def test_polls_keep_within_graphs_published_limits(tmp_path: Path) -> None:
    """With the fake tenant enforcing Microsoft's limits (Outlook's four requests in flight per
    mailbox, Teams' and call records' rates; a batch's items taking their time four at a
    time), a first poll and a steady one of the demo federation are never throttled."""
    scenario = demo_scenario()
    clock = Clock(DEMO_NOW)
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        server.state.throttling.enabled = True
        server.state.faults.latency_ms = 5
        poller = _poller(server, scenario, clock, tmp_path / "rg.db")
        cycles = [_poll(poller, server)]
        clock.at += timedelta(minutes=5)
        cycles.append(_poll(poller, server))
        counts = dict(server.state.throttling.counts)
    assert [c.result.status for c in cycles] == ["ok", "ok"]
    assert counts == {}
    assert [r.path for c in cycles for r in c.requests if r.status == 429] == []


def test_the_teams_and_channels_are_listed_once_a_day(tmp_path: Path) -> None:
    """Teams resources: the list of teams and channels read by the first poll serves the
    channel lessons that end an hour later (after the directory was read again), and is read
    again the next day."""
    scenario = demo_scenario()
    clock = Clock(DEMO_NOW)

    def listed_teams(cycle: Cycle) -> int:
        return sum(1 for r in cycle.requests if r.path.split("?")[0] == "/v1.0/teams")

    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        poller = _poller(server, scenario, clock, tmp_path / "rg.db")
        first = _poll(poller, server)
        clock.at += timedelta(minutes=65)
        later = _poll(poller, server)
        clock.at += timedelta(days=1)
        next_day = _poll(poller, server)
    assert listed_teams(first) >= 1
    assert later.paths("/replies")  # channel lessons that ended in between were read
    assert later.paths("/transitiveMembers")  # the directory was read again
    assert listed_teams(later) == 0
    assert listed_teams(next_day) >= 1
