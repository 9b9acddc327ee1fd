"""Delta rounds against the fake tenant: stored links, changes, stale links, failures."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.collect.calendar_store import CalendarStore
from remote_guard.collect.calendar_sync import CalendarSync, SyncReport, sync_window
from remote_guard.collect.collector import foreign_links
from remote_guard.fakegraph.harness import settings_for
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.graph.client import GraphClient
from remote_guard.store.db import make_engine, migrate, session_factory
from tests import databases
from tests.e2e.conftest import school

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)
NEEDED = (NOW - timedelta(hours=36), NOW + timedelta(days=7))

pytestmark = [pytest.mark.e2e, pytest.mark.database]


@dataclass
class Rig:
    server: FakeTenantServer
    graph: GraphClient
    store: CalendarStore
    db: sessionmaker[Session]
    mailboxes: list[str]

    def sync(
        self, *, now: datetime = NOW, needed: tuple[datetime, datetime] = NEEDED
    ) -> SyncReport:
        with ThreadPoolExecutor(max_workers=4) as pool:
            return CalendarSync(
                graph=self.graph,
                store=self.store,
                pool=pool,
                page_size=2,
                body_links=foreign_links,
            ).run(
                self.mailboxes,
                needed=needed,
                fresh_window=sync_window(now, lookback_hours=36, lookahead_days=7),
                syncs=self.store.syncs(self.mailboxes),
                now=now,
            )

    def subjects(self, mailbox: str) -> list[str]:
        return [e.event.subject or "" for e in self.store.events([mailbox])[mailbox]]

    def delta_paths(self, since: int) -> list[str]:
        return [r.path for r in self.server.requests[since:] if "/calendarView/delta" in r.path]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    scenario = school()
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=lambda: NOW) as server:
        settings = settings_for(server, scenario, database_url="sqlite://", clock=lambda: NOW)
        engine = make_engine(databases.database_url(tmp_path))
        migrate(engine)
        db = session_factory(engine)
        mailboxes = sorted(scenario.person_id(k) for k in ("t.jones", "t.patel", "h.head"))
        yield Rig(server, GraphClient(settings.tenant), CalendarStore(db), db, mailboxes)


def test_the_first_round_reads_each_calendar_and_the_next_asks_only_for_changes(rig: Rig) -> None:
    """A fresh round binds the whole-day window; the next one follows the stored delta link,
    one batched request per mailbox, and changes nothing when nothing changed."""
    jones = rig.server.scenario.person_id("t.jones")
    first = rig.sync()
    assert first.errors == {}
    assert sorted(first.full) == rig.mailboxes
    assert rig.subjects(jones) == ["Year 4 reading"]
    window = rig.store.syncs([jones])[jones].window
    assert window == (datetime(2026, 11, 17, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))

    before = len(rig.server.requests)
    second = rig.sync()
    assert (second.errors, second.full, second.changed_events) == ({}, [], 0)
    paths = rig.delta_paths(before)
    assert len(paths) == 3
    assert all("$deltatoken=" in path and "startDateTime" not in path for path in paths)
    assert all(r.in_batch for r in rig.server.requests[before:] if "/calendarView" in r.path)
    assert rig.subjects(jones) == ["Year 4 reading"]


def test_a_changed_meeting_comes_in_the_next_round_and_a_removed_one_goes(rig: Rig) -> None:
    rig.sync()
    jones = rig.server.scenario.person_id("t.jones")
    patel = rig.server.scenario.person_id("t.patel")
    rig.server.state.update_meeting("lesson", subject="Year 4 reading (moved)")
    rig.server.state.remove_meeting("clean")
    report = rig.sync()
    assert report.errors == {}
    assert (report.changed_events, report.removed_events) == (1, 1)
    assert rig.subjects(jones) == ["Year 4 reading (moved)"]
    assert rig.subjects(patel) == []


def test_a_stale_link_resyncs_that_mailbox_alone_and_keeps_its_events(rig: Rig) -> None:
    """Graph forgot one mailbox's sync state (410 syncStateNotFound): that mailbox starts
    afresh within the same round; the others go on from their links."""
    rig.sync()
    jones = rig.server.scenario.person_id("t.jones")
    rig.server.state.inject(
        re.escape(f"/users/{jones}/calendarView/delta?$deltatoken"), 410, count=1
    )
    before = len(rig.server.requests)
    report = rig.sync()
    assert report.errors == {}
    assert (report.stale, report.full) == ([jones], [jones])
    fresh = [p for p in rig.delta_paths(before) if "startDateTime" in p]
    assert len(fresh) == 1
    assert jones in fresh[0]
    assert rig.subjects(jones) == ["Year 4 reading"]


def test_a_round_cut_short_keeps_the_old_link_and_events(rig: Rig) -> None:
    """A page that cannot be read mid-round (503 every time) leaves the mailbox as it was:
    its events are still there, the error is reported, and the next round goes from the old
    link and sees the change."""
    rig.sync()
    jones = rig.server.scenario.person_id("t.jones")
    link = rig.store.syncs([jones])[jones].delta_link
    rig.server.state.update_meeting("lesson", subject="Year 4 reading (moved)")
    rig.server.state.inject(re.escape(f"/users/{jones}/calendarView/delta"), 503, count=50)
    report = rig.sync()
    assert list(report.errors) == [jones]
    assert "503" in report.errors[jones]
    assert rig.store.syncs([jones])[jones].delta_link == link
    assert rig.subjects(jones) == ["Year 4 reading"]
    rig.server.state.fault_plan.clear_injections()
    assert rig.sync().errors == {}
    assert rig.subjects(jones) == ["Year 4 reading (moved)"]


def test_a_window_that_no_longer_holds_the_poll_window_starts_afresh(rig: Rig) -> None:
    """Two days later the stored window ends too early for the look-ahead: every mailbox
    starts a fresh round with a new window."""
    rig.sync()
    later = NOW + timedelta(days=2)
    report = rig.sync(now=later, needed=(later - timedelta(hours=36), later + timedelta(days=7)))
    assert sorted(report.full) == rig.mailboxes
    jones = rig.server.scenario.person_id("t.jones")
    assert rig.store.syncs([jones])[jones].window[1] == datetime(2026, 11, 29, tzinfo=UTC)
