"""A small school scenario served over HTTPS, and a poller built from settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_guard.fakegraph.harness import import_registers, scenario_clock, settings_for
from remote_guard.fakegraph.scenario import Scenario, parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.poll.service import Poller
from remote_guard.runtime import build_poller
from tests import databases

SCHOOL = {
    "name": "e2e school",
    "now": "2026-11-18T16:00:00Z",
    "people": [
        {"key": "t.jones", "name": "Mrs Jones", "kind": "staff", "roles": ["teacher"]},
        {"key": "t.patel", "name": "Mr Patel", "kind": "staff", "roles": ["teacher"]},
        {"key": "h.head", "name": "Ms Head", "kind": "staff", "roles": ["slt"]},
        *[{"key": f"p{i}", "name": f"Pupil {i}", "kind": "pupil"} for i in range(1, 13)],
    ],
    "groups": [
        {
            "key": "staff",
            "name": "All staff",
            "role": "staff",
            "members": ["t.jones", "t.patel", "h.head"],
        },
        {
            "key": "pupils",
            "name": "All pupils",
            "role": "pupils",
            "members": [f"p{i}" for i in range(1, 13)],
        },
        {"key": "slt", "name": "SLT", "role": "slt", "members": ["h.head"]},
    ],
    "meetings": [
        {
            "key": "lesson",
            "subject": "Year 4 reading",
            "organizer": "t.jones",
            "start": "2026-11-18T10:00:00Z",
            "end": "2026-11-18T10:30:00Z",
            "invitees": ["p1", "p2", "p3"],
            "attendance": [
                {"who": "t.jones", "intervals": [["2026-11-18T10:00:00Z", "2026-11-18T10:36:00Z"]]},
                {"who": "p1", "intervals": [["2026-11-18T10:00:00Z", "2026-11-18T10:36:00Z"]]},
                {"who": "p2", "intervals": [["2026-11-18T10:00:00Z", "2026-11-18T10:30:00Z"]]},
            ],
            "chat": [
                {"at": "2026-11-18T10:00:00Z", "sender": "system", "event": "callStarted"},
                {"at": "2026-11-18T10:05:00Z", "sender": "t.jones", "text": "Open page 12"},
                {"at": "2026-11-18T10:06:00Z", "sender": "p2", "text": "hi miss"},
                {"at": "2026-11-18T10:36:00Z", "sender": "system", "event": "callEnded"},
            ],
        },
        {
            "key": "clean",
            "subject": "Year 5 maths",
            "organizer": "t.patel",
            "start": "2026-11-18T11:00:00Z",
            "end": "2026-11-18T11:30:00Z",
            "invitees": ["p4", "p5"],
            "settings": {"allow_meeting_chat": "disabled"},
            "attendance": [
                {"who": "t.patel", "intervals": [["2026-11-18T11:00:00Z", "2026-11-18T11:30:00Z"]]},
                {"who": "p4", "intervals": [["2026-11-18T11:00:00Z", "2026-11-18T11:30:00Z"]]},
                {"who": "p5", "intervals": [["2026-11-18T11:00:00Z", "2026-11-18T11:30:00Z"]]},
            ],
            "chat": [{"at": "2026-11-18T11:05:00Z", "sender": "t.patel", "text": "Well done"}],
        },
    ],
    "expect": [
        {"rule": "pupil_meeting_chat", "session": "lesson", "subject": "p2"},
        {"rule": "one_to_one_without_consent", "session": "lesson", "subject": "p1"},
        {"rule": "meeting_chat_open_to_pupils", "session": "lesson"},
    ],
}


def school(**changes: object) -> Scenario:
    data = {**SCHOOL, **changes}
    return parse_scenario(data, source="e2e school")


class Running:
    def __init__(self, server: FakeTenantServer, poller: Poller, scenario: Scenario) -> None:
        self.server = server
        self.poller = poller
        self.scenario = scenario


def start(
    scenario: Scenario, tmp_path: Path, *, database_url: str | None = None
) -> Iterator[Running]:
    clock = scenario_clock(scenario)
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        settings = settings_for(
            server,
            scenario,
            database_url=database_url or databases.database_url(tmp_path),
            clock=clock,
        )
        # The trail's JSON-lines copy where SQLite keeps it by default, named so PostgreSQL has
        # one too.
        audit = settings.audit.model_copy(update={"file": tmp_path / "rg.audit.jsonl"})
        settings = settings.model_copy(update={"audit": audit})
        poller = build_poller(settings, clock=clock)
        import_registers(poller, scenario, server, clock=clock)
        yield Running(server, poller, scenario)


@pytest.fixture
def running(tmp_path: Path, database_url: str) -> Iterator[Running]:
    yield from start(school(), tmp_path, database_url=database_url)
