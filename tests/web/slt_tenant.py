"""A federation with sessions and registrations for SLT's pages: the web tests' federation plus
an SLT member at South, live and upcoming meetings and one-to-ones waiting for approval, polled
once by the real service so the store holds real snapshots and findings.

North (Hana Head, SLT) has:
- ``oak-live``: Olive Oak's lesson on now with Amelia K. and Noah B. (board: live, 2 pupils).
- ``oak-1to1-soon``: Olive Oak's one-to-one with Amelia in two hours, registered (pending, with
  the mother's consent): the one-to-one rule flags it until SLT approve it.
- ``oak-1to1-past``: a one-to-one Olive held with Noah this morning, unregistered: the rule
  fails it; a one-to-one session for coverage.
- ``hostile-upcoming``: a lesson by the supply teacher whose name is hostile text, with a
  hostile subject, in four hours.
South (Sol Southgate, SLT) has ``elm-live``: Ellis Elm's lesson on now with Isla M.

Registrations waiting: Amelia's reading (approvable), Isla's reading (South), Noah's
"Knitting club" (not an approved activity) and one Hana Head runs herself.
The term is configured as 2 Nov to 18 Dec 2026 (one half-term; "now" is 18 Nov).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from remote_guard.collect.models import SessionRow
from remote_guard.fakegraph.harness import import_registers, key_maps, scenario_clock
from remote_guard.fakegraph.scenario import parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.findings.models import FindingRow
from remote_guard.poll.service import PollResult, run_poll
from remote_guard.runtime import build_poller
from tests import databases
from tests.web.conftest import FEDERATION, WebTenant, build_web_tenant

HOSTILE_SUBJECT = '<script>alert("board")</script> Year 3 "Oak" & O\'Neill \u202etxet'
HOSTILE_NOTE = '<img src=x onerror=alert(1)> "quoted" \u202eevil ' + "long " * 300

_LESSON = {"allow_meeting_chat": "disabled", "lobby_scope": "organization"}
_ONE_TO_ONE = {"allow_meeting_chat": "disabled", "lobby_scope": "invited"}


def _consent(name: str, ref: str) -> dict[str, Any]:
    return {
        "granted_by": name,
        "relationship": "mother",
        "granted_at": "now-14d",
        "method": "signed_form",
        "evidence_ref": ref,
    }


def _scenario() -> dict[str, Any]:
    data = copy.deepcopy(FEDERATION)
    data["name"] = "web-slt"
    data["people"].append(
        {"key": "head.s", "name": "Sol Southgate", "kind": "staff", "roles": ["slt"]}
    )
    for group in data["groups"]:
        if group["key"] in ("staff", "slt", "south"):
            group["members"].append("head.s")
    data["school_day"] = {"terms": [{"start": "2026-11-02", "end": "2026-12-18"}]}
    data["meetings"] = [
        {
            "key": "oak-live",
            "subject": "Oak Class maths",
            "organizer": "t.oak",
            "start": "now-10m",
            "end": "now+30m",
            "invitees": ["p1", "p2"],
            "settings": _LESSON,
        },
        {
            "key": "oak-1to1-soon",
            "subject": "Reading with Amelia",
            "organizer": "t.oak",
            "start": "now+2h",
            "end": "now+140m",
            "invitees": ["p1"],
            "settings": _ONE_TO_ONE,
        },
        {
            "key": "oak-1to1-past",
            "subject": "Maths catch-up with Noah",
            "organizer": "t.oak",
            "start": "now-3h",
            "end": "now-160m",
            "invitees": ["p2"],
            "settings": _ONE_TO_ONE,
            "attendance": [
                {"who": "t.oak", "intervals": [["now-3h", "now-160m"]]},
                {"who": "p2", "intervals": [["now-3h", "now-160m"]]},
            ],
        },
        {
            "key": "hostile-upcoming",
            "subject": HOSTILE_SUBJECT,
            "organizer": "hostile",
            "start": "now+4h",
            "end": "now+5h",
            "invitees": ["p1", "p2"],
            "settings": _LESSON,
        },
        {
            "key": "elm-live",
            "subject": "Elm Class science",
            "organizer": "t.elm",
            "start": "now-5m",
            "end": "now+40m",
            "invitees": ["p3"],
            "settings": _LESSON,
        },
    ]
    data["registrations"] = [
        {
            "key": "amelia",
            "teacher": "t.oak",
            "pupil": "p1",
            "activity": "reading",
            "meeting": "oak-1to1-soon",
            "status": "pending",
            "consent": _consent("Kate K.", "Form OTO-3"),
        },
        {
            "key": "isla",
            "teacher": "t.elm",
            "pupil": "p3",
            "activity": "reading",
            "starts_at": "now+1d",
            "ends_at": "now+2d",
            "status": "pending",
            "consent": _consent("Mia M.", "Form OTO-9"),
        },
        {
            "key": "knitting",
            "teacher": "t.oak",
            "pupil": "p2",
            "activity": "Knitting club",
            "starts_at": "now+1d",
            "ends_at": "now+2d",
            "status": "pending",
            "consent": _consent("Sarah B.", "Form OTO-4"),
        },
        {
            "key": "heads-own",
            "teacher": "head",
            "pupil": "p2",
            "activity": "reading",
            "starts_at": "now+3d",
            "ends_at": "now+4d",
            "status": "pending",
            "consent": _consent("Sarah B.", "Form OTO-5"),
        },
    ]
    return data


SLT_SCENARIO = _scenario()


@dataclass
class SltTenant:
    """The polled federation, its web app, and the session ids of its meetings."""

    web: WebTenant
    server: FakeTenantServer
    poll: PollResult
    sessions: dict[str, str]  # meeting key -> session id

    def person_id(self, key: str) -> str:
        return self.web.person_id(key)

    def one_to_one_status(self, meeting: str, pupil: str) -> str:
        with self.web.db() as db:
            rows = list(
                db.scalars(
                    select(FindingRow).where(
                        FindingRow.session_id == self.sessions[meeting],
                        FindingRow.rule_id == "one_to_one_without_consent",
                        FindingRow.subject_key == self.person_id(pupil),
                    )
                )
            )
        assert len(rows) == 1, [(row.subject_key, row.status) for row in rows]
        return rows[0].status

    def session(self, meeting: str) -> SessionRow:
        with self.web.db() as db:
            row = db.get(SessionRow, self.sessions[meeting])
        assert row is not None
        return row


def build_slt_tenant(server: FakeTenantServer, tmp: Path) -> SltTenant:
    scenario = server.scenario
    web = build_web_tenant(server, scenario, tmp)
    poller = build_poller(web.settings, clock=web.clock)
    import_registers(poller, scenario, server, clock=web.clock)
    result = run_poll(poller)
    sessions, _ = key_maps(scenario, server)
    return SltTenant(web, server, result, {key: sid for sid, key in sessions.items()})


@pytest.fixture(scope="module")
def slt_tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SltTenant]:
    """The federation with sessions, polled once (one per test module)."""
    tmp = tmp_path_factory.mktemp("web-slt")
    scenario = parse_scenario(SLT_SCENARIO, source="tests/web/slt_tenant.py")
    with (
        databases.fresh_database(tmp),
        FakeTenantServer(
            scenario, state_dir=tmp / "tenant", clock=scenario_clock(scenario)
        ) as server,
    ):
        yield build_slt_tenant(server, tmp)
