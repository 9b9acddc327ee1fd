"""Entra ID (login.microsoftonline.com) as far as MSAL's client-credentials flow uses it.

Tenant discovery (the v2.0 OpenID configuration) and the v2.0 token endpoint, with the error
bodies Entra ID really sends (AADSTS codes), so MSAL's own parsing and throttling cache behave
as they do against Microsoft.

MSAL caches failures itself (facts.md 3.4): an identical token request that got a 400 is not
sent again for 60 s, and one that got a 429/5xx or a ``Retry-After`` not for that long. A test
that forces a token error must use a new ``ConfidentialClientApplication`` to see the next try.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response

from remote_guard.fakegraph._errors import aad_error_body
from remote_guard.fakegraph.faults import format_retry_after
from remote_guard.fakegraph.tenant import TenantState

GRAPH_DEFAULT_SCOPES = frozenset(
    {
        "https://graph.microsoft.com/.default",
        "00000003-0000-0000-c000-000000000000/.default",
    }
)
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


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


def identity_router(state: TenantState) -> APIRouter:
    """Routes for ``/{tenant}/v2.0/.well-known/openid-configuration`` and the token endpoint."""
    router = APIRouter()

    def base_url(request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    def correlation(request: Request) -> str:
        return request.headers.get("client-request-id") or str(uuid.uuid4())

    def error(
        request: Request,
        status: int,
        code: str,
        aadsts: int,
        description: str,
        *,
        extra: dict[str, str] | None = None,
    ) -> Response:
        correlation_id = correlation(request)
        body = aad_error_body(
            code,
            aadsts,
            description,
            now=state.now(),
            correlation_id=correlation_id,
            error_uri_base=base_url(request),
        )
        return _json(status, body, correlation_id=correlation_id, extra=extra)

    def unknown_tenant(request: Request, tenant: str) -> Response:
        return error(
            request,
            400,
            "invalid_tenant",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud. Check with your subscription administrator, "
            "this may happen if there are no active subscriptions for the tenant.",
        )

    def forced(request: Request) -> Response | None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        with state.lock:
            fault = state.fault_plan.take_injection(request.method, path)
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
        return error(
            request,
            fault.status,
            code,
            50196 if fault.status == 429 else 90033,
            "The server is temporarily unavailable.",
            extra=extra,
        )

    @router.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def openid_configuration(tenant: str, request: Request) -> Response:
        forced_response = forced(request)
        if forced_response is not None:
            return forced_response
        if not _known_tenant(state, tenant):
            return unknown_tenant(request, tenant)
        base = base_url(request)
        tid = state.tenant_id
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
        return _json(200, document, correlation_id=correlation(request))

    @router.get("/{tenant}/discovery/v2.0/keys")
    async def keys(tenant: str, request: Request) -> Response:
        if not _known_tenant(state, tenant):
            return unknown_tenant(request, tenant)
        # Access tokens here are opaque, so there is nothing for a client to verify.
        return _json(200, {"keys": []}, correlation_id=correlation(request))

    @router.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> Response:
        forced_response = forced(request)
        if forced_response is not None:
            return forced_response
        if not _known_tenant(state, tenant):
            return unknown_tenant(request, tenant)
        raw = (await request.body()).decode("utf-8", errors="replace")
        form = {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}
        app = state.scenario.app
        client_id = form.get("client_id", "")
        grant_type = form.get("grant_type", "")
        if not client_id:
            return error(
                request,
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        if grant_type != "client_credentials":
            return error(
                request,
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        if client_id != app.client_id:
            return error(
                request,
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{state.scenario.tenant.name}'. This can happen if the application has not "
                "been installed by the administrator of the tenant or consented to by any user "
                "in the tenant. You may have sent your authentication request to the wrong "
                "tenant.",
            )
        scopes = form.get("scope", "").split()
        if len(scopes) != 1 or scopes[0] not in GRAPH_DEFAULT_SCOPES:
            return error(
                request,
                400,
                "invalid_scope",
                70011,
                "The provided value for the input parameter 'scope' is not valid. The scope "
                f"'{form.get('scope', '')}' is not valid.",
            )
        secret = form.get("client_secret")
        assertion = form.get("client_assertion")
        if secret is not None:
            if secret != app.client_secret:
                return error(
                    request,
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the "
                    "request is the client secret value, not the client secret ID, for a secret "
                    f"added to app '{app.client_id}'.",
                )
        elif assertion is not None:
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                return error(
                    request,
                    400,
                    "invalid_request",
                    50027,
                    "client_assertion_type must be "
                    "'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
                )
            claims = _jwt_claims(assertion)
            if claims is None:
                return error(
                    request,
                    401,
                    "invalid_client",
                    50027,
                    "Invalid JWT token. Token format not valid.",
                )
            if claims.get("iss") != client_id or claims.get("sub") != client_id:
                return error(
                    request,
                    401,
                    "invalid_client",
                    700021,
                    "Client assertion application identifier doesn't match 'client_id' parameter.",
                )
        else:
            return error(
                request,
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        access_token, lifetime = state.issue_token(client_id)
        return _json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access_token,
            },
            correlation_id=correlation(request),
        )

    return router
