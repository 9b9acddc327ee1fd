"""A small, correctly set-up fake tenant, and settings pointing at it as a school's file would.

Each test breaks one thing (a permission, the access policy, the secret, a group id) and checks
the doctor names that thing, and only that thing, with its fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from remote_guard.fakegraph.scenario import Scenario, parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.graph.permissions import least_permissions
from remote_guard.settings import Settings, settings_from_mapping
from remote_guard.store.db import make_engine, migrate
from tests import databases

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # a Wednesday in the autumn term
SESSION_SECRET = "s3ss10n-" + "k" * 40
AUDIT_KEY = "aud1t-" + "q" * 40

SCENARIO: dict[str, Any] = {
    "name": "doctor-tests",
    "now": "2026-11-18T12:00:00Z",
    "people": [
        {"key": "teacher", "name": "Tess Teacher", "kind": "staff", "roles": ["teacher"]},
        {"key": "head", "name": "Hana Head", "kind": "staff", "roles": ["slt"]},
        {"key": "dsl", "name": "Dev Safeguard", "kind": "staff", "roles": ["dsl"]},
        {"key": "deputy", "name": "Dee Deputy", "kind": "staff", "roles": ["deputy_dsl"]},
        {"key": "alerts", "name": "Safeguarding alerts", "kind": "staff"},
        {"key": "pupil1", "name": "Amelia K.", "kind": "pupil"},
        {"key": "pupil2", "name": "Noah B.", "kind": "pupil"},
    ],
    "groups": [
        {"key": "staff", "name": "All Staff", "role": "staff", "members": ["teacher", "head", "dsl", "deputy"]},
        {"key": "pupils", "name": "All Pupils", "role": "pupils", "members": ["pupil1", "pupil2"]},
        {"key": "slt", "name": "SLT", "role": "slt", "members": ["head"]},
        {"key": "dsl-group", "name": "DSL", "role": "dsl", "members": ["dsl"]},
        {"key": "deputies", "name": "Deputy DSLs", "role": "deputy_dsl", "members": ["deputy"]},
        {"key": "empty", "name": "Old staff list", "members": []},
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
    "meetings": [
        {
            "key": "lesson",
            "subject": "Year 5 reading",
            "organizer": "teacher",
            "start": "2026-11-17T10:00:00Z",
            "end": "2026-11-17T11:00:00Z",
            "invitees": ["pupil1", "pupil2"],
        }
    ],
    "chats": [
        {"key": "dm", "members": ["teacher", "pupil1"], "messages": [{"at": "2026-11-17T16:10:00Z", "sender": "teacher", "text": "well done"}]},
    ],
}  # fmt: skip


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scenario(**changes: Any) -> Scenario:
    return parse_scenario({**SCENARIO, **changes}, source="doctor tests")


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[FakeTenantServer]:
    """The fake tenant, the app holding exactly the permissions remote_guard needs (plus
    Mail.Send for the e-mail alerts, which the fake also serves)."""
    permissions = sorted({*least_permissions(), "Mail.Send"})
    app = {"permissions": permissions, "access_policy": "global"}
    with FakeTenantServer(
        scenario(app=app), state_dir=tmp_path / "tenant", clock=FixedClock(NOW)
    ) as server:
        yield server


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A test database at the current schema (the doctor only reads it); tests using it are
    marked ``database``."""
    folder = tmp_path_factory.mktemp("doctor-db")
    with databases.fresh_database(folder, "remote_guard") as url:
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        yield url


def settings_data(server: FakeTenantServer, database_url: str) -> dict[str, Any]:
    """A school's settings for the fake tenant: every section the doctor checks set right."""
    data: dict[str, Any] = {
        "tenant": server.tenant_settings(),
        "directory": server.directory_settings(),
        "database": {"url": database_url},
        "school_day": {
            "terms": [
                {"start": "2026-09-03", "end": "2026-10-23"},
                {"start": "2026-11-02", "end": "2026-12-18"},
            ]
        },
        "web": {
            "public_url": "https://remote-guard.school.example",
            "session_secret": SESSION_SECRET,
        },
        # The JSON-lines copy named, as a school on PostgreSQL must (SQLite has one beside it).
        "audit": {"hmac_key": AUDIT_KEY, "file": str(server.state_dir.parent / "audit.jsonl")},
    }
    if "notify" in Settings.model_fields:
        data["notify"] = {"service_mailbox": server.scenario.person_upn("alerts")}
    return data


def build_settings(data: dict[str, Any]) -> Settings:
    return settings_from_mapping(data, source="doctor test settings")


def later(days: int) -> datetime:
    return NOW + timedelta(days=days)
