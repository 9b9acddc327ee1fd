"""The DSL pages' test tenant: the web tests' federation plus sessions that give findings, polled
once by the real poller so the queue, the cases and the evidence come from a real poll.

North Primary (t.oak's class): a one-to-one with Amelia K. (no registration: a HIGH breach), a
class session a guest joined, and a session organised by the member of staff whose name is
hostile text, with a hostile subject. South Primary (t.elm's class): a one-to-one with Isla M.
The deputy DSL is in South's groups only; the DSL in both.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.collect.models import SessionRow
from remote_guard.fakegraph.harness import import_registers, scenario_clock
from remote_guard.fakegraph.scenario import Scenario, parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.poll.service import Poller, run_poll
from remote_guard.runtime import build_poller
from tests import databases
from tests.web.conftest import FEDERATION, WebTenant, build_web_tenant

# Markup, both kinds of quote, a right-to-left override and a right-to-left mark.
HOSTILE_SUBJECT = (
    '<script>alert("subject")</script> Year 4 \'catch-up\' "maths" \u202eevil\u202c \u200f'
)


def _attend(who: str, start: str, end: str) -> dict[str, Any]:
    return {"who": who, "intervals": [[start, end]]}


MEETINGS: list[dict[str, Any]] = [
    {
        "key": "oak-1to1",
        "subject": "Reading catch-up with Amelia K.",
        "organizer": "t.oak",
        "start": "2026-11-18T10:00:00Z",
        "end": "2026-11-18T10:20:00Z",
        "invitees": ["p1"],
        "settings": {"allow_meeting_chat": "disabled", "lobby_scope": "invited"},
        "attendance": [
            _attend("t.oak", "2026-11-18T09:59:00Z", "2026-11-18T10:20:00Z"),
            _attend("p1", "2026-11-18T10:00:00Z", "2026-11-18T10:20:00Z"),
        ],
    },
    {
        "key": "oak-class",
        "subject": "Oak Class story time",
        "organizer": "t.oak",
        "start": "2026-11-18T09:00:00Z",
        "end": "2026-11-18T09:30:00Z",
        "invitees": ["p1", "p2"],
        "settings": {"allow_meeting_chat": "enabled", "lobby_scope": "everyone"},
        "attendance": [
            _attend("t.oak", "2026-11-18T08:58:00Z", "2026-11-18T09:30:00Z"),
            _attend("p1", "2026-11-18T09:00:00Z", "2026-11-18T09:30:00Z"),
            _attend("p2", "2026-11-18T09:01:00Z", "2026-11-18T09:29:00Z"),
            _attend("visitor", "2026-11-18T09:10:00Z", "2026-11-18T09:20:00Z"),
        ],
        "chat": [{"sender": "p2", "at": "2026-11-18T09:05:00Z", "text": "hello miss"}],
    },
    {
        "key": "hostile",
        "subject": HOSTILE_SUBJECT,
        "organizer": "hostile",
        "start": "2026-11-18T08:00:00Z",
        "end": "2026-11-18T08:20:00Z",
        "invitees": ["p2"],
        "settings": {"allow_meeting_chat": "disabled", "lobby_scope": "invited"},
        "attendance": [
            _attend("hostile", "2026-11-18T07:59:00Z", "2026-11-18T08:20:00Z"),
            _attend("p2", "2026-11-18T08:00:00Z", "2026-11-18T08:20:00Z"),
        ],
    },
    {
        "key": "elm-1to1",
        "subject": "Elm maths",
        "organizer": "t.elm",
        "start": "2026-11-18T11:00:00Z",
        "end": "2026-11-18T11:20:00Z",
        "invitees": ["p3"],
        "settings": {"allow_meeting_chat": "disabled", "lobby_scope": "invited"},
        "attendance": [
            _attend("t.elm", "2026-11-18T10:59:00Z", "2026-11-18T11:20:00Z"),
            _attend("p3", "2026-11-18T11:00:00Z", "2026-11-18T11:20:00Z"),
        ],
    },
]


def dsl_scenario() -> Scenario:
    spec = copy.deepcopy(FEDERATION)
    spec["name"] = "web-dsl-tests"
    spec["meetings"] = copy.deepcopy(MEETINGS)
    return parse_scenario(spec, source="tests/web/dsl_support.py")


@dataclass
class DslTenant:
    web: WebTenant
    poller: Poller

    def session_id(self, meeting_key: str) -> str:
        """The stored session of a scenario meeting, found by its subject."""
        subject = next(m["subject"] for m in MEETINGS if m["key"] == meeting_key)
        with self.web.db() as db:
            found = db.scalars(select(SessionRow.id).where(SessionRow.subject == subject)).all()
        assert len(found) == 1, (meeting_key, found)
        return found[0]

    def audit(self, action: str) -> list[AuditEntryRow]:
        with self.web.db() as db:
            return list(
                db.scalars(
                    select(AuditEntryRow)
                    .where(AuditEntryRow.action == action)
                    .order_by(AuditEntryRow.seq)
                )
            )


@contextmanager
def dsl_tenant(
    tmp: Path, *, before_poll: Callable[[FakeTenantServer], None] | None = None, **settings: Any
) -> Iterator[DslTenant]:
    """Serve the scenario, build the web app, and run one poll (``settings`` update sections
    of the poller's settings, e.g. ``notify``; ``before_poll`` may change the tenant first).
    The test database of the folder ``tmp`` is dropped (on PostgreSQL) when the block ends."""
    scenario = dsl_scenario()
    with (
        databases.fresh_database(tmp),
        FakeTenantServer(
            scenario, state_dir=tmp / "tenant", clock=scenario_clock(scenario)
        ) as server,
    ):
        web = build_web_tenant(server, scenario, tmp)
        poll_settings = web.settings.model_copy(update=settings) if settings else web.settings
        poller = build_poller(poll_settings, clock=web.clock)
        import_registers(poller, scenario, server, clock=web.clock)
        if before_poll is not None:
            before_poll(server)
        result = run_poll(poller)
        assert result.status == "ok", result.errors
        yield DslTenant(web=web, poller=poller)
