"""Work units and the worker loop, in this process: sharded polling finds what one whole poll
finds, a stopped worker gives its part back, and a run under a live lease is not taken for cut
short."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import select, update

from remote_guard.clock import Clock
from remote_guard.fakegraph.harness import key_maps, scenario_clock, settings_for
from remote_guard.fakegraph.scenario import Scenario, parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.findings.models import FindingRow
from remote_guard.leases import work
from remote_guard.leases.lease import Grant, Leases, database_now
from remote_guard.leases.models import LeaseRow
from remote_guard.leases.work import (
    Heartbeat,
    UnitRun,
    WorkUnit,
    other_calendars,
    run_worker,
    shard_of,
    work_units,
)
from remote_guard.poll.models import PollRunRow
from remote_guard.poll.service import CycleStoppedError, Poller, run_poll
from remote_guard.runtime import build_poller
from remote_guard.settings import ConfigError, Settings, settings_from_mapping
from remote_guard.store.db import transaction
from tests import databases
from tests.chaos.harness import check_poll_runs
from tests.leases.compare import differences
from tests.leases.school import shared_school


def test_a_mailbox_always_falls_in_the_same_shard() -> None:
    """The shard is a stable hash of the mailbox id (case and spaces aside), not Python's
    per-process ``hash``: pinned here so a release never moves mailboxes between shards."""
    mailbox = "6f1c2a4e-0000-4000-8000-000000000001"
    assert [shard_of(mailbox, count) for count in (1, 2, 3, 5)] == [0, 1, 1, 0]
    assert shard_of(f"  {mailbox.upper()} ", 5) == shard_of(mailbox, 5)


def test_mailboxes_spread_over_the_shards() -> None:
    """A thousand mailboxes fill four shards with 200 to 300 each."""
    counts = [0, 0, 0, 0]
    for n in range(1000):
        counts[shard_of(f"mailbox-{n}", 4)] += 1
    assert all(200 <= count <= 300 for count in counts), counts


def test_the_work_units_of_a_tenant(settings_data: dict[str, Any]) -> None:
    """``[poll] shards = 3``: three units, shard 0 first and the only tenant-wide one."""
    settings = settings_from_mapping(
        {**settings_data, "poll": {"shards": 3}}, source="remote_guard.toml"
    )
    units = work_units(settings)
    tenant = settings.tenant.tenant_id
    assert [unit.key for unit in units] == [f"poll:{tenant}:shard:{n}of3" for n in range(3)]
    assert [unit.name for unit in units] == ["shard 0 of 3", "shard 1 of 3", "shard 2 of 3"]
    assert [unit.tenant_wide for unit in units] == [True, False, False]
    whole = work_units(settings_from_mapping(settings_data, source="remote_guard.toml"))
    assert [unit.name for unit in whole] == ["whole tenant"]


@pytest.mark.parametrize(("key", "value"), [("shards", 0), ("shards", 65), ("lease_seconds", 1)])
def test_bad_shard_and_lease_settings_are_refused(
    settings_data: dict[str, Any], key: str, value: int
) -> None:
    with pytest.raises(ConfigError, match=rf"poll\.{key}"):
        settings_from_mapping({**settings_data, "poll": {key: value}}, source="remote_guard.toml")


@pytest.fixture
def settings_data() -> dict[str, Any]:
    return {
        "tenant": {
            "tenant_id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "client_id": "11111111-2222-3333-4444-555555555555",
            "client_secret": "not-a-real-secret",
        },
        "directory": {
            "staff_group_ids": ["aaaaaaaa-0000-0000-0000-000000000001"],
            "pupil_group_ids": ["aaaaaaaa-0000-0000-0000-000000000002"],
        },
    }


# --- against the fake tenant --------------------------------------------------------------------


@dataclass
class Tenant:
    scenario: Scenario
    server: FakeTenantServer
    clock: Clock
    folder: Path

    def settings(self, name: str, **poll: Any) -> Settings:
        settings = settings_for(
            self.server,
            self.scenario,
            database_url=databases.database_url(self.folder, name.removesuffix(".db")),
            clock=self.clock,
        )
        return settings.model_copy(update={"poll": settings.poll.model_copy(update=poll)})

    def findings(self, poller: Poller) -> dict[tuple[str, str, str, str], tuple[str, str]]:
        """(rule, clause, session key, subject key) -> (rule, status), every stored finding."""
        sessions, subjects = key_maps(self.scenario, self.server)
        with poller.db() as session:
            rows = list(session.scalars(select(FindingRow)))
        found: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        for row in rows:
            key = (
                row.rule_id,
                f"{row.clause_id}v{row.clause_version}",
                sessions.get(row.session_id, row.session_id),
                subjects.get(row.subject_key, row.subject_key),
            )
            assert key not in found, f"two findings for {key}"
            found[key] = (row.rule_id, row.status)
        return found


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Tenant]:
    scenario = parse_scenario(shared_school(), source="shared school")
    clock = scenario_clock(scenario)
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        yield Tenant(scenario, server, clock, tmp_path)


def _reference(tenant: Tenant) -> dict[tuple[str, str, str, str], tuple[str, str]]:
    """The findings of one whole-tenant poll, as a single poller makes it."""
    poller = build_poller(tenant.settings("whole.db"), clock=tenant.clock)
    result = run_poll(poller)
    assert (result.status, result.errors) == ("ok", [])
    return tenant.findings(poller)


def _differences(
    tenant: Tenant, poller: Poller, reference: dict[tuple[str, str, str, str], tuple[str, str]]
) -> list[str]:
    return differences(tenant.findings(poller), reference, pattern_rules=poller.rule_ids(stage=2))


@pytest.mark.e2e
@pytest.mark.database
@pytest.mark.parametrize("shards", [1, 2, 3])
def test_a_sharded_poll_finds_what_one_whole_poll_finds(tenant: Tenant, shards: int) -> None:
    """One worker doing every shard, twice, stores the same findings, with the same statuses,
    as a whole-tenant poll: a co-taught lesson and a chat between teachers of two shards are read
    once, the "Meet now" meeting (found only in call records) is read as ad-hoc, no shard takes
    another's calendar meeting for one, and the repeated breach across three teachers' lessons
    is found. (Shard 0 judges the patterns over what is stored when it runs: sessions a later
    shard stores are judged at its next cycle, hence the second round.)"""
    reference = _reference(tenant)
    repeated = {
        k: status
        for k, (rule, status) in reference.items()
        if rule == "repeated_breaches" and status != "pass"
    }
    assert [(k[2], k[3], v) for k, v in repeated.items()] == [("science-18", "p1", "fail")]
    poller = build_poller(
        tenant.settings("sharded.db", shards=shards, lease_seconds=30), clock=tenant.clock
    )
    first = run_worker(poller, once=True, install_signal_handlers=False)
    _interval_passes(poller)
    second = run_worker(poller, once=True, install_signal_handlers=False)

    names = sorted(unit.name for unit in work_units(poller.settings))
    assert sorted(name for name, _ in first.results) == names
    assert sorted(name for name, _ in second.results) == names
    assert {result.status for _, result in first.results + second.results} == {"ok"}
    assert _differences(tenant, poller, reference) == []
    assert check_poll_runs(poller.db) == []
    with poller.db() as session:
        held = session.scalars(select(LeaseRow.key).where(LeaseRow.holder.is_not(None))).all()
        session_leases = session.scalars(
            select(LeaseRow).where(LeaseRow.key.startswith("session:"))
        ).all()
    assert held == []
    # Every session claimed once (a second claim, by the second round's worker, would have
    # moved its token on): the second round read nothing again, as all were read within the
    # interval.
    assert len(session_leases) == 10
    assert {(row.fencing_token, row.done_at is not None) for row in session_leases} == {(1, True)}


def _interval_passes(poller: Poller) -> None:
    """Make every part due again, as if a poll interval had passed since each finished."""
    interval = timedelta(seconds=poller.settings.poll.interval_seconds)
    with transaction(poller.db) as session:
        for row in session.scalars(select(LeaseRow).where(LeaseRow.key.startswith("poll:"))):
            assert row.done_at is not None, f"{row.key} was never finished"
            row.done_at -= interval


@pytest.mark.e2e
@pytest.mark.database
def test_a_stopped_worker_gives_its_part_back_undone(tenant: Tenant) -> None:
    """Told to stop after its first stored session, the worker ends that run ``interrupted``
    and releases its part undone; another worker takes the part at once (its interval has not
    passed, but the part was not finished) and the findings end as a whole poll's."""
    reference = _reference(tenant)
    settings = tenant.settings("stopped.db", lease_seconds=30)
    poller = build_poller(settings, clock=tenant.clock)
    stop = threading.Event()
    poller.on_finding = lambda _finding, _previous: stop.set()
    first = run_worker(poller, stop=stop, once=True, install_signal_handlers=False)

    assert [result.status for _, result in first.results] == ["interrupted"]
    interrupted = first.results[0][1]
    assert interrupted.errors[0].startswith("interrupted: the worker was asked to stop")
    with poller.db() as session:
        unit = session.get(LeaseRow, work_units(settings)[0].key)
        stored = session.scalars(
            select(LeaseRow.key).where(LeaseRow.key.startswith("session:"))
        ).all()
    assert unit is not None
    assert (unit.holder, unit.done_at) == (None, None)
    assert len(stored) >= 1

    poller.on_finding = None
    second = run_worker(poller, once=True, install_signal_handlers=False)
    assert [result.status for _, result in second.results] == ["ok"]
    assert _differences(tenant, poller, reference) == []
    assert check_poll_runs(poller.db) == []


@pytest.mark.e2e
@pytest.mark.database
def test_only_a_run_whose_lease_expired_is_marked_interrupted(tenant: Tenant) -> None:
    """Another worker's run under a live lease is in progress: a new run leaves it running.
    Once that lease has expired (its worker died), the next run marks it interrupted."""
    settings = tenant.settings("runs.db", lease_seconds=30)
    poller = build_poller(settings, clock=tenant.clock)
    other = Leases(poller.db, holder="other-worker", seconds=30)
    grant = other.claim("poll:elsewhere:shard:1of2")
    assert grant is not None
    with transaction(poller.db) as session:
        session.add(
            PollRunRow(
                id="elsewhere",
                tenant_id=settings.tenant.tenant_id,
                started_at=tenant.clock() - timedelta(minutes=1),
                status="running",
                counts={},
                errors=[],
                graph={},
            )
        )
        session.flush()
        other.attach_run(session, grant, "elsewhere")

    first = run_poll(poller)
    with poller.db() as session:
        row = session.get(PollRunRow, "elsewhere")
        assert row is not None
        assert row.status == "running"

    with transaction(poller.db) as session:
        past = database_now(session) - timedelta(seconds=1)
        session.execute(update(LeaseRow).where(LeaseRow.key == grant.key).values(expires_at=past))
    second = run_poll(poller)
    with poller.db() as session:
        row = session.get(PollRunRow, "elsewhere")
        assert row is not None
        assert row.status == "interrupted"
        assert row.errors[0].startswith(
            f"interrupted: the poller stopped before this run "
            f"finished (found by run {second.run_id}"
        )
    assert first.status == second.status == "ok"


@pytest.mark.e2e
@pytest.mark.database
def test_a_part_knows_the_meetings_on_other_shards_calendars(tenant: Tenant) -> None:
    """Before the other shard has read its calendars, a part finds them stale (its calls
    wait). After both shards have, shard 0 leaves the links of shard 1's meetings to shard 1,
    shard 1 leaves shard 0's, and neither leaves its own."""
    poller = build_poller(tenant.settings("foreign.db", shards=2), clock=tenant.clock)
    scenario, server = tenant.scenario, tenant.server
    staff = {scenario.person_id(p.key) for p in scenario.people if p.kind == "staff"}
    units = work_units(poller.settings)
    before = other_calendars(poller, units[0], staff)
    assert before.stale == {m for m in staff if not units[0].owns(m)}
    assert before.meeting_ids == frozenset()

    run_worker(poller, once=True, install_signal_handlers=False)
    known = [other_calendars(poller, unit, staff) for unit in units]
    assert [k.stale for k in known] == [frozenset(), frozenset()]
    foreign = [k.meeting_ids for k in known]
    sessions, _ = key_maps(scenario, server)
    by_key = {key: session_id for session_id, key in sessions.items()}
    organizers = {m.key: m.organizer for m in scenario.meetings}

    def shard(meeting: str) -> int:
        return shard_of(scenario.person_id(organizers[meeting]), 2)

    # Meetings on one calendar only (not co-taught, not recurring): their session id is the
    # id a shard without the entry would give their call.
    for meeting in ("maths-16", "science-18", "one-to-one-19"):
        owner = shard(meeting)
        assert by_key[meeting] in foreign[1 - owner], meeting
        assert by_key[meeting] not in foreign[owner], meeting
    # The "Meet now" meeting is on no calendar: nobody leaves it to anyone.
    assert all(by_key["meet-now"] not in ids for ids in foreign)


def _run(count: int, *, lost: bool = False, stop: bool = False) -> UnitRun:
    """A unit run whose database is never reached (the checks come first)."""
    grant = Grant(
        key="poll:t:shard:0of1",
        holder="alice",
        token=1,
        acquired_at=cast(Any, None),
        expires_at=cast(Any, None),
        lost=lost,
    )
    event = threading.Event()
    if stop:
        event.set()
    return UnitRun(
        poller=cast(Poller, None),
        leases=cast(Leases, None),
        heartbeat=cast(Heartbeat, None),
        unit=WorkUnit("t", 0, count),
        grant=grant,
        stop=event,
    )


@pytest.mark.parametrize(
    ("lost", "stop", "message"),
    [
        (True, False, "expired and another worker took it over"),
        (False, True, "the worker was asked to stop"),
    ],
)
def test_a_run_that_lost_its_part_or_is_stopping_claims_nothing(
    lost: bool, stop: bool, message: str
) -> None:
    """Before any claim the run checks its part is still its own and the worker is not
    stopping; otherwise the cycle ends (the run is recorded ``interrupted``)."""
    run = _run(1, lost=lost, stop=stop)
    with pytest.raises(CycleStoppedError, match=message):
        run.claim("mtg_anything", "calendar")


def test_a_whole_tenant_part_is_the_single_pollers_cycle() -> None:
    """With one shard the part reads every mailbox, does the tenant-wide work and keeps the
    single poller's chat checkpoint."""
    part = _run(1).part()
    assert (part.name, part.mailboxes, part.tenant_wide, part.chat_scope) == (
        "whole tenant",
        None,
        True,
        "",
    )
    assert part.patterns_over_store is False
    sharded = replace(_run(2), unit=WorkUnit("t", 1, 2)).part()
    assert (sharded.tenant_wide, sharded.patterns_over_store, sharded.chat_scope) == (
        False,
        True,
        ":shard:1of2",
    )
    assert sharded.mailboxes is not None


@pytest.mark.e2e
@pytest.mark.database
def test_the_daily_purge_runs_in_one_worker_only(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers in turn, the purge due since last night's 02:30: the first runs it under the
    ``purge:`` lease, the second finds it done and does not."""
    ran: list[str] = []
    monkeypatch.setattr(
        work, "daily_purge", lambda poller: ran.append(poller.settings.tenant.tenant_id)
    )
    poller = build_poller(tenant.settings("purge.db", lease_seconds=30), clock=tenant.clock)
    for holder in ("worker-a", "worker-b"):
        run_worker(poller, once=True, holder=holder, install_signal_handlers=False)

    assert ran == [poller.settings.tenant.tenant_id]
    with poller.db() as session:
        lease = session.get(LeaseRow, f"purge:{poller.settings.tenant.tenant_id}")
    assert lease is not None
    assert (lease.holder, lease.done_at is not None) == (None, True)
