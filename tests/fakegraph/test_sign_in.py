"""The fake tenant's sign-in side: the authorize page, code redemption with PKCE, the id token
and its keys, and Entra's refusals (AADSTS codes) for wrong return addresses, replayed codes
and bad verifiers."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import msal
import pytest
import requests

from remote_guard.fakegraph.identity import allow_redirect_uri
from remote_guard.fakegraph.server import FakeTenantServer

REDIRECT = "http://127.0.0.1:8765/auth/callback"


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def tenant(server: FakeTenantServer) -> FakeTenantServer:
    allow_redirect_uri(server.state, REDIRECT)
    return server


def _base(server: FakeTenantServer) -> str:
    return f"{server.base_url}/{server.scenario.tenant.id}"


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _authorize_params(server: FakeTenantServer, verifier: str, **changes: str) -> dict[str, str]:
    return {
        "client_id": server.scenario.app.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "openid profile offline_access",
        "state": "state-123",
        "nonce": "nonce-456",
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
        **changes,
    }


def _code_for(server: FakeTenantServer, person: str, verifier: str, **changes: str) -> str:
    """Pick ``person`` on the authorize page; the code in the redirect back to the app."""
    answer = requests.post(
        f"{_base(server)}/oauth2/v2.0/authorize",
        data={**_authorize_params(server, verifier, **changes), "user": person},
        verify=str(server.ca_path),
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(changes.get("redirect_uri", REDIRECT) + "?")
    query = dict(parse_qsl(urlsplit(location).query))
    assert query["state"] == "state-123"
    return query["code"]


def _redeem(
    server: FakeTenantServer, issued: str, verifier: str, **changes: str
) -> requests.Response:
    app = server.scenario.app
    return requests.post(
        f"{_base(server)}/oauth2/v2.0/token",
        data={
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "grant_type": "authorization_code",
            "code": issued,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "scope": "openid profile offline_access",
            **changes,
        },
        verify=str(server.ca_path),
        timeout=10,
    )


def test_authorize_page_lists_staff_by_role_then_a_pupil_and_a_guest(
    tenant: FakeTenantServer,
) -> None:
    """The simulated sign-in page names the tenant and offers every staff member, the DSL first,
    then one pupil and one guest account (to test that the app refuses them)."""
    verifier = secrets.token_urlsafe(48)
    url = f"{_base(tenant)}/oauth2/v2.0/authorize?{urlencode(_authorize_params(tenant, verifier))}"

    page = requests.get(url, verify=str(tenant.ca_path), timeout=10)

    assert page.status_code == 200
    assert "<h1>Sign in to Bramham and Shadwell Federation (simulated)</h1>" in page.text
    offered = re.findall(r'name="user" value="([^"]+)"', page.text)
    assert offered == ["dsl", "head", "teacher", "pupil1", "visitor"]
    # The request's parameters travel on in the form, escaped.
    assert 'name="state" value="state-123"' in page.text


def test_code_redeems_once_for_a_signed_id_token_with_the_claims_msal_needs(
    tenant: FakeTenantServer,
) -> None:
    """The id token is RS256-signed with the key the JWKS publishes, for this app and tenant."""
    verifier = secrets.token_urlsafe(48)
    code = _code_for(tenant, "teacher", verifier)

    answer = _redeem(tenant, code, verifier)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    keys = requests.get(
        f"{_base(tenant)}/discovery/v2.0/keys", verify=str(tenant.ca_path), timeout=10
    )
    key = jwt.PyJWKSet.from_dict(keys.json()).keys[0]
    claims = jwt.decode(
        body["id_token"],
        key=key.key,
        algorithms=["RS256"],
        audience=tenant.scenario.app.client_id,
        issuer=f"{_base(tenant)}/v2.0",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["oid"] == tenant.scenario.person_id("teacher")
    assert claims["tid"] == tenant.scenario.tenant.id
    assert claims["name"] == "Tess Teacher"
    assert claims["preferred_username"] == "teacher@bramhamshadwell.sch.uk"
    assert claims["nonce"] == "nonce-456"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["iat"] == int(tenant.state.now().timestamp())
    assert jwt.get_unverified_header(body["id_token"])["kid"] == key.key_id
    assert body["scope"] == "openid profile offline_access"
    assert {"access_token", "refresh_token", "client_info", "expires_in"} <= set(body)


def test_a_delegated_access_token_does_not_open_graph(tenant: FakeTenantServer) -> None:
    """The token a member of staff gets is not an app token: Graph refuses it."""
    verifier = secrets.token_urlsafe(48)
    token = _redeem(tenant, _code_for(tenant, "dsl", verifier), verifier).json()["access_token"]

    answer = requests.get(
        f"{tenant.graph_base_url}/users",
        headers={"Authorization": f"Bearer {token}"},
        verify=str(tenant.ca_path),
        timeout=10,
    )

    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"code_verifier": "not-the-verifier-that-was-hashed-into-the-challenge"}, 50148),
        ({"redirect_uri": "http://127.0.0.1:8765/other"}, 500112),
        ({"code": "never-issued"}, 9002313),
    ],
)
def test_redemption_refusals_have_entras_shape(
    tenant: FakeTenantServer, changes: dict[str, str], code: int
) -> None:
    """A wrong PKCE verifier, another return address or an unknown code: invalid_grant with
    the AADSTS code Entra uses."""
    verifier = secrets.token_urlsafe(48)
    issued = _code_for(tenant, "teacher", verifier)

    answer = _redeem(tenant, issued, verifier, **changes)

    body = answer.json()
    assert (answer.status_code, body["error"], body["error_codes"]) == (
        400,
        "invalid_grant",
        [code],
    )
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert "\r\nTrace ID: " in body["error_description"]


def test_a_replayed_code_is_refused(tenant: FakeTenantServer) -> None:
    """A code works once; the second redemption gets AADSTS54005."""
    verifier = secrets.token_urlsafe(48)
    code = _code_for(tenant, "teacher", verifier)

    first = _redeem(tenant, code, verifier)
    second = _redeem(tenant, code, verifier)

    assert first.status_code == 200
    assert (second.status_code, second.json()["error_codes"]) == (400, [54005])


def test_an_expired_code_is_refused(tenant: FakeTenantServer, clock: Any) -> None:
    """Codes last ten minutes (AADSTS70008 after)."""
    verifier = secrets.token_urlsafe(48)
    code = _code_for(tenant, "teacher", verifier)
    clock.advance(minutes=11)

    answer = _redeem(tenant, code, verifier)

    assert answer.json()["error_codes"] == [70008]


def test_an_unregistered_return_address_gets_the_error_page_not_a_redirect(
    tenant: FakeTenantServer,
) -> None:
    """Entra never sends a code to an address the app did not register (AADSTS50011)."""
    verifier = secrets.token_urlsafe(48)
    params = _authorize_params(tenant, verifier, redirect_uri="https://evil.example/callback")

    shown = requests.get(
        f"{_base(tenant)}/oauth2/v2.0/authorize?{urlencode(params)}",
        verify=str(tenant.ca_path),
        timeout=10,
    )
    posted = requests.post(
        f"{_base(tenant)}/oauth2/v2.0/authorize",
        data={**params, "user": "teacher"},
        verify=str(tenant.ca_path),
        allow_redirects=False,
        timeout=10,
    )

    for answer in (shown, posted):
        assert answer.status_code == 400
        assert (
            "AADSTS50011: The redirect URI &#x27;https://evil.example/callback&#x27;" in answer.text
        )
        assert "location" not in answer.headers


def test_cancel_sends_access_denied_back_to_the_app(tenant: FakeTenantServer) -> None:
    verifier = secrets.token_urlsafe(48)
    answer = requests.post(
        f"{_base(tenant)}/oauth2/v2.0/authorize",
        data={**_authorize_params(tenant, verifier), "cancel": "1"},
        verify=str(tenant.ca_path),
        allow_redirects=False,
        timeout=10,
    )

    query = dict(parse_qsl(urlsplit(answer.headers["location"]).query))
    assert query["error"] == "access_denied"
    assert query["error_description"].startswith("AADSTS65004")
    assert query["state"] == "state-123"


def test_msal_runs_the_whole_auth_code_flow(tenant: FakeTenantServer) -> None:
    """MSAL's initiate_auth_code_flow / acquire_token_by_auth_code_flow work against the fake:
    PKCE, state and the hashed nonce all line up."""
    app = msal.ConfidentialClientApplication(
        tenant.scenario.app.client_id,
        client_credential=tenant.scenario.app.client_secret,
        authority=_base(tenant),
        instance_discovery=False,
        verify=str(tenant.ca_path),
    )
    flow = app.initiate_auth_code_flow([], redirect_uri=REDIRECT)
    params = dict(parse_qsl(urlsplit(flow["auth_uri"]).query))
    answer = requests.post(
        flow["auth_uri"].split("?")[0],
        data={**params, "user": "head"},
        verify=str(tenant.ca_path),
        allow_redirects=False,
        timeout=10,
    )
    response = dict(parse_qsl(urlsplit(answer.headers["location"]).query))

    result = app.acquire_token_by_auth_code_flow(flow, response)

    assert "error" not in result, result
    assert result["id_token_claims"]["oid"] == tenant.scenario.person_id("head")
    assert result["id_token_claims"]["name"] == "Hana Head"
