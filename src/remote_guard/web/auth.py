"""Signing staff in with Microsoft Entra ID, and the current user for every route.

Sign-in is the OpenID Connect authorization-code flow with PKCE, through MSAL's
``initiate_auth_code_flow`` and ``acquire_token_by_auth_code_flow``. The flow (state, nonce,
PKCE verifier) is kept in the server-side session that ``/sign-in`` creates. The id token is
checked here (signature against the tenant's published keys, audience, issuer, tenant, nonce,
expiry): MSAL no longer checks it. The user is the token's ``oid``; what they may do comes
from the configured Entra groups read with the app's own Graph client (``people``), never
from the browser.

Routes use these dependencies::

    @router.get("/dsl")
    def queue(
        request: Request, user: Annotated[User, Depends(requires(access.can_see_dsl_queue))]
    ) -> Response: ...

    @router.get("/sessions/{session_id}")
    def session_page(request: Request, user: CurrentUser, session_id: str) -> Response:
        row = ...
        if row is None or not access.can_see_session(user, row):
            deny()
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, NoReturn, Protocol

import jwt
import msal
import requests
import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from remote_guard.clock import Clock
from remote_guard.graph.auth import PinnedSession, client_credential
from remote_guard.graph.errors import GraphAuthError
from remote_guard.settings import TenantSettings
from remote_guard.store.db import transaction
from remote_guard.web import audit_log
from remote_guard.web.access import User, can_use_app, home_path
from remote_guard.web.context import web_context
from remote_guard.web.people import SIGN_IN_MAX_AGE, Refusal
from remote_guard.web.render import render
from remote_guard.web.security import WebSession

log = structlog.get_logger(__name__)

# MSAL adds openid, profile and offline_access itself; no access token to any API is wanted,
# because the web app reads Graph with its own application permissions.
SIGN_IN_SCOPES: list[str] = []
CLOCK_SKEW = timedelta(minutes=5)
_FORM_POST_ADVICE = "response_mode='form_post' is recommended"


class SignInError(Exception):
    """Sign-in did not complete. ``str()`` is safe to show: no token and no internal detail."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # for the log and the audit trail


class NotSignedInError(Exception):
    """The request needs a signed-in member of staff and has none (pages redirect to sign-in;
    the API answers 401)."""


@dataclass(frozen=True)
class SignedIn:
    """Who the id token says signed in."""

    user_id: str  # oid
    name: str
    username: str  # preferred_username
    tenant_id: str


class SignInFlow(Protocol):
    def begin(self) -> dict[str, Any]:
        """A new flow for the session; ``flow["auth_uri"]`` is where to send the browser."""
        ...

    def complete(self, flow: dict[str, Any], response: dict[str, str]) -> SignedIn:
        """Redeem the code Entra sent back for a checked id token."""
        ...


class _NoTokenCache(msal.TokenCache):  # type: ignore[misc]
    """MSAL keeps what it obtains in its token cache; the web app wants none of a user's tokens
    kept in memory, so nothing is added."""

    def add(self, event: Any, **kwargs: Any) -> None:
        return None


class EntraSignIn:
    """The authorization-code flow against the configured tenant (or the fake tenant)."""

    def __init__(self, tenant: TenantSettings, *, redirect_uri: str, clock: Clock) -> None:
        self._tenant = tenant
        self._redirect_uri = redirect_uri
        self._clock = clock
        verify: bool | str = str(tenant.ca_bundle) if tenant.ca_bundle is not None else True
        self._http = PinnedSession(verify=verify, timeout=tenant.timeout_seconds)
        self._lock = threading.Lock()
        # MSAL recommends response_mode=form_post. Entra's form post back is a cross-site POST,
        # which a SameSite=Lax cookie does not accompany, so the flow could not be tied to this
        # browser. The query mode is kept; the code it carries is single-use, bound to the PKCE
        # verifier, and never sent to another site as a referrer (Referrer-Policy: same-origin).
        warnings.filterwarnings("ignore", message=_FORM_POST_ADVICE, category=UserWarning)
        self._app: msal.ConfidentialClientApplication | None = None
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, Any] = {}

    def _application(self) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app is None:
                options: dict[str, Any] = {
                    "authority": self._tenant.authority,
                    "http_client": self._http,
                    "token_cache": _NoTokenCache(),
                }
                if not self._tenant.is_real_microsoft:
                    options["instance_discovery"] = False
                try:
                    self._app = msal.ConfidentialClientApplication(
                        self._tenant.client_id,
                        client_credential=client_credential(self._tenant),
                        **options,
                    )
                except (ValueError, requests.RequestException, GraphAuthError, OSError) as exc:
                    raise _unreachable(exc) from exc
            return self._app

    def begin(self) -> dict[str, Any]:
        """Start a flow.

        Raises:
            SignInError: the identity platform cannot be reached or refused discovery.
        """
        app = self._application()
        try:
            flow: dict[str, Any] = app.initiate_auth_code_flow(
                SIGN_IN_SCOPES, redirect_uri=self._redirect_uri
            )
        except (ValueError, requests.RequestException) as exc:
            raise _unreachable(exc) from exc
        return flow

    def complete(self, flow: dict[str, Any], response: dict[str, str]) -> SignedIn:
        """Redeem the code and check the id token.

        Raises:
            SignInError: the person cancelled, Entra refused, the answer belongs to another
                sign-in, or the id token is not valid for this app and tenant.
        """
        app = self._application()
        try:
            result = app.acquire_token_by_auth_code_flow(flow, response, scopes=SIGN_IN_SCOPES)
        except ValueError as exc:  # MSAL: the state does not match this flow
            raise SignInError(
                "This sign-in answer does not belong to the sign-in this browser started "
                "(it may have been opened in another tab or browser). Please sign in again.",
                reason=f"state: {exc}",
            ) from exc
        except RuntimeError as exc:  # MSAL: the nonce does not match
            raise SignInError(
                "Microsoft's answer could not be checked. Please sign in again.",
                reason=f"nonce: {exc}",
            ) from exc
        except requests.RequestException as exc:
            raise _unreachable(exc) from exc
        if "error" in result:
            error = str(result.get("error"))
            description = str(result.get("error_description", "")).split("\r\n", 1)[0]
            code = description.split(":", 1)[0] if description.startswith("AADSTS") else ""
            if error == "access_denied":
                message = "Sign-in was cancelled. You can start again whenever you are ready."
            else:
                message = (
                    "Microsoft's sign-in service did not let you in"
                    + (f" ({code})" if code else "")
                    + ". If this keeps happening, tell your IT support; the code helps them."
                )
            raise SignInError(message, reason=f"{error}: {description}")
        id_token = result.get("id_token")
        if not isinstance(id_token, str):
            raise SignInError(
                "Microsoft's answer had no identity in it. Please sign in again.",
                reason="no id_token",
            )
        claims = self.check_id_token(id_token, nonce=str(flow.get("nonce", "")))
        return SignedIn(
            user_id=str(claims["oid"]),
            name=str(claims.get("name") or ""),
            username=str(claims.get("preferred_username") or ""),
            tenant_id=str(claims["tid"]),
        )

    # --- the id token -------------------------------------------------------------------------

    def _discovery(self) -> dict[str, Any]:
        if self._metadata is None:
            url = f"{self._tenant.authority}/v2.0/.well-known/openid-configuration"
            answer = self._http.get(url)
            answer.raise_for_status()
            self._metadata = dict(answer.json())
        return self._metadata

    def _signing_key(self, key_id: str) -> Any:
        if key_id not in self._keys:
            # A key not seen yet: Entra rotates its keys, so read the set again.
            answer = self._http.get(str(self._discovery()["jwks_uri"]))
            answer.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(answer.json())
            self._keys = {key.key_id: key.key for key in key_set.keys if key.key_id}
        if key_id not in self._keys:
            raise jwt.InvalidTokenError(f"no published key has the id {key_id!r}")
        return self._keys[key_id]

    def check_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of an id token that is valid for this app and tenant now.

        Raises:
            SignInError: a bad signature, audience, issuer, tenant, nonce or time.
        """
        try:
            header = jwt.get_unverified_header(id_token)
            with self._lock:
                metadata = self._discovery()
                key = self._signing_key(str(header.get("kid", "")))
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=["RS256"],
                audience=self._tenant.client_id,
                issuer=str(metadata["issuer"]),
                # Times are checked below against the app's clock (the demo's may be simulated).
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["aud", "iss", "exp", "iat", "oid", "tid"],
                },
            )
        except (jwt.PyJWTError, requests.RequestException, KeyError, ValueError) as exc:
            raise SignInError(
                "Microsoft's answer could not be checked. Please sign in again.",
                reason=f"id token: {type(exc).__name__}: {exc}",
            ) from exc
        now = self._clock().timestamp()
        skew = CLOCK_SKEW.total_seconds()
        problems = []
        if float(claims["exp"]) < now - skew:
            problems.append("expired")
        if float(claims["iat"]) > now + skew:
            problems.append("issued in the future")
        tenant = self._tenant.tenant_id.lower()
        if "." not in tenant and str(claims["tid"]).lower() != tenant:
            problems.append("another tenant")
        # MSAL sends the SHA-256 of the flow's nonce; the token must echo it.
        if nonce and claims.get("nonce") != hashlib.sha256(nonce.encode("ascii")).hexdigest():
            problems.append("nonce")
        if problems:
            raise SignInError(
                "Microsoft's answer could not be checked. Please sign in again.",
                reason="id token: " + ", ".join(problems),
            )
        return claims


def _unreachable(exc: Exception) -> SignInError:
    return SignInError(
        "remote_guard cannot reach Microsoft's sign-in service just now. Please try again in "
        "a few minutes; if it keeps happening, tell your IT support.",
        reason=f"{type(exc).__name__}: {exc}",
    )


# --- the current user -------------------------------------------------------------------------


def optional_user(request: Request) -> User | None:
    """The signed-in member of staff, or None (resolved once per request by the app's
    request-context middleware).

    Raises:
        RosterUnavailableError: who is who cannot be read from Microsoft 365 just now.
    """
    problem = getattr(request.state, "user_problem", None)
    if problem is not None:
        raise problem
    user: User | None = getattr(request.state, "user", None)
    return user


def current_user(request: Request) -> User:
    """The signed-in member of staff (a FastAPI dependency).

    Raises:
        NotSignedInError: nobody is signed in (pages redirect to sign-in, the API answers 401).
        RosterUnavailableError: who is who cannot be read from Microsoft 365 just now.
    """
    user = optional_user(request)
    if user is None or not can_use_app(user):
        raise NotSignedInError
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def deny() -> NoReturn:
    """Refuse the request with 403 and the app's "not allowed" page (or JSON for the API).

    Raises:
        HTTPException: always, with status 403.
    """
    raise HTTPException(status_code=403)


def requires(decision: Callable[[User], bool]) -> Callable[[Request], User]:
    """A dependency giving the current user if ``decision(user)`` allows them, else 403.

    Usage: ``user: Annotated[User, Depends(requires(access.can_see_dsl_queue))]``.
    """

    def dependency(request: Request) -> User:
        user = current_user(request)
        if not decision(user):
            deny()
        return user

    dependency.__name__ = f"requires_{getattr(decision, '__name__', 'decision')}"
    return dependency


def request_session(request: Request) -> WebSession | None:
    """The request's web session, as the middleware loaded it."""
    session: WebSession | None = getattr(request.state, "web_session", None)
    return session


# --- the sign-in routes -----------------------------------------------------------------------


def _safe_next(target: str | None) -> str | None:
    """A path on this site to go back to after sign-in; anything else is dropped."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    if any(ord(char) < 32 for char in target):
        return None
    return target


_REFUSALS = {
    Refusal.PUPIL: (
        "remote_guard is for school staff",
        "You signed in with a pupil account. remote_guard is only for school staff. If you are "
        "a pupil, close this page; if you are a member of staff, sign out of Microsoft and sign "
        "in again with your staff account.",
    ),
    Refusal.NOT_STAFF: (
        "Your account is not set up for remote_guard",
        "You signed in, but your account is not in the school's staff groups, so remote_guard "
        "cannot let you in. If you are a member of staff, ask your IT support to add you to "
        "the staff group.",
    ),
}


def auth_router(redirect_path: str) -> APIRouter:
    """``/sign-in``, the sign-in return address ``redirect_path``, ``/sign-out``, ``/signed-out``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/sign-in")
    def sign_in(request: Request, next: str | None = None) -> Response:  # noqa: A002
        web = web_context(request)
        user = optional_user(request)
        if user is not None:
            return RedirectResponse(_safe_next(next) or home_path(user), status_code=303)
        try:
            flow = web.sign_in.begin()
        except SignInError as exc:
            log.warning("web.sign_in_unavailable", reason=exc.reason)
            return render(
                request,
                "sign_in_failed.html",
                {"title": "Sign-in is not available", "message": str(exc)},
                status_code=503,
            )
        # A new session for every sign-in: whatever id the browser had before is not reused.
        session = web.sessions.create(data={"flow": flow, "next": _safe_next(next)})
        previous = request_session(request)
        if previous is not None:
            web.sessions.end(previous)
        response = RedirectResponse(str(flow["auth_uri"]), status_code=303)
        web.sessions.set_cookie(response, session)
        return response

    @router.get(redirect_path)
    def signed_in(request: Request) -> Response:
        return _complete_sign_in(request)

    @router.post("/sign-out")
    def sign_out(request: Request) -> Response:
        web = web_context(request)
        session = request_session(request)
        user = getattr(request.state, "user", None)
        if session is not None:
            web.sessions.end(session)
        if isinstance(user, User):
            with transaction(web.db) as db:
                audit_log.record_sign_out(db, user)
        response = RedirectResponse("/signed-out", status_code=303)
        web.sessions.clear_cookie(response)
        return response

    @router.get("/signed-out")
    def signed_out(request: Request) -> Response:
        return render(request, "signed_out.html", {"title": "You have signed out"})

    return router


def _failed(request: Request, message: str, *, status_code: int) -> Response:
    response = render(
        request,
        "sign_in_failed.html",
        {"title": "Sign-in did not work", "message": message},
        status_code=status_code,
    )
    web_context(request).sessions.clear_cookie(response)
    return response


def _complete_sign_in(request: Request) -> Response:
    """Entra's answer: redeem the code, check the person is staff, start their own session."""
    web = web_context(request)
    session = request_session(request)
    flow = session.data.get("flow") if session is not None else None
    if session is None or not isinstance(flow, dict):
        return _failed(
            request,
            "This sign-in has expired or was started in another browser. Please sign in again.",
            status_code=400,
        )
    # The pre-sign-in session is used once, whatever happens next.
    web.sessions.end(session)
    try:
        signed = web.sign_in.complete(flow, dict(request.query_params))
    except SignInError as exc:
        log.info("web.sign_in_failed", reason=exc.reason)
        return _failed(request, str(exc), status_code=400)
    roster = web.people.roster(max_age=SIGN_IN_MAX_AGE)
    who = roster.user(signed.user_id, name=signed.name, username=signed.username)
    if isinstance(who, Refusal):
        with transaction(web.db) as db:
            audit_log.record_sign_in_refused(db, signed.user_id, reason=who.value)
        title, message = _REFUSALS[who]
        refused = render(
            request, "sign_in_failed.html", {"title": title, "message": message}, status_code=403
        )
        web.sessions.clear_cookie(refused)
        return refused
    # A new session id at sign-in: an id planted in the browser before is worthless.
    new = web.sessions.create(user_id=who.id, data={"name": who.name, "username": who.username})
    with transaction(web.db) as db:
        audit_log.record_sign_in(db, who)
    target = _safe_next(str(session.data.get("next") or "")) or home_path(who)
    response = RedirectResponse(target, status_code=303)
    web.sessions.set_cookie(response, new)
    return response
