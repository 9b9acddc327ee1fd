"""Each chaos fault on its own, as the Graph client sees it: a typed ``GraphError`` (after the
retries), or an answer it can use. Never another exception."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_guard.fakegraph.faults import GRAPH_FAULT_KINDS, ChaosRates
from remote_guard.fakegraph.scenario import load_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphAuthError, GraphError
from tests.chaos.harness import chaos_settings, frozen_clock

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "meeting_chat_pupil_posts.yaml"
# What the client must make of each fault when it never stops (every request faulted).
EXPECTED = {
    "throttle": "error",
    "unavailable": "error",
    "gateway_timeout": "error",
    "reset": "error",
    "slow": "error",
    "malformed": "error",
    "missing_field": "answer",  # the client passes the page on; the parsers refuse the item
    "unexpected_field": "answer",
    "duplicate": "answer",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeTenantServer]:
    scenario = load_scenario(SCENARIO)
    folder = tmp_path_factory.mktemp("faults")
    with FakeTenantServer(
        scenario, state_dir=folder / "tenant", clock=frozen_clock(scenario.reference_now())
    ) as running:
        yield running


def _client(server: FakeTenantServer) -> GraphClient:
    clock = frozen_clock(server.scenario.reference_now())
    settings = chaos_settings(server, server.scenario, database_url="sqlite://", clock=clock)
    return GraphClient(settings.tenant)


def test_every_kind_has_an_expectation() -> None:
    assert set(EXPECTED) == set(GRAPH_FAULT_KINDS)


@pytest.mark.e2e
@pytest.mark.parametrize("kind", GRAPH_FAULT_KINDS)
def test_a_fault_on_every_request_is_a_typed_error_or_a_usable_answer(
    server: FakeTenantServer, kind: str
) -> None:
    graph = _client(server)
    graph.tokens.token()  # a token first: this test is about Graph answers
    group = server.scenario.group_id("staff")
    server.state.chaos.start(
        ChaosRates(**{kind: 1.0}, storm_length=1, retry_after_seconds=0.0, slow_seconds=0.6),
        seed=1,
    )
    try:
        error: GraphError | None = None
        pages = []
        try:
            pages = list(graph.iter_pages(f"/groups/{group}/transitiveMembers"))
        except GraphError as exc:
            error = exc
    finally:
        server.state.chaos.stop(server.state)
    outcome = "answer" if error is None else "error"
    assert outcome == EXPECTED[kind]
    assert server.state.chaos.counts[kind] >= 1
    if error is not None:
        assert error.retryable, error
        # Retried up to the limit (three retries here), then given up.
        assert graph.stats.retries >= 3
    else:
        assert pages


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["unavailable", "server_error", "reset", "slow", "malformed"])
def test_a_token_endpoint_failure_is_a_retryable_auth_error(
    server: FakeTenantServer, kind: str
) -> None:
    from remote_guard.fakegraph.faults import ChaosFault

    graph = _client(server)
    chaos = server.state.chaos
    chaos.start(ChaosRates(token_failure=1.0, slow_seconds=0.6), seed=1)
    status = {"unavailable": 503, "server_error": 500}.get(kind, 0)
    # Every identity request gets this one fault.
    chaos.draw_token = lambda: ChaosFault(kind, status)  # type: ignore[method-assign]
    try:
        with pytest.raises(GraphAuthError) as caught:
            graph.tokens.token()
    finally:
        chaos.stop(server.state)
        del chaos.draw_token
    assert caught.value.retryable
