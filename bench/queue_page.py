"""Server time of the DSL review queue's first page over 100,000 stored findings.

For SQLite (a file) and for PostgreSQL (its own schema in the ``test`` database on
127.0.0.1:5432, dropped afterwards): the schema is migrated, then a month of a trust's
findings is bulk-inserted (``FINDINGS`` findings, 10 per session, a fifth of them open, some
exempted, a case opened for a third of the sessions with open findings, some closed). The real
web app is built on that database, a trust-wide DSL signs in the real way (through the fake
tenant's sign-in page), and ``GET /dsl`` (the first page, default filters: open findings of
open cases) is requested ``REQUESTS`` times after one warm-up request. Server time is measured
inside the app's ASGI call, from the request's arrival to the last byte of its answer, so the
test client's own work is not counted.
"""

from __future__ import annotations

import random
import secrets
import statistics
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench._harness import TrustTenant
from bench.trust import TRUST_DSL
from remote_guard import audit
from remote_guard.cases.models import CaseRow
from remote_guard.collect.models import SessionRow
from remote_guard.fakegraph.identity import allow_redirect_uri
from remote_guard.findings.models import FindingRow
from remote_guard.graph.client import GraphClient
from remote_guard.rules.registry import load_rules
from remote_guard.settings import WebSettings, settings_from_mapping
from remote_guard.store.db import make_engine, migrate, session_factory
from remote_guard.web.app import create_app

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FINDINGS = 100_000
FINDINGS_PER_SESSION = 10
REQUESTS = 30
_OPEN = ("fail", "warn", "error")
_CLOSED = ("pass", "pass", "pass", "not_applicable")


@dataclass(frozen=True)
class QueueFigures:
    backend: str
    findings: int
    open_findings: int
    sessions: int
    seed_seconds: float
    first_request_ms: float
    median_ms: float
    p95_ms: float
    rows_on_page: int
    total_in_queue: int
    graph_requests_while_timed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "findings": self.findings,
            "open_findings": self.open_findings,
            "sessions": self.sessions,
            "seed_seconds": round(self.seed_seconds, 1),
            "first_request_ms": round(self.first_request_ms, 1),
            "median_ms": round(self.median_ms, 1),
            "p95_ms": round(self.p95_ms, 1),
            "requests": REQUESTS,
            "rows_on_page": self.rows_on_page,
            "total_in_queue": self.total_in_queue,
            "graph_requests_while_timed": self.graph_requests_while_timed,
        }


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_SERVER, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
        engine.dispose()
    except (sa.exc.OperationalError, ImportError):
        return False
    return True


@contextmanager
def postgres_schema() -> Any:
    """A URL for a new schema in the test database, dropped afterwards."""
    schema = f"rg_bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(POSTGRES_SERVER)
    with engine.begin() as connection:
        connection.execute(sa.text(f'create schema "{schema}"'))
    try:
        yield f"{POSTGRES_SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'drop schema "{schema}" cascade'))
        engine.dispose()


def seed(
    engine: sa.Engine, tenant: TrustTenant, *, findings: int, seed: int = 7
) -> tuple[int, int]:
    """Bulk-insert ``findings`` findings over a month before the trust's "now"; (sessions, open
    findings)."""
    rng = random.Random(seed)
    scenario = tenant.trust.scenario
    now = tenant.clock.now
    teachers = [
        (scenario.person_id(teacher), class_key.split("-")[0])
        for class_key, teacher in sorted(tenant.trust.facts.teachers.items())
    ]
    pupils = [person.key for person in scenario.people if person.kind == "pupil"][:5000]
    rules = sorted(load_rules())
    sessions = findings // FINDINGS_PER_SESSION
    session_rows: list[dict[str, Any]] = []
    finding_rows: list[dict[str, Any]] = []
    case_rows: list[dict[str, Any]] = []
    open_count = 0
    for number in range(sessions):
        organizer, school = rng.choice(teachers)
        start = now - timedelta(days=30) + timedelta(seconds=rng.randint(0, 30 * 86400))
        session_id = f"mtg_{number:024x}"
        session_rows.append(
            {
                "id": session_id,
                "kind": "meeting",
                "subject": f"Lesson {number}",
                "organizer_id": organizer,
                "school": school,
                "join_url": None,
                "scheduled_start": start,
                "scheduled_end": start + timedelta(minutes=45),
                "first_seen_at": start,
                "last_collected_at": start + timedelta(hours=2),
                "final_collected_at": start + timedelta(hours=2),
                "latest_snapshot_id": None,
            }
        )
        has_open = rng.random() < 0.4
        for index in range(FINDINGS_PER_SESSION):
            # About a fifth of all findings open: half the findings of sessions with any.
            is_open = has_open and index % 2 == 0
            status = rng.choice(_OPEN) if is_open else rng.choice(_CLOSED)
            exempted = is_open and rng.random() < 0.05
            open_count += is_open and not exempted
            changed = start + timedelta(hours=2, seconds=index)
            finding_rows.append(
                {
                    "key": uuid.UUID(int=rng.getrandbits(128)).hex,
                    "profile_id": "bramham-shadwell",
                    "rule_id": rules[(number + index) % len(rules)],
                    "clause_id": "BSF-A.pupil-remote.7",
                    "clause_version": 1,
                    "session_id": session_id,
                    "subject_key": rng.choice(pupils),
                    "status": status,
                    "exemption": {"id": "exemption-bench", "reason": "bench"} if exempted else None,
                    "severity": rng.choice(("high", "medium", "low")),
                    "phase": "post",
                    "observed": "observed value",
                    "message": "A pupil posted in the meeting chat.",
                    "next_step": "Speak to the teacher.",
                    "evidence": {"messages": 1},
                    "sources": ["chat"],
                    "first_seen_at": changed,
                    "last_seen_at": changed,
                    "last_changed_at": changed,
                    "poll_run_id": None,
                }
            )
        if has_open and rng.random() < 0.33:
            closed = rng.random() < 0.3
            case_rows.append(
                {
                    "session_id": session_id,
                    "school": school,
                    "status": "closed" if closed else rng.choice(("new", "in_review")),
                    "resolution": "no_concern" if closed else None,
                    "assignee_id": None,
                    "opened_at": start + timedelta(hours=3),
                    "updated_at": start + timedelta(hours=4),
                    "closed_at": start + timedelta(hours=4) if closed else None,
                    "closed_by": None,
                }
            )
    with engine.begin() as connection:
        for table, rows in (
            (SessionRow.__table__, session_rows),
            (FindingRow.__table__, finding_rows),
            (CaseRow.__table__, case_rows),
        ):
            for first in range(0, len(rows), 5000):
                connection.execute(sa.insert(table), rows[first : first + 5000])
    return sessions, open_count


class _ServerTimer:
    """ASGI wrapper noting how long the app took for each request, to its last byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        began = time.perf_counter()

        async def timed(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_ms = (time.perf_counter() - began) * 1000

        await self.app(scope, receive, timed)


def sign_in(client: TestClient, tenant: TrustTenant, person_key: str) -> None:
    """Sign in through the fake tenant's sign-in page, as a browser would.

    Raises:
        RuntimeError: a step answered something other than the expected redirect.
    """
    start = client.get("/sign-in", follow_redirects=False)
    if start.status_code != 303:
        raise RuntimeError(f"/sign-in answered {start.status_code}")
    auth_uri = start.headers["location"]
    params = dict(parse_qsl(urlsplit(auth_uri).query, keep_blank_values=True))
    params["user"] = person_key
    picked = requests.post(
        auth_uri.split("?", 1)[0],
        data=params,
        verify=str(tenant.server.ca_path),
        allow_redirects=False,
        timeout=30,
    )
    if picked.status_code != 302:
        raise RuntimeError(f"the fake sign-in page answered {picked.status_code}")
    back = client.get(picked.headers["location"], follow_redirects=False)
    if back.status_code != 303:
        raise RuntimeError(f"the sign-in return address answered {back.status_code}")


def measure(
    tenant: TrustTenant,
    database_url: str,
    backend: str,
    *,
    findings: int = FINDINGS,
    requests_: int = REQUESTS,
    note: Callable[[str], None] = print,
) -> QueueFigures:
    """Seed ``findings`` into the database at ``database_url`` and time the queue's first page.

    Raises:
        RuntimeError: sign-in failed, or the page did not answer 200.
    """
    engine = make_engine(database_url)
    migrate(engine)
    began = time.perf_counter()
    sessions, open_findings = seed(engine, tenant, findings=findings)
    seeded = time.perf_counter() - began
    note(f"  {backend}: {findings} findings in {sessions} sessions seeded in {seeded:.1f} s")
    mapping = tenant.settings_mapping(database_url)
    settings = settings_from_mapping(mapping, source="bench queue_page")
    web = WebSettings(port=8123, session_secret=SecretStr(secrets.token_hex(32)))
    settings = settings.model_copy(update={"web": web})
    allow_redirect_uri(tenant.state, web.redirect_uri)
    audit.configure(engine, settings.audit)
    app = create_app(settings, session_factory(engine), GraphClient(settings.tenant), tenant.clock)
    timer = _ServerTimer(app)
    with TestClient(timer, base_url=web.base_url) as client:
        sign_in(client, tenant, TRUST_DSL)
        first = client.get("/dsl")
        if first.status_code != 200:
            raise RuntimeError(f"/dsl answered {first.status_code}: {first.text[:300]}")
        first_ms = timer.last_ms
        timings: list[float] = []
        mark = tenant.mark()
        for _ in range(requests_):
            answer = client.get("/dsl")
            if answer.status_code != 200:
                raise RuntimeError(f"/dsl answered {answer.status_code}")
            timings.append(timer.last_ms)
        graph_requests = tenant.tally(mark).http
        rows = answer.text.count('href="/dsl/sessions/')
    with engine.connect() as connection:
        total = connection.execute(
            sa.text(
                "select count(distinct session_id) from findings where status in "
                "('fail','warn','error') and exemption is null"
            )
        ).scalar_one()
    engine.dispose()
    timings.sort()
    return QueueFigures(
        backend=backend,
        findings=findings,
        open_findings=open_findings,
        sessions=sessions,
        seed_seconds=seeded,
        first_request_ms=first_ms,
        median_ms=statistics.median(timings),
        p95_ms=timings[max(0, round(0.95 * len(timings)) - 1)],
        rows_on_page=rows,
        total_in_queue=int(total),
        graph_requests_while_timed=graph_requests,
    )


def run(
    tenant: TrustTenant,
    folder: Path,
    *,
    findings: int = FINDINGS,
    note: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The queue page on SQLite and on PostgreSQL (or why PostgreSQL was not measured)."""
    results: dict[str, Any] = {}
    folder.mkdir(parents=True, exist_ok=True)
    # Signing in reads the whole trust's roster through Graph (about 1,500 requests), which is
    # not part of the page's server time: no latency or throttling for it. The requests timed
    # make no Graph call (counted in ``graph_requests_while_timed``).
    tenant.reset_limits(latency_ms=0, throttling=False)
    sqlite_path = folder / "queue.db"
    results["sqlite"] = measure(
        tenant, f"sqlite:///{sqlite_path}", "sqlite", findings=findings, note=note
    ).as_dict()
    if postgres_available():
        with postgres_schema() as url:
            results["postgresql"] = measure(
                tenant, url, "postgresql", findings=findings, note=note
            ).as_dict()
    else:
        results["postgresql"] = {
            "not_measured": "PostgreSQL is not reachable on 127.0.0.1:5432 (database test)"
        }
    return results
