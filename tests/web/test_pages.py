"""The pages every role shares: landing, error pages that leak nothing, the base layout, the
API's OpenAPI document, and names shown as text however hostile."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from remote_guard.fakegraph.identity import sign_in_choices
from tests.web.conftest import HOSTILE_NAME, PROBE_SECRET, WebTenant, sign_in

pytestmark = pytest.mark.database


def test_visitors_get_a_landing_page_with_a_sign_in_link(client: TestClient) -> None:
    page = client.get("/")

    assert page.status_code == 200
    assert '<a class="button" href="/sign-in">Sign in with Microsoft</a>' in page.text
    assert "Signed in as" not in page.text
    assert "<nav" not in page.text


def test_the_layout_has_landmarks_a_skip_link_and_no_script(
    client: TestClient, web_tenant: WebTenant
) -> None:
    """Pages work without JavaScript: there is none. Keyboard users get a skip link first."""
    sign_in(client, web_tenant, "head")

    page = client.get("/slt").text

    assert page.index('class="skip-link" href="#main"') < page.index("<header")
    for landmark in ("<header", '<nav aria-label="Main">', '<main id="main"', "<footer"):
        assert landmark in page
    assert '<html lang="en-GB">' in page
    assert "<script" not in page
    sign_out = re.search(r'<form method="post" action="/sign-out".*?</form>', page, re.S)
    assert sign_out is not None
    assert 'name="csrf_token" value="' in sign_out.group(0)
    assert "Hana Head" in page
    assert 'data-role="slt">SLT<' in page


def test_not_found_is_a_clear_page_and_json_for_the_api(client: TestClient) -> None:
    page = client.get("/no/such/page")
    api = client.get("/api/v1/nothing")

    assert page.status_code == 404
    assert "<h1>Page not found</h1>" in page.text
    assert (api.status_code, api.json()) == (404, {"detail": "Page not found"})


def test_a_server_error_leaks_nothing(web_tenant: WebTenant) -> None:
    """A failing page says something went wrong and gives a reference; the exception's text,
    its type and the traceback stay in the log."""
    with TestClient(web_tenant.app, raise_server_exceptions=False) as client:
        page = client.get("/probe/boom")

    assert page.status_code == 500
    assert "<h1>Something went wrong</h1>" in page.text
    assert f"<code>{page.headers['x-request-id']}</code>" in page.text
    for leak in (PROBE_SECRET, "RuntimeError", "Traceback", "abc123"):
        assert leak not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_wrong_method_and_bad_input_pages(client: TestClient) -> None:
    assert client.put("/").status_code in (403, 405)  # no CSRF token: refused before anything
    assert client.get("/sign-out").status_code == 405


def test_openapi_document_lists_the_api_only(client: TestClient) -> None:
    document = client.get("/api/v1/openapi.json").json()

    assert document["info"]["title"] == "remote_guard"
    assert "/api/v1/me" in document["paths"]
    assert all(path.startswith("/api/v1/") for path in document["paths"] if path != "/api/v1/probe")
    assert client.get("/docs").status_code == 404


def test_hostile_names_are_shown_as_text(client: TestClient, web_tenant: WebTenant) -> None:
    """A display name with markup, quotes and a right-to-left override appears escaped in the
    web app's header and on the fake tenant's sign-in page."""
    sign_in(client, web_tenant, "hostile")

    page = client.get("/my-sessions").text
    fake_page_names = [
        identity.display_name for identity, _ in sign_in_choices(web_tenant.server.state)
    ]

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "O&#39;Brien" in page
    assert html.unescape(page).count(HOSTILE_NAME) == 1
    assert HOSTILE_NAME in fake_page_names


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
