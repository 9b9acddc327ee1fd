"""Sign-in through Entra ID (the fake tenant): where each role lands, who is refused and how
failures read, and what the audit trail records."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlalchemy import select

from remote_guard.audit.models import AuditEntryRow
from remote_guard.fakegraph.harness import scenario_clock
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.web.auth import EntraSignIn, SignInError
from remote_guard.web.security import PLAIN_COOKIE
from tests.web.conftest import WebTenant, authorize_answer, build_web_tenant, federation, sign_in

pytestmark = pytest.mark.database


def _entries(tenant: WebTenant, action: str) -> list[AuditEntryRow]:
    with tenant.db() as db:
        return list(
            db.scalars(
                select(AuditEntryRow)
                .where(AuditEntryRow.action == action)
                .order_by(AuditEntryRow.seq)
            )
        )


@pytest.mark.parametrize(
    ("person", "home"),
    [
        ("dsl", "/dsl"),
        ("deputy", "/dsl"),
        ("head", "/slt"),
        ("t.oak", "/my-sessions"),
        ("it", "/my-sessions"),
    ],
)
def test_each_role_lands_on_its_home_page(
    client: TestClient, web_tenant: WebTenant, person: str, home: str
) -> None:
    done = sign_in(client, web_tenant, person)

    assert (done.status_code, done.headers["location"]) == (303, home)
    page = client.get(home)
    assert page.status_code == 200
    assert (
        web_tenant.scenario.people[[p.key for p in web_tenant.scenario.people].index(person)].name
        in page.text
    )
    assert client.get("/", follow_redirects=False).headers["location"] == home


def test_me_describes_roles_schools_and_classes_from_the_groups(
    client: TestClient, web_tenant: WebTenant
) -> None:
    """Roles come from the configured groups and class-team ownership, not from the browser."""
    sign_in(client, web_tenant, "t.oak")

    me = client.get("/api/v1/me").json()

    assert me["id"] == web_tenant.person_id("t.oak")
    assert me["roles"] == ["staff", "teacher"]
    assert me["role"] == "teacher"
    assert me["schools"] == ["north"]
    assert me["class_team_ids"] == [web_tenant.scenario.team_id("oak-class")]
    assert me["username"] == "t.oak@bramhamshadwell.sch.uk"


def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(
    client: TestClient, web_tenant: WebTenant
) -> None:
    asked = client.get("/slt", follow_redirects=False)
    assert asked.headers["location"] == "/sign-in?next=/slt"

    assert sign_in(client, web_tenant, "head", next_path="/slt").headers["location"] == "/slt"
    client.cookies.clear()
    for hostile in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        assert sign_in(client, web_tenant, "head", next_path=hostile).headers["location"] == "/slt"
        client.cookies.clear()


@pytest.mark.parametrize(
    ("person", "title"),
    [
        ("p1", "remote_guard is for school staff"),
        ("visitor", "Your account is not set up for remote_guard"),
    ],
)
def test_pupils_and_guests_are_refused_with_a_clear_page(
    client: TestClient, web_tenant: WebTenant, person: str, title: str
) -> None:
    """They can sign in to Microsoft, but get no session, and the refusal is audited."""
    done = sign_in(client, web_tenant, person)

    assert done.status_code == 403
    assert f"<h1>{title}</h1>" in done.text
    assert client.cookies.get(PLAIN_COOKIE) is None
    assert client.get("/api/v1/me").status_code == 401
    refused = _entries(web_tenant, "web.sign_in_refused")[-1]
    assert refused.object_id == web_tenant.person_id(person)


def test_sign_in_and_out_are_in_the_audit_trail_under_the_persons_id(
    client: TestClient, web_tenant: WebTenant
) -> None:
    sign_in(client, web_tenant, "deputy")
    token = client.get("/api/v1/me").json()["csrf_token"]
    client.post("/sign-out", data={"csrf_token": token})

    signed_in = _entries(web_tenant, "web.signed_in")[-1]
    signed_out = _entries(web_tenant, "web.signed_out")[-1]
    deputy = web_tenant.person_id("deputy")
    assert (signed_in.actor_id, signed_in.actor_role) == (deputy, "deputy_dsl")
    assert json.loads(signed_in.payload or "{}")["detail"]["roles"] == ["deputy_dsl", "staff"]
    assert (signed_out.actor_id, signed_out.object_id) == (deputy, deputy)


def test_changes_made_during_a_request_name_the_signed_in_user(
    client: TestClient, web_tenant: WebTenant
) -> None:
    """The middleware binds the user as the audit actor, so entries that domain services write
    without naming anyone are attributed to them, with the request id."""
    sign_in(client, web_tenant, "head")
    token = client.get("/api/v1/me").json()["csrf_token"]

    answer = client.post("/api/v1/probe", headers={"X-CSRF-Token": token})

    head = web_tenant.person_id("head")
    changed = _entries(web_tenant, "probe.changed")[-1]
    service = _entries(web_tenant, "probe.service")[-1]
    for entry in (changed, service):
        assert (entry.actor_id, entry.actor_role) == (head, "slt")
        assert entry.run_id == answer.headers["x-request-id"]


def test_cancelled_sign_in_shows_a_clear_page(client: TestClient, web_tenant: WebTenant) -> None:
    start = client.get("/sign-in", follow_redirects=False)
    back = authorize_answer(web_tenant, start.headers["location"], None, cancel=True)

    done = client.get(back.headers["location"], follow_redirects=False)

    assert done.status_code == 400
    assert "Sign-in was cancelled" in done.text
    assert "Sign in again" in done.text


def test_an_answer_replayed_or_opened_elsewhere_is_refused(
    client: TestClient, web_tenant: WebTenant
) -> None:
    """The return address works once per sign-in, and only in the browser that started it."""
    start = client.get("/sign-in", follow_redirects=False)
    back = authorize_answer(web_tenant, start.headers["location"], "dsl")
    callback = back.headers["location"]
    with web_tenant.client() as other_browser:
        elsewhere = other_browser.get(callback, follow_redirects=False)

    first = client.get(callback, follow_redirects=False)
    client.cookies.clear()
    again = client.get(callback, follow_redirects=False)

    assert elsewhere.status_code == 400
    assert "started in another browser" in elsewhere.text
    assert first.status_code == 303
    assert again.status_code == 400


def test_a_state_from_another_sign_in_is_refused(client: TestClient, web_tenant: WebTenant) -> None:
    """An answer with a code for this browser's flow but another state (login CSRF) is refused."""
    start = client.get("/sign-in", follow_redirects=False)
    back = authorize_answer(web_tenant, start.headers["location"], "dsl")
    forged = back.headers["location"].replace("state=", "state=x")

    done = client.get(forged, follow_redirects=False)

    assert done.status_code == 400
    assert "does not belong to the sign-in this browser started" in done.text


def _forged_token(tenant: WebTenant, **claims: Any) -> str:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "forged"})


def test_id_tokens_not_signed_by_the_tenant_or_for_another_app_are_refused(
    web_tenant: WebTenant,
) -> None:
    """The id token is checked here (MSAL no longer does): signature, audience, issuer, time."""
    checker = web_tenant.app.state.web.sign_in
    assert isinstance(checker, EntraSignIn)
    now = int(web_tenant.clock().timestamp())
    issuer = f"{web_tenant.server.base_url}/{web_tenant.scenario.tenant.id}/v2.0"
    good = {
        "aud": web_tenant.scenario.app.client_id,
        "iss": issuer,
        "iat": now,
        "exp": now + 3600,
        "oid": web_tenant.person_id("dsl"),
        "tid": web_tenant.scenario.tenant.id,
    }

    with pytest.raises(SignInError) as forged:
        checker.check_id_token(_forged_token(web_tenant, **good), nonce="")

    assert forged.value.reason.startswith("id token: ")
    assert "could not be checked" in str(forged.value)


def test_an_unreachable_tenant_gives_a_clear_page(tmp_path: Path) -> None:
    """If Microsoft's sign-in service cannot be reached, the page says so (503)."""
    scenario = federation()
    server = FakeTenantServer(
        scenario, state_dir=tmp_path / "tenant", clock=scenario_clock(scenario)
    )
    server.start()
    tenant = build_web_tenant(server, scenario, tmp_path)
    server.stop()

    with TestClient(tenant.app, base_url=tenant.settings.web.base_url) as client:
        answer = client.get("/sign-in", follow_redirects=False)

    assert answer.status_code == 503
    assert "cannot reach Microsoft's sign-in service" in html.unescape(answer.text)
    assert "Traceback" not in answer.text
