"""A federation with sessions for the teacher's pages: the web tests' federation plus meetings,
a registered one-to-one and an exemption, polled once by the real service so the store holds
real snapshots and findings.

Olive Oak (t.oak, North) organises:
- ``oak-1to1-soon``: a one-to-one with Amelia K. (p1) in two hours, not registered: the
  one-to-one rule flags it before the session (BSF-A.staff-remote.3/4).
- ``oak-1to1-tomorrow``: a one-to-one with Noah B. (p2) tomorrow, registered, approved and with
  consent: covered (pass) until the consent is withdrawn.
- ``oak-lesson-yesterday``: a lesson with both pupils, chat on, Noah posting: the meeting-chat
  rules flag it; its subject is hostile text (markup, quotes, a right-to-left override).
- ``oak-lesson-live``: a lesson on now, chat on, with an exemption for the chat-settings rule.
- ``oak-planning``: a staff meeting tomorrow with Asha Ash: nothing to find.
Ellis Elm (t.elm, South) organises ``elm-1to1-soon`` with Isla M. (p3), not registered.
Asha Ash (t.ash, North) teaches Ash Class (Leo P., p4) and organises nothing.
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
from remote_guard.consent.models import RegistrationRow
from remote_guard.consent.registers import ApprovalStatus
from remote_guard.fakegraph.harness import import_registers, key_maps, scenario_clock
from remote_guard.fakegraph.scenario import parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.findings.models import FindingRow
from remote_guard.poll.service import PollResult, run_poll
from remote_guard.runtime import build_poller
from remote_guard.store.db import transaction
from tests import databases
from tests.web.conftest import FEDERATION, WebTenant, build_web_tenant

HOSTILE_SUBJECT = '<script>alert("lesson")</script> Year 3 "Oak" & O\'Neill \u202etxet'
HOSTILE_NOTE = '<img src=x onerror=alert(1)> "quoted" \u202eevil ' + "long " * 50

_LESSON = {"allow_meeting_chat": "enabled", "lobby_scope": "organization"}
_ONE_TO_ONE = {"allow_meeting_chat": "disabled", "lobby_scope": "invited"}

_BASE = copy.deepcopy(FEDERATION)
# Another teacher at North, with a class of their own: "another teacher" in the access matrix.
_BASE["people"] += [
    {"key": "t.ash", "name": "Asha Ash", "kind": "staff", "job_title": "Year 5 Teacher"},
    {"key": "p4", "name": "Leo P.", "kind": "pupil"},
]
for _group in _BASE["groups"]:
    if _group["key"] in ("staff", "north"):
        _group["members"] += ["t.ash"]
    if _group["key"] in ("pupils", "north"):
        _group["members"] += ["p4"]
_BASE["teams"] += [
    {"key": "ash-class", "name": "Ash Class", "owners": ["t.ash"], "members": ["p4"]}
]

TEACHER_SCENARIO: dict[str, Any] = {
    **_BASE,
    "name": "web-teacher",
    "meetings": [
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
            "key": "oak-1to1-tomorrow",
            "subject": "Reading with Noah",
            "organizer": "t.oak",
            "start": "now+1d",
            "end": "now+1460m",
            "invitees": ["p2"],
            "settings": _ONE_TO_ONE,
        },
        {
            # An hour-long lesson yesterday: the teacher and both pupils there, Noah chats.
            "key": "oak-lesson-yesterday",
            "subject": HOSTILE_SUBJECT,
            "organizer": "t.oak",
            "start": "now-24h",
            "end": "now-23h",
            "invitees": ["p1", "p2"],
            "settings": _LESSON,
            "attendance": [
                {"who": who, "intervals": [["now-24h", "now-23h"]]} for who in ("t.oak", "p1", "p2")
            ],
            "chat": [{"at": "now-1430m", "sender": "p2", "text": "hello miss"}],
        },
        {
            "key": "oak-lesson-live",
            "subject": "Oak Class maths",
            "organizer": "t.oak",
            "start": "now-10m",
            "end": "now+30m",
            "invitees": ["p1", "p2"],
            "settings": _LESSON,
        },
        {
            # Staff only: nothing is ever flagged here.
            "key": "oak-planning",
            "subject": "Year 3 and 5 planning",
            "organizer": "t.oak",
            "start": "now+25h",
            "end": "now+26h",
            "invitees": ["t.ash"],
            "settings": _ONE_TO_ONE,
        },
        {
            "key": "elm-1to1-soon",
            "subject": "Catch-up with Isla",
            "organizer": "t.elm",
            "start": "now+3h",
            "end": "now+200m",
            "invitees": ["p3"],
            "settings": _ONE_TO_ONE,
        },
    ],
    "registrations": [
        {
            "key": "reg-noah",
            "teacher": "t.oak",
            "pupil": "p2",
            "activity": "reading",
            "meeting": "oak-1to1-tomorrow",
            "approved_by": "head",
            "approved_at": "now-2d",
            "consent": {
                "granted_by": "Sarah B.",
                "relationship": "mother",
                "granted_at": "now-10d",
                "method": "online_form",
                "evidence_ref": "Form OTO-17",
            },
        }
    ],
    "exemptions": [
        {
            "key": "live-chat",
            "rule": "meeting_chat_open_to_pupils",
            "scope": "session",
            "session": "oak-lesson-live",
            "reason": "Chat moderated by the teaching assistant for this lesson",
            "granted_by": "Hana Head",
        }
    ],
}


@dataclass
class TeacherTenant:
    """The polled federation, its web app, and the session ids of its meetings."""

    web: WebTenant
    poll: PollResult
    sessions: dict[str, str]  # meeting key -> session id

    def person_id(self, key: str) -> str:
        return self.web.person_id(key)

    def findings(self, meeting: str, rule: str) -> list[FindingRow]:
        with self.web.db() as db:
            return list(
                db.scalars(
                    select(FindingRow).where(
                        FindingRow.session_id == self.sessions[meeting],
                        FindingRow.rule_id == rule,
                    )
                )
            )

    def status(self, meeting: str, rule: str, subject: str | None = None) -> str:
        """The status of ``rule``'s finding on ``meeting`` (about person ``subject``)."""
        subject_id = self.person_id(subject) if subject else None
        rows = [
            row
            for row in self.findings(meeting, rule)
            if subject_id is None or row.subject_key == subject_id
        ]
        assert len(rows) == 1, [(r.subject_key, r.status) for r in rows]
        return rows[0].status

    def approve(self, registration_id: str, by: str = "head") -> None:
        """SLT's approval, as the SLT pages record it (test setup for the teacher's tests)."""
        with transaction(self.web.db) as db:
            row = db.get(RegistrationRow, registration_id)
            assert row is not None
            row.status = ApprovalStatus.APPROVED.value
            row.approved_by = self.person_id(by)
            row.approved_at = self.web.clock()

    def session(self, meeting: str) -> SessionRow:
        with self.web.db() as db:
            row = db.get(SessionRow, self.sessions[meeting])
        assert row is not None
        return row


def build_teacher_tenant(server: FakeTenantServer, tmp: Path) -> TeacherTenant:
    scenario = server.scenario
    web = build_web_tenant(server, scenario, tmp)
    poller = build_poller(web.settings, clock=web.clock)
    import_registers(poller, scenario, server, clock=web.clock)
    result = run_poll(poller)
    sessions, _ = key_maps(scenario, server)
    return TeacherTenant(web, result, {key: sid for sid, key in sessions.items()})


@pytest.fixture(scope="module")
def teacher_tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeacherTenant]:
    """The federation with sessions, polled once (one per test module)."""
    tmp = tmp_path_factory.mktemp("web-teacher")
    scenario = parse_scenario(TEACHER_SCENARIO, source="tests/web/teacher_tenant.py")
    with (
        databases.fresh_database(tmp),
        FakeTenantServer(
            scenario, state_dir=tmp / "tenant", clock=scenario_clock(scenario)
        ) as server,
    ):
        yield build_teacher_tenant(server, tmp)
