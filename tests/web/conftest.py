"""The web app against the fake tenant: a small federation for TestClient tests, the demo school
for browser tests, and helpers that sign in the real way (through the fake's authorize page).

Browser tests use Debian's chromium (/usr/bin/chromium) through Playwright, never a browser
Playwright downloads. Without it they skip, saying so; under CI=true they fail instead, because
CI must run them (.ci/run installs the package).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from fastapi import FastAPI, Form
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.clock import Clock
from remote_guard.fakegraph.harness import scenario_clock, settings_for, start_web_app
from remote_guard.fakegraph.identity import allow_redirect_uri
from remote_guard.fakegraph.scenario import Scenario, parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.graph.client import GraphClient
from remote_guard.settings import Settings, WebSettings
from remote_guard.store.db import make_engine, migrate, session_factory, transaction
from remote_guard.web import audit_log
from remote_guard.web.app import create_app
from remote_guard.web.auth import CurrentUser
from tests import databases

CHROMIUM = Path("/usr/bin/chromium")
WEB_ORIGIN = "http://127.0.0.1:8123"  # what TestClient pretends the app is served on
SECRET = "test-session-secret-0123456789abcdef"

HOSTILE_NAME = 'Si\u00e2n O\'Brien <script>alert("x")</script> \u202eelbat'

# Two schools in one federation. The DSL is in both schools' groups; everyone else in one.
FEDERATION: dict[str, Any] = {
    "name": "web-tests",
    "now": "2026-11-18T12:00:00Z",
    "people": [
        {"key": "t.oak", "name": "Olive Oak", "kind": "staff", "roles": ["teacher"], "job_title": "Year 3 Teacher"},
        {"key": "t.elm", "name": "Ellis Elm", "kind": "staff", "roles": ["teacher"], "job_title": "Year 4 Teacher"},
        {"key": "head", "name": "Hana Head", "kind": "staff", "roles": ["slt"]},
        {"key": "dsl", "name": "Dev Safeguard", "kind": "staff", "roles": ["dsl"]},
        {"key": "deputy", "name": "Dee Deputy", "kind": "staff", "roles": ["deputy_dsl"]},
        {"key": "it", "name": "Ian Tech", "kind": "staff", "job_title": "IT Technician"},
        # A name that must be shown as text everywhere: markup, quotes, a right-to-left override.
        {"key": "hostile", "name": HOSTILE_NAME, "kind": "staff", "job_title": "Supply Teacher"},
        {"key": "p1", "name": "Amelia K.", "kind": "pupil"},
        {"key": "p2", "name": "Noah B.", "kind": "pupil"},
        {"key": "p3", "name": "Isla M.", "kind": "pupil"},
        {"key": "visitor", "name": "Gus Guest", "kind": "guest", "upn": "gus_parents.example#EXT#@bramhamshadwell.sch.uk"},
    ],
    "groups": [
        {"key": "staff", "name": "All Staff", "role": "staff", "members": ["t.oak", "t.elm", "head", "dsl", "deputy", "it", "hostile"]},
        {"key": "pupils", "name": "All Pupils", "role": "pupils", "members": ["p1", "p2", "p3"]},
        {"key": "slt", "name": "SLT", "role": "slt", "members": ["head"]},
        {"key": "dsl-group", "name": "DSL", "role": "dsl", "members": ["dsl"]},
        {"key": "deputy-group", "name": "Deputy DSL", "role": "deputy_dsl", "members": ["deputy"]},
        {"key": "north", "name": "North Primary", "role": "school", "school": "north", "members": ["t.oak", "head", "dsl", "it", "hostile", "p1", "p2"]},
        {"key": "south", "name": "South Primary", "role": "school", "school": "south", "members": ["t.elm", "deputy", "dsl", "p3"]},
    ],
    "teams": [
        {"key": "oak-class", "name": "Oak Class", "owners": ["t.oak"], "members": ["p1", "p2"]},
        {"key": "elm-class", "name": "Elm Class", "owners": ["t.elm"], "members": ["p3"]},
        {"key": "staff-room", "name": "Staff Room", "owners": ["head"], "members": ["t.oak", "t.elm", "dsl", "deputy", "it"]},
    ],
}  # fmt: skip


def federation() -> Scenario:
    return parse_scenario(FEDERATION, source="tests/web/conftest.py")


@dataclass
class WebTenant:
    """The fake tenant and the web app built for it (not served on a socket)."""

    server: FakeTenantServer
    scenario: Scenario
    settings: Settings
    db: sessionmaker[Session]
    app: FastAPI
    clock: Clock

    def person_id(self, key: str) -> str:
        return self.scenario.person_id(key)

    def client(self) -> TestClient:
        return TestClient(self.app, base_url=self.settings.web.base_url)


def build_web_tenant(
    server: FakeTenantServer,
    scenario: Scenario,
    tmp: Path,
    *,
    database_url: str | None = None,
    **web: Any,
) -> WebTenant:
    """The web app for ``server``, storing in ``database_url`` or else the test database of the
    folder ``tmp`` (a fixture wider than one test drops it with ``databases.fresh_database``)."""
    clock = scenario_clock(scenario)
    settings = settings_for(
        server, scenario, database_url=database_url or databases.database_url(tmp), clock=clock
    )
    web_settings = WebSettings(**{"port": 8123, "session_secret": SecretStr(SECRET), **web})
    settings = settings.model_copy(update={"web": web_settings})
    allow_redirect_uri(server.state, web_settings.redirect_uri)
    engine = make_engine(settings.database.url)
    migrate(engine)
    audit.configure(engine, settings.audit)
    db = session_factory(engine)
    app = create_app(settings, db, GraphClient(settings.tenant), clock)
    add_probe_routes(app)
    return WebTenant(server, scenario, settings, db, app, clock)


PROBE_SECRET = "internal detail the page must not show: token=abc123"


def add_probe_routes(app: FastAPI) -> None:
    """Routes only tests have: a state-changing API call that writes the audit trail the way a
    page would, and a page that fails."""

    @app.post("/api/v1/probe")
    def probe(user: CurrentUser) -> dict[str, str]:
        web = app.state.web
        with transaction(web.db) as db:
            audit_log.record_change(
                db, "probe.changed", object_type="probe", object_id="p1", after={"by": user.id}
            )
            # A domain service records without naming anyone: the request's user is bound.
            audit.record(db, "probe.service", object_type="probe", object_id="p1")
        return {"ok": "yes"}

    @app.post("/probe/form", include_in_schema=False)
    def probe_form(user: CurrentUser, note: Annotated[str, Form()]) -> dict[str, str]:
        # The pattern a page's form handler follows: Form fields beside the CSRF hidden field.
        return {"note": note, "by": user.id}

    @app.get("/probe/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError(PROBE_SECRET)


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these override the CA bundle MSAL and the Graph client pin to the fake's CA.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def web_tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebTenant]:
    """The federation served by a fake tenant, and the web app for it (one per test module)."""
    tmp = tmp_path_factory.mktemp("web")
    scenario = federation()
    with (
        databases.fresh_database(tmp),
        FakeTenantServer(
            scenario, state_dir=tmp / "tenant", clock=scenario_clock(scenario)
        ) as server,
    ):
        yield build_web_tenant(server, scenario, tmp)


@pytest.fixture
def client(web_tenant: WebTenant) -> Iterator[TestClient]:
    """A browser-like client with no cookies yet."""
    with web_tenant.client() as fresh:
        yield fresh


def authorize_answer(
    tenant: WebTenant, auth_uri: str, person_key: str | None, *, cancel: bool = False
) -> requests.Response:
    """Pick ``person_key`` on the fake tenant's sign-in page, as a browser would post it."""
    params = dict(parse_qsl(urlsplit(auth_uri).query, keep_blank_values=True))
    if person_key is not None:
        params["user"] = person_key
    if cancel:
        params["cancel"] = "1"
    return requests.post(
        auth_uri.split("?", 1)[0],
        data=params,
        verify=str(tenant.server.ca_path),
        allow_redirects=False,
        timeout=10,
    )


def sign_in(
    client: TestClient, tenant: WebTenant, person_key: str, *, next_path: str | None = None
) -> Any:
    """Sign in as the scenario person ``person_key`` the real way; the return address's answer."""
    start = client.get(
        "/sign-in", params={"next": next_path} if next_path else None, follow_redirects=False
    )
    assert start.status_code == 303, start.text
    back = authorize_answer(tenant, start.headers["location"], person_key)
    assert back.status_code == 302, back.text
    return client.get(back.headers["location"], follow_redirects=False)


def csrf_token(client: TestClient) -> str:
    token: str = client.get("/api/v1/me").json()["csrf_token"]
    return token


# --- browser tests ----------------------------------------------------------------------------


def require_chromium() -> None:
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed: pip install -e '.[dev]'"
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests must run in CI: {problem}")
    pytest.skip(f"browser test skipped: {problem}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright (no browser download, ever)."""
    require_chromium()
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@dataclass
class DemoWeb:
    """The demo school's fake tenant and its web app, served over sockets for the browser."""

    server: FakeTenantServer
    scenario: Scenario
    settings: Settings

    @property
    def url(self) -> str:
        return self.settings.web.base_url

    def name_of(self, role: str) -> str:
        """The display name of the first demo person with ``role`` (or of that kind)."""
        for person in self.scenario.people:
            if role in person.roles or person.kind == role:
                return person.name
        raise KeyError(role)


@pytest.fixture(scope="session")
def demo_web(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoWeb]:
    """The demo federation (as ``make demo`` serves it) and its web app on free ports."""
    from remote_guard.fakegraph.demo import demo_scenario

    tmp = tmp_path_factory.mktemp("demo-web")
    scenario = demo_scenario()
    clock = scenario_clock(scenario)
    with (
        databases.fresh_database(tmp) as database_url,
        FakeTenantServer(scenario, state_dir=tmp / "tenant", clock=clock) as server,
    ):
        settings = settings_for(server, scenario, database_url=database_url, clock=clock)
        web, web_settings = start_web_app(server, settings, clock=clock)
        try:
            yield DemoWeb(server, scenario, web_settings)
        finally:
            web.stop()


DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where browser tests save their screenshots: docs/screenshots/ only when
    REMOTE_GUARD_SCREENSHOTS=1 (``make screenshots``), so an ordinary test run leaves the
    committed pictures alone; a temporary folder otherwise."""
    if os.environ.get("REMOTE_GUARD_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser tab with no cookies. The fake tenant's certificate comes from its own
    throw-away CA, which this browser profile does not know."""
    context = browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


def sign_in_as(page: Any, demo: DemoWeb, display_name: str) -> None:
    """Sign in through the web app's button and the fake tenant's sign-in page."""
    page.goto(demo.url + "/")
    page.get_by_role("link", name="Sign in with Microsoft").click()
    page.get_by_role(
        "heading", name=f"Sign in to {demo.scenario.tenant.name} (simulated)"
    ).wait_for()
    page.get_by_role("button", name=display_name).first.click()
    page.wait_for_url(f"{demo.url}/**")
