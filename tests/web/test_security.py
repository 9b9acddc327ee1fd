"""Sessions and CSRF: cookie flags, a new session id at sign-in, CSRF refused without the token,
sessions that end on the server, and the security headers every answer carries."""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from remote_guard.fakegraph.harness import scenario_clock
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.web.security import PLAIN_COOKIE, SECURE_COOKIE
from tests.web.conftest import (
    WebTenant,
    authorize_answer,
    build_web_tenant,
    csrf_token,
    federation,
    sign_in,
)

pytestmark = pytest.mark.database


def _set_cookie(response: object, name: str) -> SimpleCookie:
    headers = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    jar: SimpleCookie = SimpleCookie()
    for header in headers:
        if header.startswith(name + "="):
            jar.load(header)
    assert name in jar, headers
    return jar


def test_session_cookie_is_httponly_lax_and_not_secure_over_plain_http(
    client: TestClient, web_tenant: WebTenant
) -> None:
    response = sign_in(client, web_tenant, "t.oak")

    morsel = _set_cookie(response, PLAIN_COOKIE)[PLAIN_COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/"
    assert not morsel["secure"]
    assert not morsel["domain"]


def test_over_https_the_cookie_is_secure_with_the_host_prefix(tmp_path: Path) -> None:
    """With an https public_url the cookie is Secure and named __Host-, and HSTS is sent."""
    scenario = federation()
    with FakeTenantServer(
        scenario, state_dir=tmp_path / "tenant", clock=scenario_clock(scenario)
    ) as server:
        tenant = build_web_tenant(
            server, scenario, tmp_path, public_url="https://remote-guard.north.example"
        )
        with TestClient(tenant.app, base_url="https://remote-guard.north.example") as client:
            start = client.get("/sign-in", follow_redirects=False)

    morsel = _set_cookie(start, SECURE_COOKIE)[SECURE_COOKIE]
    assert morsel["secure"] is True
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert start.headers["strict-transport-security"] == "max-age=31536000"
    assert (
        "redirect_uri=https%3A%2F%2Fremote-guard.north.example%2Fauth%2Fcallback"
        in start.headers["location"]
    )


def test_session_id_is_rotated_at_sign_in(client: TestClient, web_tenant: WebTenant) -> None:
    """Sign-in starts a new session and completes in another one: a session id planted in the
    browser beforehand (session fixation) is never the signed-in one, and stops working."""
    start = client.get("/sign-in", follow_redirects=False)
    planted = client.cookies.get(PLAIN_COOKIE)
    assert planted
    back = authorize_answer(web_tenant, start.headers["location"], "dsl")

    done = client.get(back.headers["location"], follow_redirects=False)

    signed_in = client.cookies.get(PLAIN_COOKIE)
    assert done.status_code == 303
    assert signed_in
    assert signed_in != planted
    with TestClient(web_tenant.app, base_url=web_tenant.settings.web.base_url) as attacker:
        attacker.cookies.set(PLAIN_COOKIE, planted)
        assert attacker.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me").json()["name"] == "Dev Safeguard"


def test_sign_in_replaces_any_earlier_session(client: TestClient, web_tenant: WebTenant) -> None:
    """Starting a sign-in while holding a session ends that session on the server."""
    first = client.get("/sign-in", follow_redirects=False)
    assert first.status_code == 303
    earlier = client.cookies.get(PLAIN_COOKIE)
    client.cookies.clear()
    client.cookies.set(PLAIN_COOKIE, earlier)

    client.get("/sign-in", follow_redirects=False)

    # The first flow's answer no longer matches any session this browser holds.
    back = authorize_answer(web_tenant, first.headers["location"], "dsl")
    done = client.get(back.headers["location"], follow_redirects=False)
    assert done.status_code == 400


def test_a_forged_or_tampered_cookie_is_ignored(client: TestClient, web_tenant: WebTenant) -> None:
    sign_in(client, web_tenant, "head")
    good = client.cookies.get(PLAIN_COOKIE)
    assert good
    token, _, signature = good.rpartition(".")

    for forged in (f"{token}.{signature[:-2]}xx", f"{token[:-2]}xx.{signature}", token, ""):
        client.cookies.clear()
        client.cookies.set(PLAIN_COOKIE, forged)
        assert client.get("/api/v1/me").status_code == 401


def test_post_without_the_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, web_tenant: WebTenant
) -> None:
    """Sign-out is a state change: without the session's token it is refused (403 page) and the
    session goes on; with a wrong one too; with the right one it works."""
    sign_in(client, web_tenant, "t.oak")

    missing = client.post("/sign-out", follow_redirects=False)
    wrong = client.post("/sign-out", data={"csrf_token": "x" * 43}, follow_redirects=False)

    for refused in (missing, wrong):
        assert refused.status_code == 403
        assert "This form was out of date" in refused.text
    assert client.get("/api/v1/me").status_code == 200
    done = client.post("/sign-out", data={"csrf_token": csrf_token(client)}, follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/signed-out")
    assert client.get("/api/v1/me").status_code == 401


def test_the_api_takes_the_csrf_token_in_a_header(
    client: TestClient, web_tenant: WebTenant
) -> None:
    sign_in(client, web_tenant, "t.oak")
    token = csrf_token(client)

    without = client.post("/api/v1/probe")
    wrong = client.post("/api/v1/probe", headers={"X-CSRF-Token": token[::-1]})
    with_header = client.post("/api/v1/probe", headers={"X-CSRF-Token": token})

    for refused in (without, wrong):
        assert refused.status_code == 403
        assert refused.json()["detail"].startswith("This form was out of date")
    assert (with_header.status_code, with_header.json()) == (200, {"ok": "yes"})


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
def test_a_post_from_another_origin_is_refused_even_with_the_token(
    client: TestClient, web_tenant: WebTenant, origin: str
) -> None:
    sign_in(client, web_tenant, "t.oak")
    token = csrf_token(client)

    answer = client.post(
        "/sign-out", data={"csrf_token": token}, headers={"Origin": origin}, follow_redirects=False
    )

    assert answer.status_code == 403
    assert client.get("/api/v1/me").status_code == 200


def test_a_signed_out_session_cannot_be_replayed(client: TestClient, web_tenant: WebTenant) -> None:
    """Signing out deletes the session on the server: a copy of the old cookie is worthless."""
    sign_in(client, web_tenant, "head")
    copy = client.cookies.get(PLAIN_COOKIE)
    client.post("/sign-out", data={"csrf_token": csrf_token(client)})

    client.cookies.set(PLAIN_COOKIE, copy)

    assert client.get("/api/v1/me").status_code == 401


def test_an_idle_session_ends(
    client: TestClient, web_tenant: WebTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After [web] idle_minutes without a request the session is over."""
    sign_in(client, web_tenant, "head")
    store = web_tenant.app.state.web.sessions
    real_clock = store._clock
    monkeypatch.setattr(store, "_clock", lambda: real_clock() + store.idle)

    assert client.get("/api/v1/me").status_code == 401


def test_security_headers_on_every_page(client: TestClient) -> None:
    for path in ("/", "/nowhere", "/static/site.css"):
        headers = client.get(path).headers
        assert headers["content-security-policy"].startswith("default-src 'self'")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-request-id"]
    assert client.get("/").headers["cache-control"] == "no-store"
    assert client.get("/static/site.css").headers["cache-control"] == "public, max-age=3600"


def test_a_form_post_carries_the_token_beside_its_fields(
    client: TestClient, web_tenant: WebTenant
) -> None:
    """Pages post forms with the hidden csrf_token field; FastAPI's Form() fields still work."""
    sign_in(client, web_tenant, "t.oak")
    token = csrf_token(client)

    done = client.post("/probe/form", data={"csrf_token": token, "note": "<b>hi</b>"})
    refused = client.post("/probe/form", data={"note": "hi"})

    assert done.json() == {"note": "<b>hi</b>", "by": web_tenant.person_id("t.oak")}
    assert refused.status_code == 403
