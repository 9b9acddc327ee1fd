"""The roster cache: re-read when old, kept when Microsoft 365 cannot be reached, and an error
only when nothing was ever read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remote_guard.fakegraph.harness import settings_for
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.graph.client import GraphClient
from remote_guard.settings import Settings
from remote_guard.web.people import ROSTER_MAX_AGE, RosterCache, RosterUnavailableError
from tests.fakegraph.conftest import FakeClock
from tests.web.conftest import federation


def _settings(server: FakeTenantServer, clock: FakeClock) -> Settings:
    settings = settings_for(server, server.scenario, database_url="sqlite://", clock=clock)
    # No retries: a refused connection must fail at once, not after back-off.
    tenant = settings.tenant.model_copy(update={"max_retries": 0, "timeout_seconds": 2})
    return settings.model_copy(update={"tenant": tenant})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 18, 12, 0, tzinfo=UTC))


def test_roster_is_kept_while_fresh_and_read_again_when_old(
    tmp_path: Path, clock: FakeClock
) -> None:
    with FakeTenantServer(federation(), state_dir=tmp_path, clock=clock) as server:
        graph = GraphClient(_settings(server, clock).tenant)
        cache = RosterCache(graph, _settings(server, clock), clock)

        first = cache.roster()
        requests_after_first = graph.stats.total
        clock.advance(minutes=5)
        again = cache.roster()
        sign_in = cache.roster(max_age=timedelta(minutes=1))

    assert again is first
    assert graph.stats.total > requests_after_first  # sign-in asked for a roster under a minute old
    assert sign_in is not first
    assert sign_in.staff_ids == first.staff_ids


def test_an_old_roster_serves_while_graph_is_down(tmp_path: Path, clock: FakeClock) -> None:
    server = FakeTenantServer(federation(), state_dir=tmp_path, clock=clock)
    server.start()
    settings = _settings(server, clock)
    cache = RosterCache(GraphClient(settings.tenant), settings, clock)
    first = cache.roster()
    server.stop()
    clock.advance(seconds=ROSTER_MAX_AGE.total_seconds() + 60)

    assert cache.roster() is first
    assert cache.roster(max_age=timedelta(minutes=1)) is first


def test_no_roster_at_all_is_an_error(tmp_path: Path, clock: FakeClock) -> None:
    server = FakeTenantServer(federation(), state_dir=tmp_path, clock=clock)
    server.start()
    settings = _settings(server, clock)
    server.stop()
    cache = RosterCache(GraphClient(settings.tenant), settings, clock)

    with pytest.raises(RosterUnavailableError):
        cache.roster()
