"""Reads fetched ahead in $batch are served exactly as the client would have served them."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from remote_guard.collect.batched import BatchedReader, Read
from remote_guard.fakegraph.harness import settings_for
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphNotFoundError
from tests.e2e.conftest import school

NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeTenantServer]:
    with FakeTenantServer(school(), state_dir=tmp_path / "tenant", clock=lambda: NOW) as running:
        yield running


def _client(server: FakeTenantServer) -> GraphClient:
    return GraphClient(
        settings_for(server, server.scenario, database_url="sqlite://", clock=lambda: NOW).tenant
    )


def test_fetched_pages_are_the_pages_the_client_reads(server: FakeTenantServer) -> None:
    """Every page of a paged collection (the fake pages by 5) is fetched in batches, and
    reading it through the reader then takes no request at all."""
    group = server.scenario.group_id("pupils")
    path = f"/groups/{group}/transitiveMembers"
    params = {"$select": "id,displayName"}
    direct = [item["id"] for item in _client(server).iter_items(path, params=params)]
    graph = _client(server)
    with ThreadPoolExecutor(max_workers=4) as pool:
        reader = BatchedReader(graph, pool=pool)
        reader.prefetch([Read(path, params, all_pages=True)])
        sent = graph.stats.total
        served = [item["id"] for item in reader.iter_items(path, params=params)]
    assert served == direct
    assert len(direct) == 12
    assert graph.stats.total == sent
    assert reader.served == 3  # 12 members, 5 a page
    assert graph.stats.batched["/groups/{id}/transitiveMembers"] == 3


def test_a_failed_item_raises_the_error_a_direct_read_raises(server: FakeTenantServer) -> None:
    graph = _client(server)
    with ThreadPoolExecutor(max_workers=2) as pool:
        reader = BatchedReader(graph, pool=pool)
        reader.prefetch([Read("/users/00000000-0000-0000-0000-000000000000")])
        with pytest.raises(GraphNotFoundError) as batched:
            reader.get("/users/00000000-0000-0000-0000-000000000000")
    with pytest.raises(GraphNotFoundError) as direct:
        graph.get("/users/00000000-0000-0000-0000-000000000000")
    assert (batched.value.status, batched.value.code) == (direct.value.status, direct.value.code)


def test_a_read_not_fetched_ahead_goes_to_the_client(server: FakeTenantServer) -> None:
    graph = _client(server)
    reader = BatchedReader(graph, pool=None)
    user = server.scenario.person_id("t.jones")
    assert reader.get(f"/users/{user}")["id"] == user
    assert (reader.served, graph.stats.requests["/users/{id}"]) == (0, 1)


def test_a_throttled_item_is_retried_alone_after_its_retry_after(server: FakeTenantServer) -> None:
    """Graph throttles items of a batch one by one: the throttled one is sent again after its
    own Retry-After, the others are not."""
    graph = _client(server)
    users = [server.scenario.person_id(key) for key in ("t.jones", "t.patel", "h.head")]
    server.state.inject(f"/users/{users[1]}$", 429, count=1, retry_after=0.05)
    with ThreadPoolExecutor(max_workers=2) as pool:
        reader = BatchedReader(graph, pool=pool)
        reader.prefetch([Read(f"/users/{user}") for user in users])
        assert [reader.get(f"/users/{user}")["id"] for user in users] == users
    items = [r for r in server.requests if r.in_batch]
    assert [r.status for r in items if users[1] in r.path] == [429, 200]
    assert len(items) == 4
    assert graph.stats.throttled["/users/{id}"] == 1
