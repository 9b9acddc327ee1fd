"""Operations endpoints: /healthz, /readyz and /metrics in the web app and beside the poller,
and the request and poll-run ids in the structured logs."""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from remote_guard.fakegraph.harness import scenario_clock
from remote_guard.fakegraph.scenario import load_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.graph.client import GraphClient
from remote_guard.logs import configure_logging
from remote_guard.ops.health import TokenProbe
from remote_guard.ops.metrics import metrics_allowed
from remote_guard.ops.server import HealthServer
from remote_guard.poll.models import PollRunRow
from remote_guard.poll.service import run_poll
from remote_guard.runtime import build_poller
from remote_guard.settings import LoggingSettings, OpsSettings
from remote_guard.store.db import transaction
from remote_guard.web.app import create_app
from tests import databases
from tests.web.conftest import WebTenant, build_web_tenant, federation

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios"
TOKEN = "metrics-token-0123456789abcdef0123456789"
# One line of the Prometheus text format: a comment, or a sample with optional labels.
SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
    r"(-?[0-9.e+]+|\+Inf|-Inf|NaN)$"
)
COMMENT = re.compile(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$")


@dataclass
class Ops:
    tenant: WebTenant
    app: FastAPI

    def client(self) -> TestClient:
        return TestClient(self.app, base_url=self.tenant.settings.web.base_url)


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeTenantServer]:
    scenario = federation()
    with FakeTenantServer(
        scenario, state_dir=tmp_path / "tenant", clock=scenario_clock(scenario)
    ) as running:
        yield running


@pytest.fixture
def ops(server: FakeTenantServer, tmp_path: Path, database_url: str) -> Ops:
    """The web app with a metrics token set."""
    tenant = build_web_tenant(server, server.scenario, tmp_path, database_url=database_url)
    settings = tenant.settings.model_copy(
        update={"ops": OpsSettings(metrics_token=SecretStr(TOKEN))}
    )
    app = create_app(settings, tenant.db, GraphClient(settings.tenant), tenant.clock)
    return Ops(tenant, app)


def add_run(ops: Ops, *, status: str, finished: datetime | None, errors: list[str]) -> None:
    now = ops.tenant.clock()
    with transaction(ops.tenant.db) as session:
        session.add(
            PollRunRow(
                # A run id is a UUID (36 characters), which PostgreSQL holds the column to.
                id=str(uuid.uuid4()),
                tenant_id=ops.tenant.settings.tenant.tenant_id,
                started_at=(finished or now) - timedelta(seconds=3),
                finished_at=finished,
                status=status,
                counts={},
                errors=errors,
                graph={},
            )
        )


def assert_prometheus_text(text: str) -> None:
    assert text.endswith("\n")
    for line in text.splitlines():
        assert COMMENT.match(line) or SAMPLE.match(line), line


# --- /healthz and /readyz ------------------------------------------------------------------------


def test_healthz_answers_without_a_database(ops: Ops) -> None:
    """Liveness touches neither the database nor Graph: it answers with both gone."""
    broken = sessionmaker(create_engine("sqlite:////nonexistent/folder/rg.db"))
    settings = ops.tenant.settings
    app = create_app(settings, broken, GraphClient(settings.tenant), ops.tenant.clock)
    with TestClient(app, base_url=settings.web.base_url) as client:
        alive = client.get("/healthz")
        ready = client.get("/readyz")

    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] is False
    assert "OperationalError" in checks["database"]["detail"]
    assert "nonexistent" not in json.dumps(ready.json()), "the URL is not shown"


def test_not_ready_before_the_first_poll_then_ready(ops: Ops) -> None:
    with ops.client() as client:
        before = client.get("/readyz")
        add_run(ops, status="ok", finished=ops.tenant.clock(), errors=[])
        after = client.get("/readyz")

    assert before.status_code == 503
    assert before.json()["checks"]["poll"] == {"ok": False, "detail": "no poll has finished yet"}
    assert before.json()["checks"]["database"]["ok"] is True
    assert before.json()["checks"]["token"] == {"ok": True, "detail": "a Graph token was obtained"}
    assert after.status_code == 200
    assert after.json()["status"] == "ready"


def test_a_poll_older_than_three_intervals_is_not_ready_and_says_why(ops: Ops) -> None:
    """Interval 300 s: a poll 16 minutes ago is stale; a failed run since then is named."""
    now = ops.tenant.clock()
    add_run(ops, status="ok", finished=now - timedelta(minutes=16), errors=[])
    add_run(ops, status="failed", finished=now - timedelta(minutes=1), errors=["directory: 503"])
    with ops.client() as client:
        answer = client.get("/readyz")

    assert answer.status_code == 503
    detail = answer.json()["checks"]["poll"]["detail"]
    assert "16 min ago: more than 3 poll intervals (300 s each)" in detail
    assert "the latest run failed: directory: 503" in detail


def test_the_token_is_asked_for_at_most_once_a_minute(server: FakeTenantServer) -> None:
    """While Entra refuses, a probe every second reaches it once a minute, not every time."""
    from remote_guard.fakegraph.harness import settings_for

    moments = [server.state.now()]
    settings = settings_for(
        server, server.scenario, database_url="sqlite://", clock=lambda: moments[0]
    )
    graph = GraphClient(settings.tenant)
    probe = TokenProbe(graph.tokens, clock=lambda: moments[0])
    server.state.inject(r"/oauth2/v2\.0/token", 400, count=1000)

    def token_requests() -> int:
        return sum("/oauth2/v2.0/token" in r.path for r in server.requests)

    results = []
    for _ in range(5):
        results.append(probe.check())
        moments[0] += timedelta(seconds=1)
    asked_in_a_minute = token_requests()
    moments[0] += timedelta(seconds=60)
    results.append(probe.check())

    assert [r.ok for r in results] == [False] * 6
    assert results[0].detail.startswith("no Graph token:")
    assert probe.asked == 2
    assert asked_in_a_minute == 1
    # MSAL may answer the second ask from its own cache of the refusal.
    assert token_requests() <= 2


# --- /metrics ------------------------------------------------------------------------------------


def test_metrics_need_the_bearer_token(ops: Ops) -> None:
    with ops.client() as client:
        none = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer " + "x" * len(TOKEN)})
        basic = client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        right = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert [none.status_code, wrong.status_code, basic.status_code] == [403, 403, 403]
    assert right.status_code == 200
    assert right.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert_prometheus_text(right.text)


def test_without_a_token_only_this_machine_may_read_metrics() -> None:
    assert metrics_allowed(authorization=None, client_host="127.0.0.1", token=None)
    assert metrics_allowed(authorization=None, client_host="::1", token=None)
    assert not metrics_allowed(authorization=None, client_host="10.0.0.7", token=None)
    assert not metrics_allowed(authorization=None, client_host=None, token=None)
    # With a token set, being local is not enough.
    assert not metrics_allowed(authorization=None, client_host="127.0.0.1", token=SecretStr(TOKEN))


@pytest.mark.database
def test_metrics_count_polls_findings_and_graph_requests(tmp_path: Path) -> None:
    """After a poll: runs by status, its duration, findings by rule and status, and the
    poller's Graph requests by endpoint, served beside the poller (no token: loopback)."""
    from remote_guard.fakegraph.harness import settings_for

    scenario = load_scenario(LIBRARY / "meeting_chat_pupil_posts.yaml")
    clock = scenario_clock(scenario)
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        settings = settings_for(
            server, scenario, database_url=databases.database_url(tmp_path, "p"), clock=clock
        )
        poller = build_poller(settings, clock=clock)
        before, result, after, text, alive, other = _poll_beside_health_server(poller, clock)

    assert before.status_code == 503
    assert before.json()["checks"]["poll"]["detail"].startswith(
        "no poll has finished since start-up at "
    )
    assert result.status == "ok"
    assert after.status_code == 200
    assert alive.json() == {"status": "ok"}
    assert other.status_code == 404
    assert_prometheus_text(text)
    assert 'remote_guard_poll_runs{status="ok"} 1' in text
    assert re.search(r"^remote_guard_poll_duration_seconds_count [1-9]", text, re.M)
    assert 'remote_guard_poll_duration_seconds_bucket{le="+Inf"}' in text
    assert re.search(
        r'^remote_guard_graph_requests_total\{client="poller",endpoint="/groups/\{id\}/'
        r'transitiveMembers"\} [1-9]',
        text,
        re.M,
    )
    # The scenario's truth: Oliver posted in the chat (pupil_meeting_chat warns: a SHOULD).
    assert re.search(
        r'^remote_guard_findings\{rule="pupil_meeting_chat",status="warn"\} 1$', text, re.M
    )
    assert "remote_guard_database_up 1" in text


def _poll_beside_health_server(poller: Any, clock: Any) -> tuple[Any, ...]:
    health = HealthServer(poller, host="127.0.0.1", port=0, since=clock())
    health.start()
    try:
        base = f"http://127.0.0.1:{health.port}"
        before = requests.get(f"{base}/readyz", timeout=10)
        result = run_poll(poller)
        after = requests.get(f"{base}/readyz", timeout=10)
        text = requests.get(f"{base}/metrics", timeout=10).text
        alive = requests.get(f"{base}/healthz", timeout=10)
        other = requests.get(f"{base}/admin", timeout=10)
    finally:
        health.stop()
    return before, result, after, text, alive, other


@pytest.mark.database
def test_the_health_port_is_refused_when_taken(server: FakeTenantServer, tmp_path: Path) -> None:
    from remote_guard.cli import UsageError, _poll
    from remote_guard.fakegraph.harness import settings_for

    clock = scenario_clock(server.scenario)
    settings = settings_for(
        server, server.scenario, database_url=databases.database_url(tmp_path, "p"), clock=clock
    )
    poller = build_poller(settings, clock=clock)
    taken = HealthServer(poller, host="127.0.0.1", port=0, since=clock())
    try:
        with pytest.raises(UsageError, match=f"--health-port {taken.port}: cannot listen"):
            _poll(settings, once=True, health=("127.0.0.1", taken.port))
    finally:
        taken.stop()


# --- ids in the logs -----------------------------------------------------------------------------


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


@pytest.mark.database
def test_every_log_line_of_a_poll_carries_its_run_id(
    server: FakeTenantServer, tmp_path: Path
) -> None:
    from remote_guard.fakegraph.harness import settings_for

    clock = scenario_clock(server.scenario)
    settings = settings_for(
        server, server.scenario, database_url=databases.database_url(tmp_path, "p"), clock=clock
    )
    poller = build_poller(settings, clock=clock)
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="debug", format="json"), stream=stream)
    try:
        result = run_poll(poller)
    finally:
        configure_logging(LoggingSettings(level="warning"))

    # The fake tenant's own server lines (uvicorn, in its thread) are not the poller's.
    lines = [
        line
        for line in _json_lines(stream)
        if not str(line.get("logger", "")).startswith("uvicorn")
    ]
    assert any(line["event"] == "graph.request" for line in lines)
    assert [line for line in lines if line.get("poll_run_id") != result.run_id] == []


def test_a_web_log_line_carries_the_request_id(ops: Ops) -> None:
    """A line logged deep inside a request (the CSRF refusal) names the request's id, the one
    the answer's X-Request-Id header gives."""
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="info", format="json"), stream=stream)
    try:
        with ops.client() as client:
            answer = client.post("/sign-out")
    finally:
        configure_logging(LoggingSettings(level="warning"))

    assert answer.status_code == 403
    refused = [line for line in _json_lines(stream) if line["event"] == "web.csrf_refused"]
    assert [line["request_id"] for line in refused] == [answer.headers["x-request-id"]]
