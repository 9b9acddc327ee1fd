"""A small school on a live morning, served by the fake tenant over HTTPS, with remote_guard's
change notifications on: the receiver on loopback (HTTPS, with a certificate from the fake's
CA), the worker, the subscription manager, and the poller they hook into.

Nobody is in any meeting yet when a test starts: the test makes people join, write and leave
through :class:`LiveTenant`, after the first poll has stored the sessions and the manager has
subscribed, as it would happen in a school.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.clock import Clock
from remote_guard.fakegraph.harness import (
    demo_notify,
    import_registers,
    key_maps,
    scenario_clock,
    settings_for,
)
from remote_guard.fakegraph.live import LiveTenant, notification_settings, receiver_for
from remote_guard.fakegraph.scenario import Scenario, parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.findings.models import FindingRow
from remote_guard.poll.service import Poller, run_poll
from remote_guard.runtime import build_poller
from remote_guard.settings import NotificationResource
from remote_guard.subscriptions.hub import Notifications, ReceiverServer
from tests import databases

T = TypeVar("T")

NOW = "2026-11-18T10:00:00Z"  # a Wednesday morning in term; London is on GMT
WAIT_SECONDS = 30.0

SCHOOL: dict[str, Any] = {
    "name": "live school",
    "now": NOW,
    "people": [
        {"key": "t.jones", "name": "Mrs Jones", "kind": "staff", "roles": ["teacher"]},
        {"key": "t.patel", "name": "Mr Patel", "kind": "staff", "roles": ["teacher"]},
        {"key": "h.head", "name": "Ms Head", "kind": "staff", "roles": ["slt"]},
        {"key": "it", "name": "Ian Tech", "kind": "staff", "job_title": "IT Technician"},
        *[{"key": f"p{i}", "name": f"Pupil {i}", "kind": "pupil"} for i in range(1, 7)],
    ],
    "groups": [
        {"key": "staff", "name": "All staff", "role": "staff", "members": ["t.jones", "t.patel", "h.head", "it"]},
        {"key": "pupils", "name": "All pupils", "role": "pupils", "members": [f"p{i}" for i in range(1, 7)]},
        {"key": "slt", "name": "SLT", "role": "slt", "members": ["h.head"]},
    ],
    "externals": [{"key": "visitor", "kind": "anonymous", "name": "Mystery Visitor"}],
    "meetings": [
        {
            "key": "lesson",
            "subject": "Year 4 reading",
            "organizer": "t.jones",
            "start": "now-5m",
            "end": "now+40m",
            "invitees": ["p1", "p2", "p3"],
        },
        {
            "key": "group",
            "subject": "Year 5 maths group",
            "organizer": "t.patel",
            "start": "now-2m",
            "end": "now+30m",
            "invitees": ["p4", "p5"],
            "settings": {"allow_meeting_chat": "disabled"},
        },
    ],
}  # fmt: skip


def school(**changes: Any) -> Scenario:
    return parse_scenario({**SCHOOL, **changes}, source="tests/subscriptions/conftest.py")


VALID_REGISTRATION = {
    "key": "reg-p4",
    "teacher": "t.patel",
    "pupil": "p4",
    "activity": "reading",
    "meeting": "group",
    "approved_by": "h.head",
    "approved_at": "now-5d",
    "consent": {"granted_by": "Mrs Four", "granted_at": "now-10d"},
}


class ShiftableClock:
    """Real time from the scenario's "now", which a test can move forward (past a meeting's end)."""

    def __init__(self, base: Clock) -> None:
        self._base = base
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return self._base() + self.offset

    def shift(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@dataclass
class LiveRun:
    scenario: Scenario
    server: FakeTenantServer
    live: LiveTenant
    poller: Poller
    hub: Notifications
    receiver: ReceiverServer
    clock: ShiftableClock

    def session_id(self, meeting_key: str) -> str:
        sessions, _ = key_maps(self.scenario, self.server)
        return next(sid for sid, key in sessions.items() if key == meeting_key)

    def person_id(self, key: str) -> str:
        return self.server.state.identities[key].id

    def setup(self) -> None:
        """The first poll stores the sessions; the manager subscribes to them."""
        result = run_poll(self.poller)
        assert result.status == "ok", result.errors
        synced = self.hub.manager.sync()
        assert synced.errors == [], synced.errors

    def findings(self, rule_id: str, meeting_key: str) -> list[FindingRow]:
        with self.poller.db() as db:
            return list(
                db.scalars(
                    select(FindingRow).where(
                        FindingRow.rule_id == rule_id,
                        FindingRow.session_id == self.session_id(meeting_key),
                    )
                )
            )

    def outcomes(self) -> list[str]:
        """What came of each notification handled so far (from the audit trail), oldest first."""
        with self.poller.db() as db:
            payloads = db.scalars(
                select(AuditEntryRow.payload)
                .where(AuditEntryRow.action == "notification.received")
                .order_by(AuditEntryRow.seq)
            ).all()
        return [json.loads(p)["detail"]["outcome"] for p in payloads if p]

    def handled(self, prefix: str) -> bool:
        return any(outcome.startswith(prefix) for outcome in self.outcomes())


def wait_for(condition: Callable[[], T | None], *, what: str, timeout: float = WAIT_SECONDS) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` if it never
    does within ``timeout`` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def start_live(
    scenario: Scenario,
    tmp_path: Path,
    *,
    notify: bool = False,
    roster_events: bool = True,
    resources: tuple[NotificationResource, ...] = ("call_records", "meeting_chats"),
    database_url: str | None = None,
) -> Iterator[LiveRun]:
    clock = ShiftableClock(scenario_clock(scenario))
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        live = LiveTenant(server)
        # Graph's latency is seconds; the fake's is kept short so the tests are quick.
        live.notifier.delay_seconds = 0.05
        receiver = receiver_for(live)
        settings = settings_for(
            server,
            scenario,
            database_url=database_url or databases.database_url(tmp_path),
            clock=clock,
        )
        update: dict[str, Any] = {
            "notifications": notification_settings(
                receiver, roster_events=roster_events, resources=resources
            )
        }
        if notify:
            update["notify"] = demo_notify(server, scenario)
        settings = settings.model_copy(update=update)
        poller = build_poller(settings, clock=clock)
        import_registers(poller, scenario, server, clock=clock)
        hub = Notifications(poller)
        hub.attach()
        hub.start()
        receiver.start(hub.app())
        try:
            yield LiveRun(scenario, server, live, poller, hub, receiver, clock)
        finally:
            receiver.stop()
            hub.stop()
            live.close()


@pytest.fixture
def running(tmp_path: Path, database_url: str) -> Iterator[LiveRun]:
    yield from start_live(school(), tmp_path, database_url=database_url)
