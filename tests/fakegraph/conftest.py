"""A small known-good tenant served over HTTPS; each test changes one thing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from remote_guard.fakegraph.scenario import Scenario, parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday; London is on GMT

SCENARIO: dict[str, Any] = {
    "name": "fakegraph-tests",
    "now": "2026-11-18T12:00:00Z",
    "people": [
        {"key": "teacher", "name": "Tess Teacher", "kind": "staff", "roles": ["teacher"]},
        {"key": "head", "name": "Hana Head", "kind": "staff", "roles": ["slt"]},
        {"key": "dsl", "name": "Dev Safeguard", "kind": "staff", "roles": ["dsl"]},
        *(
            {"key": f"pupil{n}", "name": f"Pupil {n}", "kind": "pupil"}
            for n in range(1, 8)
        ),
        {"key": "visitor", "name": "Gus Guest", "kind": "guest", "upn": "gus_example.com#EXT#@bramhamshadwell.onmicrosoft.com"},
    ],
    "groups": [
        {"key": "staff", "name": "All Staff", "role": "staff", "members": ["teacher", "head", "dsl"]},
        {"key": "year5", "name": "Year 5", "members": [f"pupil{n}" for n in range(1, 8)]},
        {"key": "pupils", "name": "All Pupils", "role": "pupils", "members": ["year5"]},
        {"key": "slt", "name": "SLT", "role": "slt", "members": ["head"]},
        {"key": "dsl-group", "name": "DSL", "role": "dsl", "members": ["dsl"]},
    ],
    "teams": [
        {
            "key": "y5",
            "name": "Year 5 Class",
            "owners": ["teacher"],
            "members": ["pupil1", "pupil2"],
            "channels": [{"key": "general", "name": "General", "id": "19:y5general@thread.tacv2"}],
        }
    ],
    "externals": [
        {"key": "anon", "kind": "anonymous", "name": "Mystery Visitor"},
        {"key": "partner", "kind": "external", "name": "Pat Partner", "tenant_id": "11111111-2222-3333-4444-555555555555", "email": "pat@partner.example"},
        {"key": "caller", "kind": "phone", "name": "Dial-in", "phone": "+447700900123"},
    ],
    "meetings": [
        {
            "key": "lesson",
            "subject": "Year 5 reading",
            "organizer": "teacher",
            "start": "2026-11-17T10:00:00Z",
            "end": "2026-11-17T11:00:00Z",
            "invitees": ["year5", "parent@gmail.com"],
            "body": "Bring your reading book.",
            "settings": {"lobby_scope": "invited", "allowed_presenters": "organizer"},
            "attendance": [
                {"who": "teacher", "intervals": [["2026-11-17T09:58:00Z", "2026-11-17T11:02:00Z"]]},
                {"who": "pupil1", "intervals": [["2026-11-17T10:01:00Z", "2026-11-17T10:30:00Z"], ["2026-11-17T10:35:00Z", "2026-11-17T11:00:00Z"]]},
                {"who": "anon", "intervals": [["2026-11-17T10:05:00Z", "2026-11-17T10:10:00Z"]]},
                {"who": "partner", "intervals": [["2026-11-17T10:00:00Z", "2026-11-17T10:20:00Z"]]},
                {"who": "caller", "intervals": [["2026-11-17T10:02:00Z", "2026-11-17T10:04:00Z"]]},
            ],
            "chat": [
                {"at": "2026-11-17T10:03:00Z", "sender": "pupil1", "text": "hello miss"},
                {"at": "2026-11-17T11:02:00Z", "sender": "system", "event": "callEnded", "initiator": "teacher"},
            ],
            "recordings": [{"started_by": "teacher", "at": "2026-11-17T10:10:00Z", "end": "2026-11-17T10:40:00Z"}],
        },
        {
            "key": "channel_lesson",
            "subject": "Class assembly",
            "organizer": "teacher",
            "start": "2026-11-17T13:00:00Z",
            "end": "2026-11-17T13:30:00Z",
            "channel": "y5/general",
            "attendance": [
                {"who": "teacher", "intervals": [["2026-11-17T13:00:00Z", "2026-11-17T13:30:00Z"]]},
            ],
            "chat": [{"at": "2026-11-17T13:05:00Z", "sender": "pupil2", "text": "hi"}],
        },
        {
            "key": "zoom",
            "subject": "Zoom catch-up",
            "organizer": "teacher",
            "start": "2026-11-18T15:00:00Z",
            "end": "2026-11-18T15:30:00Z",
            "invitees": ["pupil3"],
            "provider": "unknown",
            "body": "Join at https://zoom.us/j/123456789",
        },
        {
            "key": "later",
            "subject": "Tomorrow's lesson",
            "organizer": "teacher",
            "start": "2026-11-19T10:00:00Z",
            "end": "2026-11-19T11:00:00Z",
            "invitees": ["pupil2"],
        },
    ],
    "calls": [
        {"key": "peer", "caller": "teacher", "callee": "pupil1", "start": "2026-11-17T16:00:00Z", "end": "2026-11-17T16:05:00Z"},
    ],
    "chats": [
        {"key": "dm", "members": ["teacher", "pupil1"], "messages": [{"at": "2026-11-17T16:10:00Z", "sender": "teacher", "text": "well done"}]},
    ],
}  # fmt: skip


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_scenario(**changes: Any) -> Scenario:
    """The test scenario with top-level sections replaced by ``changes``."""
    return parse_scenario({**SCENARIO, **changes}, source="conftest")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def scenario() -> Scenario:
    return make_scenario()


@pytest.fixture
def server(scenario: Scenario, clock: FakeClock, tmp_path: Path) -> Iterator[FakeTenantServer]:
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as running:
        yield running


class Graph:
    """A thin ``requests`` client for tests: an app token and the fake's CA."""

    def __init__(self, server: FakeTenantServer) -> None:
        self.server = server
        # verify goes on every call: requests lets REQUESTS_CA_BUNDLE override Session.verify.
        self.verify = str(server.ca_path)
        self.session = requests.Session()
        self.token = self.new_token()

    def new_token(self) -> str:
        app = self.server.scenario.app
        response = self.session.post(
            f"{self.server.base_url}/{self.server.scenario.tenant.id}/oauth2/v2.0/token",
            data={
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default",
            },
            verify=self.verify,
            timeout=10,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> requests.Response:
        url = path if path.startswith("https://") else f"{self.server.graph_base_url}{path}"
        return self.session.get(
            url,
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
            verify=self.verify,
            timeout=10,
        )

    def post(self, path: str, body: Any) -> requests.Response:
        return self.session.post(
            f"{self.server.graph_base_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=self.verify,
            timeout=10,
        )

    def all_pages(self, path: str, *, headers: dict[str, str] | None = None) -> list[list[Any]]:
        """Every page's ``value``, following the whole nextLink each time."""
        pages = []
        url: str | None = path
        while url is not None:
            response = self.get(url, headers=headers)
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append(body["value"])
            url = body.get("@odata.nextLink")
        return pages


@pytest.fixture
def graph(server: FakeTenantServer) -> Graph:
    return Graph(server)


@pytest.fixture
def start_server(clock: FakeClock, tmp_path: Path) -> Iterator[Any]:
    """Start a server on the test scenario with top-level sections replaced."""
    started: list[FakeTenantServer] = []

    def start(**changes: Any) -> FakeTenantServer:
        running = FakeTenantServer(
            make_scenario(**changes), state_dir=tmp_path / f"tenant{len(started)}", clock=clock
        )
        running.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def graph_for() -> type[Graph]:
    return Graph
