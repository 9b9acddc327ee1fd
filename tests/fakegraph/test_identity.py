"""Entra ID as MSAL sees it: discovery, client credentials, the token cache, AADSTS errors."""

from __future__ import annotations

import base64
import json
from typing import Any

import msal
import pytest
import requests

from remote_guard.fakegraph.server import FakeTenantServer

TOKEN_PATH = "/7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37/oauth2/v2.0/token"
DISCOVERY_PATH = "/7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37/v2.0/.well-known/openid-configuration"
GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override Session.verify, which is how
    # MSAL passes verify=; without this the fake's CA would be ignored on machines that set them.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def msal_app(server: FakeTenantServer, *, secret: str | None = None) -> Any:
    app = server.scenario.app
    return msal.ConfidentialClientApplication(
        app.client_id,
        client_credential=secret or app.client_secret,
        authority=f"{server.authority_host}/{server.scenario.tenant.id}",
        instance_discovery=False,
        verify=str(server.ca_path),
    )


def token_form(server: FakeTenantServer, **changes: str) -> dict[str, str]:
    app = server.scenario.app
    return {
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "grant_type": "client_credentials",
        "scope": "https://graph.microsoft.com/.default",
        **changes,
    }


def test_msal_gets_a_token_then_serves_it_from_its_cache(server: FakeTenantServer) -> None:
    """MSAL discovers the tenant once, fetches one token, and answers the second call from cache."""
    app = msal_app(server)

    first = app.acquire_token_for_client(scopes=GRAPH_SCOPE)
    second = app.acquire_token_for_client(scopes=GRAPH_SCOPE)

    assert first["token_type"] == "Bearer"
    assert first["expires_in"] == 3599
    assert first["token_source"] == "identity_provider"
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert [(r.method, r.path, r.status) for r in server.requests] == [
        ("GET", DISCOVERY_PATH, 200),
        ("POST", TOKEN_PATH, 200),
    ]


def test_wrong_secret_is_aadsts7000215(server: FakeTenantServer) -> None:
    """A wrong client secret comes back as MSAL's error dict with Entra's AADSTS7000215."""
    result = msal_app(server, secret="not-the-secret").acquire_token_for_client(scopes=GRAPH_SCOPE)

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith(
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
        "request is the client secret value, not the client secret ID, for a secret added to "
        "app '0b3c6a5e-8f21-4d7a-b9e0-2c4f6a8d1e35'.\r\nTrace ID: "
    )
    assert server.requests[-1].status == 401


def test_unknown_tenant_fails_discovery_with_aadsts90002(server: FakeTenantServer) -> None:
    """Discovery for a tenant the fake does not host is a 400 invalid_tenant, AADSTS90002."""
    response = requests.get(
        f"{server.base_url}/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration",
        verify=str(server.ca_path),
        timeout=10,
    )

    body = response.json()
    assert response.status_code == 400
    assert body["error"] == "invalid_tenant"
    assert body["error_codes"] == [90002]
    assert body["error_description"].startswith(
        "AADSTS90002: Tenant '00000000-0000-0000-0000-000000000000' not found."
    )
    assert sorted(body) == [
        "correlation_id",
        "error",
        "error_codes",
        "error_description",
        "error_uri",
        "timestamp",
        "trace_id",
    ]


def test_msal_refuses_an_unknown_tenant(server: FakeTenantServer) -> None:
    """MSAL raises ValueError at construction when tenant discovery answers 400."""
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication(
            server.scenario.app.client_id,
            client_credential=server.scenario.app.client_secret,
            authority=f"{server.authority_host}/not-a-tenant",
            instance_discovery=False,
            verify=str(server.ca_path),
        )


def test_openid_configuration_points_at_the_fake(server: FakeTenantServer) -> None:
    """The OIDC document names token and authorize endpoints on the fake's own host."""
    body = requests.get(
        server.base_url + DISCOVERY_PATH, verify=str(server.ca_path), timeout=10
    ).json()

    tenant = server.scenario.tenant.id
    assert body["token_endpoint"] == f"{server.base_url}/{tenant}/oauth2/v2.0/token"
    assert body["authorization_endpoint"] == f"{server.base_url}/{tenant}/oauth2/v2.0/authorize"
    assert body["issuer"] == f"{server.base_url}/{tenant}/v2.0"
    assert body["id_token_signing_alg_values_supported"] == ["RS256"]


@pytest.mark.parametrize(
    ("changes", "status", "error", "code"),
    [
        ({"client_id": "99999999-9999-9999-9999-999999999999"}, 400, "unauthorized_client", 700016),
        ({"scope": "https://graph.microsoft.com/User.Read"}, 400, "invalid_scope", 70011),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ],
)
def test_token_endpoint_rejects_bad_requests(
    server: FakeTenantServer, changes: dict[str, str], status: int, error: str, code: int
) -> None:
    """Unknown apps, non-.default scopes and other grants get Entra's error and AADSTS code."""
    response = requests.post(
        server.base_url + TOKEN_PATH,
        data=token_form(server, **changes),
        verify=str(server.ca_path),
        timeout=10,
    )

    assert (response.status_code, response.json()["error"], response.json()["error_codes"]) == (
        status,
        error,
        [code],
    )


def _unsigned_jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def test_client_assertion_is_accepted_when_iss_and_sub_are_the_app(
    server: FakeTenantServer,
) -> None:
    """A certificate credential (client_assertion) works; its signature is not checked."""
    client_id = server.scenario.app.client_id
    form = token_form(
        server,
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=_unsigned_jwt({"iss": client_id, "sub": client_id}),
    )
    del form["client_secret"]

    response = requests.post(
        server.base_url + TOKEN_PATH, data=form, verify=str(server.ca_path), timeout=10
    )
    wrong = requests.post(
        server.base_url + TOKEN_PATH,
        data={**form, "client_assertion": _unsigned_jwt({"iss": "other", "sub": "other"})},
        verify=str(server.ca_path),
        timeout=10,
    )

    assert response.status_code == 200
    assert sorted(response.json()) == ["access_token", "expires_in", "ext_expires_in", "token_type"]
    assert (wrong.status_code, wrong.json()["error_codes"]) == (401, [700021])


def test_token_lifetime_comes_from_the_scenario(start_server: Any) -> None:
    """expires_in and ext_expires_in are the scenario's token_lifetime_seconds."""
    server = start_server(faults={"token_lifetime_seconds": 600})

    body = requests.post(
        server.base_url + TOKEN_PATH,
        data=token_form(server),
        verify=str(server.ca_path),
        timeout=10,
    ).json()

    assert (body["expires_in"], body["ext_expires_in"]) == (600, 600)
