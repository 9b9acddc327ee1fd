"""Entra ID (login.microsoftonline.com) as far as MSAL uses it.

Tenant discovery (the v2.0 OpenID configuration), the signing keys, the v2.0 token endpoint for
the client-credentials grant (the poller) and the authorization-code grant with PKCE (staff
signing in to the web app), and the authorize endpoint: a simple page "Sign in to <tenant>
(simulated)" where a tester picks one of the scenario's people instead of typing a password.
Errors carry the bodies Entra ID really sends (AADSTS codes), so MSAL's own parsing and
throttling cache behave as they do against Microsoft.

MSAL caches failures itself (facts.md 3.4): an identical token request that got a 400 is not
sent again for 60 s, and one that got a 429/5xx or a ``Retry-After`` not for that long. A test
that forces a token error must use a new ``ConfidentialClientApplication`` to see the next try.

Redirect URIs: Entra ID only returns a code to an address registered on the app. The fake
accepts ``DEFAULT_REDIRECT_URIS`` (the web app's defaults on this machine) and whatever
:func:`allow_redirect_uri` adds (the demo and the tests, whose ports are chosen at run time).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from weakref import WeakKeyDictionary

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from remote_guard.fakegraph._errors import aad_error_body
from remote_guard.fakegraph.faults import format_retry_after
from remote_guard.fakegraph.tenant import Identity, TenantState

GRAPH_DEFAULT_SCOPES = frozenset(
    {
        "https://graph.microsoft.com/.default",
        "00000003-0000-0000-c000-000000000000/.default",
    }
)
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# The web app's own defaults (``[web]`` host 127.0.0.1 or localhost, port 8000), so that
# ``remote-guard fake-tenant --demo`` and ``remote-guard serve`` work together unchanged.
DEFAULT_REDIRECT_URIS = frozenset(
    {"http://127.0.0.1:8000/auth/callback", "http://localhost:8000/auth/callback"}
)
CODE_LIFETIME = timedelta(minutes=10)  # Entra ID's authorization codes last about ten minutes
ID_TOKEN_LIFETIME = timedelta(hours=1)
_ROLE_LABELS = {"dsl": "DSL", "deputy_dsl": "Deputy DSL", "slt": "SLT", "teacher": "Teacher"}
_ROLE_ORDER = ("dsl", "deputy_dsl", "slt", "teacher")


@dataclass
class _Code:
    """An authorization code as issued, and what its redemption must match."""

    client_id: str
    redirect_uri: str
    user_id: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    challenge_method: str
    expires_at: datetime
    redeemed: bool = False


@dataclass
class SignInState:
    """The fake's sign-in side: registered return addresses, codes issued, the signing key."""

    redirect_uris: set[str] = field(default_factory=lambda: set(DEFAULT_REDIRECT_URIS))
    codes: dict[str, _Code] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _key: rsa.RSAPrivateKey | None = None
    key_id: str = field(default_factory=lambda: secrets.token_urlsafe(20))

    @property
    def key(self) -> rsa.RSAPrivateKey:
        """The RSA key id tokens are signed with, made on first use (it takes a moment)."""
        with self.lock:
            if self._key is None:
                self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self._key

    def jwks(self, issuer: str) -> dict[str, Any]:
        """The JSON Web Key Set clients verify id tokens with."""
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        key = {"kty": "RSA", "use": "sig", "kid": self.key_id, "x5t": self.key_id, **public}
        return {"keys": [{**key, "issuer": issuer}]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.key_id})


_SIGN_IN: WeakKeyDictionary[TenantState, SignInState] = WeakKeyDictionary()
_SIGN_IN_LOCK = threading.Lock()


def sign_in_state(state: TenantState) -> SignInState:
    """The sign-in side of ``state``'s tenant, created on first use."""
    with _SIGN_IN_LOCK:
        found = _SIGN_IN.get(state)
        if found is None:
            found = _SIGN_IN[state] = SignInState()
        return found


def allow_redirect_uri(state: TenantState, uri: str) -> None:
    """Register ``uri`` as a return address of the app, as an admin would in Entra."""
    sign_in_state(state).redirect_uris.add(uri)


def _pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    if method == "plain":
        return secrets.compare_digest(verifier, challenge)
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    computed = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
    return secrets.compare_digest(computed, challenge)


def _b64url_json(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _with_query(url: str, params: dict[str, str]) -> str:
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


def sign_in_choices(state: TenantState) -> list[tuple[Identity, str]]:
    """Who the authorize page offers, with a label: every staff member (by role, then name),
    then one pupil and one guest account, to test that the web app refuses them."""
    scenario = state.scenario
    staff = [person for person in scenario.people if person.kind == "staff"]

    def order(person: Any) -> tuple[int, str]:
        ranks = [_ROLE_ORDER.index(role) for role in person.roles if role in _ROLE_ORDER]
        return (min(ranks, default=len(_ROLE_ORDER)), person.name)

    choices: list[tuple[Identity, str]] = []
    for person in sorted(staff, key=order):
        roles = ", ".join(_ROLE_LABELS[role] for role in _ROLE_ORDER if role in person.roles)
        label = " - ".join(part for part in (roles, person.job_title) if part) or "Staff"
        choices.append((state.identities[person.key], label))
    for kind, label in (("pupil", "Pupil account"), ("guest", "Guest account")):
        first = next((person for person in scenario.people if person.kind == kind), None)
        if first is not None:
            choices.append((state.identities[first.key], label))
    return choices


def _json(
    status: int, body: Any, *, correlation_id: str, extra: dict[str, str] | None = None
) -> Response:
    headers = {
        "Cache-Control": "no-store, no-cache",
        "Pragma": "no-cache",
        "x-ms-request-id": str(uuid.uuid4()),
        "client-request-id": correlation_id,
        "Content-Type": "application/json; charset=utf-8",
        **(extra or {}),
    }
    return Response(content=json.dumps(body).encode("utf-8"), status_code=status, headers=headers)


def _known_tenant(state: TenantState, tenant: str) -> bool:
    names = {
        state.tenant_id.lower(),
        state.domain.lower(),
        f"{state.domain.split('.')[0]}.onmicrosoft.com".lower(),
    }
    return tenant.lower() in names


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    """The claims of a JWT, read without checking its signature (the fake trusts any key)."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


class _Entra:
    """The identity endpoints of one fake tenant: discovery, keys, token, authorize."""

    def __init__(self, state: TenantState) -> None:
        self.state = state
        self.sign_in = sign_in_state(state)

    def base_url(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    def correlation(self, request: Request) -> str:
        return request.headers.get("client-request-id") or str(uuid.uuid4())

    def error(
        self,
        request: Request,
        status: int,
        code: str,
        aadsts: int,
        description: str,
        *,
        extra: dict[str, str] | None = None,
    ) -> Response:
        correlation_id = self.correlation(request)
        body = aad_error_body(
            code,
            aadsts,
            description,
            now=self.state.now(),
            correlation_id=correlation_id,
            error_uri_base=self.base_url(request),
        )
        return _json(status, body, correlation_id=correlation_id, extra=extra)

    def unknown_tenant(self, request: Request, tenant: str) -> Response:
        return self.error(
            request,
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud. Check with your subscription administrator, "
            "this may happen if there are no active subscriptions for the tenant.",
        )

    def forced(self, request: Request) -> Response | None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        with self.state.lock:
            fault = self.state.fault_plan.take_injection(request.method, path)
        if fault is None:
            return None
        extra = (
            {"Retry-After": format_retry_after(fault.retry_after)}
            if fault.retry_after is not None
            else None
        )
        code = (
            "temporarily_unavailable"
            if fault.status >= 500 or fault.status == 429
            else "invalid_request"
        )
        return self.error(
            request,
            fault.status,
            code,
            50196 if fault.status == 429 else 90033,
            "The server is temporarily unavailable.",
            extra=extra,
        )

    async def openid_configuration(self, tenant: str, request: Request) -> Response:
        forced_response = self.forced(request)
        if forced_response is not None:
            return forced_response
        if not _known_tenant(self.state, tenant):
            return self.unknown_tenant(request, tenant)
        base = self.base_url(request)
        tid = self.state.tenant_id
        document = {
            "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "kerberos_endpoint": f"{base}/{tid}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
        return _json(200, document, correlation_id=self.correlation(request))

    async def keys(self, tenant: str, request: Request) -> Response:
        if not _known_tenant(self.state, tenant):
            return self.unknown_tenant(request, tenant)
        # Access tokens stay opaque; the key signs the id tokens of staff signing in.
        body = self.sign_in.jwks(self.issuer(request))
        return _json(200, body, correlation_id=self.correlation(request))

    def issuer(self, request: Request) -> str:
        return f"{self.base_url(request)}/{self.state.tenant_id}/v2.0"

    def client_error(self, request: Request, form: dict[str, str]) -> Response | None:
        """Entra's answer when the app is unknown or its credential wrong; None when it is fine."""
        app = self.state.scenario.app
        client_id = form.get("client_id", "")
        if client_id != app.client_id:
            return self.error(
                request,
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.state.scenario.tenant.name}'. This can happen if the application has not "
                "been installed by the administrator of the tenant or consented to by any user "
                "in the tenant. You may have sent your authentication request to the wrong "
                "tenant.",
            )
        secret = form.get("client_secret")
        assertion = form.get("client_assertion")
        if secret is not None:
            if secret != app.client_secret:
                return self.error(
                    request,
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the "
                    "request is the client secret value, not the client secret ID, for a secret "
                    f"added to app '{app.client_id}'.",
                )
            if self.state.client_secret_expired:
                return self.error(
                    request,
                    401,
                    "invalid_client",
                    7000222,
                    f"The provided client secret keys for app '{app.client_id}' are expired. "
                    "Visit the Azure portal to create new keys for your app: "
                    "https://aka.ms/NewClientSecret, or consider using certificate credentials "
                    "for added security: https://aka.ms/certCreds.",
                )
            return None
        if assertion is not None:
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                return self.error(
                    request,
                    400,
                    "invalid_request",
                    50027,
                    "client_assertion_type must be "
                    "'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
                )
            claims = _jwt_claims(assertion)
            if claims is None:
                return self.error(
                    request,
                    401,
                    "invalid_client",
                    50027,
                    "Invalid JWT token. Token format not valid.",
                )
            if claims.get("iss") != client_id or claims.get("sub") != client_id:
                return self.error(
                    request,
                    401,
                    "invalid_client",
                    700021,
                    "Client assertion application identifier doesn't match 'client_id' parameter.",
                )
            return None
        return self.error(
            request,
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )

    async def token(self, tenant: str, request: Request) -> Response:
        forced_response = self.forced(request)
        if forced_response is not None:
            return forced_response
        if not _known_tenant(self.state, tenant):
            return self.unknown_tenant(request, tenant)
        raw = (await request.body()).decode("utf-8", errors="replace")
        form = {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}
        grant_type = form.get("grant_type", "")
        if not form.get("client_id", ""):
            return self.error(
                request,
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        if grant_type not in ("client_credentials", "authorization_code"):
            return self.error(
                request,
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        refused = self.client_error(request, form)
        if refused is not None:
            return refused
        if grant_type == "client_credentials":
            scopes = form.get("scope", "").split()
            if len(scopes) != 1 or scopes[0] not in GRAPH_DEFAULT_SCOPES:
                return self.error(
                    request,
                    400,
                    "invalid_scope",
                    70011,
                    "The provided value for the input parameter 'scope' is not valid. The scope "
                    f"'{form.get('scope', '')}' is not valid.",
                )
        if grant_type == "authorization_code":
            return self.redeem_code(request, form)
        access_token, lifetime = self.state.issue_token(form["client_id"])
        return _json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access_token,
            },
            correlation_id=self.correlation(request),
        )

    def redeem_code(self, request: Request, form: dict[str, str]) -> Response:
        """The authorization-code grant: one use per code, the same app and return address as
        the authorize request, and the PKCE verifier that hashes to its challenge."""
        code_value = form.get("code", "")
        if not code_value:
            return self.error(
                request,
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'code'.",
            )
        now = self.state.now()
        with self.sign_in.lock:
            code = self.sign_in.codes.get(code_value)
            replayed = code is not None and code.redeemed
            if code is not None:
                # Spent even if the rest of the request is wrong, as Entra does.
                code.redeemed = True
        if code is None:
            return self.error(
                request,
                400,
                "invalid_grant",
                9002313,
                "Invalid request. Request is malformed or invalid.",
            )
        if replayed:
            return self.error(
                request,
                400,
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                "code or use an existing refresh token.",
            )
        if now >= code.expires_at:
            return self.error(
                request,
                400,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to "
                "inactivity. Send a new interactive authorization request for this user and "
                "resource.",
            )
        if code.client_id != form["client_id"]:
            return self.error(
                request, 400, "invalid_grant", 70000, "Provided grant is invalid or malformed."
            )
        if form.get("redirect_uri", "") != code.redirect_uri:
            return self.error(
                request,
                400,
                "invalid_grant",
                500112,
                f"The reply address '{form.get('redirect_uri', '')}' does not match the reply "
                f"address '{code.redirect_uri}' provided when requesting Authorization code.",
            )
        if code.code_challenge is not None and not _pkce_matches(
            form.get("code_verifier", ""), code.code_challenge, code.challenge_method
        ):
            return self.error(
                request,
                400,
                "invalid_grant",
                50148,
                "The code_verifier does not match the code_challenge supplied in the "
                "authorization request for PKCE.",
            )
        user = self.state.users[code.user_id]
        lifetime = int(ID_TOKEN_LIFETIME.total_seconds())
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": code.scope,
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            # A delegated token the fake's Graph does not accept: the web app reads Graph with
            # its own app token, never with a member of staff's.
            "access_token": secrets.token_urlsafe(48),
            "refresh_token": secrets.token_urlsafe(48),
            "client_info": _b64url_json({"uid": user.id, "utid": self.state.tenant_id}),
        }
        if "openid" in code.scope.split():
            body["id_token"] = self.id_token(request, code, user, now)
        return _json(200, body, correlation_id=self.correlation(request))

    def id_token(self, request: Request, code: _Code, user: Identity, now: datetime) -> str:
        issued = int(now.timestamp())
        claims: dict[str, Any] = {
            "aud": code.client_id,
            "iss": self.issuer(request),
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(ID_TOKEN_LIFETIME.total_seconds()),
            "name": user.display_name,
            "oid": user.id,
            "preferred_username": user.upn or user.email or "",
            # Entra's sub is pairwise: the same person has another sub in another app.
            "sub": _b64url_json({"oid": user.id, "app": code.client_id})[:43],
            "tid": self.state.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }
        if code.nonce is not None:
            claims["nonce"] = code.nonce
        return self.sign_in.sign(claims)

    # --- the authorize endpoint: a page to pick who signs in ---------------------------------

    def page(self, status: int, title: str, body: str) -> HTMLResponse:
        document = (
            '<!doctype html><html lang="en-GB"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_PAGE_CSS}</style></head>"
            f'<body><main class="card">{body}</main></body></html>'
        )
        return HTMLResponse(
            document,
            status_code=status,
            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
        )

    def error_page(self, request: Request, aadsts: int, description: str) -> HTMLResponse:
        """The page Entra shows when it cannot send the browser back to the app."""
        stamp = self.state.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = (
            "<h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p>"
            f'<p class="error">AADSTS{aadsts}: {html.escape(description)}</p>'
            f"<dl><dt>Request Id</dt><dd>{uuid.uuid4()}</dd>"
            f"<dt>Correlation Id</dt><dd>{html.escape(self.correlation(request))}</dd>"
            f"<dt>Timestamp</dt><dd>{stamp}</dd></dl>"
        )
        return self.page(400, "Sign in to your account", body)

    def authorize_problem(
        self, request: Request, tenant: str, params: dict[str, str]
    ) -> Response | None:
        """An error page for what Entra cannot redirect (unknown tenant, app or return address),
        or an error redirect for a request it can answer; None when the request is good."""
        if not _known_tenant(self.state, tenant):
            return self.error_page(
                request,
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
                "ID and are signing into the correct cloud.",
            )
        client_id = params.get("client_id", "")
        if client_id != self.state.scenario.app.client_id:
            return self.error_page(
                request,
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.state.scenario.tenant.name}'.",
            )
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in self.sign_in.redirect_uris:
            return self.error_page(
                request,
                50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match "
                f"the redirect URIs configured for the application '{client_id}'. Make sure "
                "the redirect URI sent in the request matches one added to your application "
                "in the Azure portal.",
            )
        if params.get("response_type") != "code":
            return self.error_redirect(
                params,
                "unsupported_response_type",
                700054,
                f"response_type '{params.get('response_type', '')}' is not enabled for the "
                "application.",
            )
        method = params.get("code_challenge_method", "plain")
        if params.get("code_challenge") and method not in ("S256", "plain"):
            return self.error_redirect(
                params,
                "invalid_request",
                501491,
                f"Invalid size of Code_Challenge parameter or code_challenge_method '{method}'.",
            )
        return None

    def error_redirect(
        self, params: dict[str, str], code: str, aadsts: int, description: str
    ) -> Response:
        answer = {
            "error": code,
            "error_description": f"AADSTS{aadsts}: {description}",
            "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
        }
        if params.get("state"):
            answer["state"] = params["state"]
        return self.answer_app(params, answer)

    def answer_app(self, params: dict[str, str], answer: dict[str, str]) -> Response:
        """Send the browser back to the app with ``answer``, by query or by a posted form."""
        redirect_uri = params["redirect_uri"]
        if params.get("response_mode") == "form_post":
            fields = "".join(
                f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
                for name, value in answer.items()
            )
            body = (
                f'<form method="post" action="{html.escape(redirect_uri)}">{fields}'
                "<p>Signed in. Continue to the app.</p>"
                '<button type="submit">Continue</button></form>'
            )
            return self.page(200, "Continue", body)
        return RedirectResponse(_with_query(redirect_uri, answer), status_code=302)

    async def authorize(self, tenant: str, request: Request) -> Response:
        params = dict(request.query_params)
        problem = self.authorize_problem(request, tenant, params)
        if problem is not None:
            return problem
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, value in params.items()
        )
        buttons = "".join(
            '<li><button type="submit" name="user" value="'
            f'{html.escape(identity.key)}"><span class="name">'
            f"{html.escape(identity.display_name)}</span>"
            f'<span class="detail">{html.escape(label)}</span>'
            f'<span class="detail">{html.escape(identity.upn or "")}</span></button></li>'
            for identity, label in sign_in_choices(self.state)
        )
        tenant_name = self.state.scenario.tenant.name
        body = (
            f"<h1>Sign in to {html.escape(tenant_name)} (simulated)</h1>"
            "<p>This is remote_guard's simulated Microsoft sign-in page. Nobody types a "
            "password here: pick who to sign in as.</p>"
            f'<form method="post" action="{html.escape(request.url.path)}">{hidden}'
            f'<ul class="people">{buttons}</ul>'
            '<p><button type="submit" name="cancel" value="1" class="cancel">'
            "Cancel sign-in</button></p></form>"
        )
        return self.page(200, f"Sign in to {tenant_name} (simulated)", body)

    async def authorize_choice(self, tenant: str, request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", errors="replace")
        params = {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}
        choice = params.pop("user", None)
        cancelled = params.pop("cancel", None)
        problem = self.authorize_problem(request, tenant, params)
        if problem is not None:
            return problem
        if cancelled is not None or choice is None:
            return self.error_redirect(
                params,
                "access_denied",
                50126 if choice is None and cancelled is None else 65004,
                "User declined to consent to access the app.",
            )
        identity = self.state.identities.get(choice)
        if identity is None or identity.id not in self.state.users:
            return self.error_page(
                request,
                50034,
                f"The user account {choice} does not exist in the "
                f"{self.state.scenario.tenant.name} directory.",
            )
        code_value = secrets.token_urlsafe(64)
        with self.sign_in.lock:
            self.sign_in.codes[code_value] = _Code(
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                user_id=identity.id,
                scope=params.get("scope", ""),
                nonce=params.get("nonce"),
                code_challenge=params.get("code_challenge") or None,
                challenge_method=params.get("code_challenge_method", "plain"),
                expires_at=self.state.now() + CODE_LIFETIME,
            )
        answer = {"code": code_value}
        if params.get("state"):
            answer["state"] = params["state"]
        answer["session_state"] = str(uuid.uuid4())
        return self.answer_app(params, answer)


def identity_router(state: TenantState) -> APIRouter:
    """Routes for discovery, the signing keys, the token endpoint and the authorize page."""
    entra = _Entra(state)
    router = APIRouter()
    router.add_api_route(
        "/{tenant}/v2.0/.well-known/openid-configuration",
        entra.openid_configuration,
        methods=["GET"],
    )
    router.add_api_route("/{tenant}/discovery/v2.0/keys", entra.keys, methods=["GET"])
    router.add_api_route("/{tenant}/oauth2/v2.0/token", entra.token, methods=["POST"])
    router.add_api_route("/{tenant}/oauth2/v2.0/authorize", entra.authorize, methods=["GET"])
    router.add_api_route(
        "/{tenant}/oauth2/v2.0/authorize", entra.authorize_choice, methods=["POST"]
    )
    return router


_PAGE_CSS = (
    "body{font-family:system-ui,sans-serif;background:#f2f2f2;margin:0;padding:2rem 1rem;"
    "color:#1b1b1b}.card{max-width:34rem;margin:0 auto;background:#fff;padding:1.5rem 2rem;"
    "border:1px solid #8a8886}h1{font-size:1.4rem}.people{list-style:none;padding:0}"
    ".people li{margin:.4rem 0}.people button{width:100%;text-align:left;padding:.6rem .8rem;"
    "background:#fff;border:1px solid #605e5c;font:inherit;cursor:pointer}"
    ".people button:hover,.people button:focus{background:#e1dfdd}"
    "button:focus{outline:3px solid #0f6cbd;outline-offset:2px}"
    ".name{display:block;font-weight:600}.detail{display:block;font-size:.9rem;color:#3b3a39}"
    ".cancel{padding:.5rem 1rem;font:inherit}.error{color:#a4262c;font-weight:600}"
)
