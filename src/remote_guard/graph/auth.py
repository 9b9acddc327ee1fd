"""Tokens for Graph: one MSAL confidential client per tenant, its token cache reused."""

from __future__ import annotations

import json
import threading
from typing import Any

import msal
import requests
import requests.adapters
import structlog

from remote_guard.graph.errors import GraphAuthError
from remote_guard.settings import TenantSettings

GRAPH_SCOPE = "https://graph.microsoft.com/.default"

log = structlog.get_logger(__name__)


class PinnedSession(requests.Session):
    """A session whose CA bundle and timeout apply to every request.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override a session's ``verify``;
    MSAL sets only the session's, so a configured ``ca_bundle`` would be ignored wherever those
    variables are set (common on proxied school networks). Passing them per request wins.
    """

    def __init__(self, *, verify: bool | str, timeout: float) -> None:
        super().__init__()
        self._pinned_verify = verify
        self._pinned_timeout = timeout
        adapter = requests.adapters.HTTPAdapter(max_retries=1)
        self.mount("https://", adapter)

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs["verify"] = self._pinned_verify
        kwargs.setdefault("timeout", self._pinned_timeout)
        return super().request(method, url, *args, **kwargs)


def client_credential(tenant: TenantSettings) -> str | dict[str, str]:
    """The app's credential as MSAL takes it: the certificate (preferred) or the client secret.

    Raises:
        GraphAuthError: neither is configured.
        OSError: the certificate file cannot be read.
    """
    if tenant.certificate_path is not None:
        pem = tenant.certificate_path.read_text(encoding="utf-8")
        return {
            "private_key": pem,
            "thumbprint": tenant.certificate_thumbprint or "",
            "public_certificate": pem,
        }
    if tenant.client_secret is None:
        raise GraphAuthError("no client secret or certificate is configured", endpoint="token")
    return tenant.client_secret.get_secret_value()


class TokenProvider:
    """Hands out app-only access tokens for one tenant.

    The MSAL application is built on first use (not at import or construction), then kept, so
    its in-memory token cache serves every later call until the token is close to expiry.
    """

    def __init__(self, tenant: TenantSettings) -> None:
        self._tenant = tenant
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()
        self.tokens_issued = 0  # tokens obtained from the identity platform, not the cache

    def _credential(self) -> str | dict[str, str]:
        return client_credential(self._tenant)

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            verify: bool | str = (
                str(self._tenant.ca_bundle) if self._tenant.ca_bundle is not None else True
            )
            options: dict[str, Any] = {
                "authority": self._tenant.authority,
                "http_client": PinnedSession(verify=verify, timeout=self._tenant.timeout_seconds),
            }
            if not self._tenant.is_real_microsoft:
                # Instance discovery asks Microsoft's public host about the authority; a
                # sovereign or private authority must skip it.
                options["instance_discovery"] = False
            try:
                self._app = msal.ConfidentialClientApplication(
                    self._tenant.client_id, client_credential=self._credential(), **options
                )
            except ValueError as exc:
                # MSAL says the same for a tenant that does not exist (4xx: permanent) and for a
                # discovery answer that is not JSON (an outage); what it caught tells them apart.
                raise GraphAuthError(
                    f"the identity platform at {self._tenant.authority} refused tenant discovery: {exc}",
                    endpoint="openid-configuration",
                    retryable=isinstance(exc.__context__, json.JSONDecodeError),
                ) from exc
            except (requests.RequestException, msal.exceptions.MsalError, RuntimeError) as exc:
                # MSAL raises its own MsalServiceError (or a bare RuntimeError) when discovery
                # answers 5xx: an outage, worth trying again later.
                raise GraphAuthError(
                    f"cannot reach the identity platform at {self._tenant.authority_host}: "
                    f"{type(exc).__name__}",
                    endpoint="openid-configuration",
                    retryable=True,
                ) from exc
        return self._app

    def token(self) -> str:
        """Return a valid access token, from the cache when MSAL has one.

        Raises:
            GraphAuthError: the identity platform refused (wrong secret, unknown app; permanent)
                or could not be reached (retryable).
        """
        with self._lock:
            app = self._application()
            try:
                result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                raise GraphAuthError(
                    f"the token endpoint failed with HTTP {status}",
                    status=status,
                    endpoint="token",
                    retryable=True,
                ) from exc
            except requests.RequestException as exc:
                raise GraphAuthError(
                    f"cannot reach the token endpoint: {type(exc).__name__}",
                    endpoint="token",
                    retryable=True,
                ) from exc
            except (msal.exceptions.MsalError, ValueError) as exc:
                # MsalServiceError: the token endpoint answered 5xx (MSAL keeps that answer for
                # its Retry-After and repeats it meanwhile); ValueError: an answer that is not
                # JSON. Both are outages on Entra's side, not a refused credential.
                raise GraphAuthError(
                    f"the token endpoint failed: {type(exc).__name__}: {str(exc)[:200]}",
                    endpoint="token",
                    retryable=True,
                ) from exc
        if "access_token" in result:
            if result.get("token_source") == "identity_provider":
                self.tokens_issued += 1
                log.info("graph.token_acquired", expires_in=result.get("expires_in"))
            return str(result["access_token"])
        error = str(result.get("error", "unknown_error"))
        # error_description names the app and the AADSTS code; it never contains the secret.
        description = str(result.get("error_description", "")).split("\r\n", 1)[0]
        raise GraphAuthError(
            f"the identity platform refused the app's credentials: {error}: {description}",
            code=error,
            endpoint="token",
            retryable=error in {"temporarily_unavailable", "server_error"},
        )

    def invalidate(self) -> None:
        """Forget cached tokens, e.g. after Graph answered 401 to one of them."""
        with self._lock:
            if self._app is not None:
                self._app.remove_tokens_for_client()
