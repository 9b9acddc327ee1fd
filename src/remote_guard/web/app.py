"""Assembles the web app: ``create_app(settings, db, graph, clock)`` -> FastAPI.

Nothing happens at import time; ``create_app`` builds the session store, the sign-in flow and
the roster cache, and wires the routers, the error pages and two middlewares: one that loads the
session and the signed-in user for each request (and binds them as the audit trail's actor), and
one that adds the security headers.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import remote_guard
from remote_guard import audit
from remote_guard.clock import Clock, utc_now
from remote_guard.graph.client import GraphClient
from remote_guard.ops import web as ops_web
from remote_guard.settings import ConfigError, Settings
from remote_guard.web import api
from remote_guard.web.access import User, can_use_app
from remote_guard.web.audit_log import actor_for
from remote_guard.web.auth import (
    EntraSignIn,
    NotSignedInError,
    SignInFlow,
    auth_router,
    request_session,
)
from remote_guard.web.context import WebContext, web_context
from remote_guard.web.people import PeopleSource, RosterCache, RosterUnavailableError
from remote_guard.web.render import make_templates, render
from remote_guard.web.routes import dsl, home, slt, slt_api, teacher, teacher_api
from remote_guard.web.security import CsrfError, SessionStore, WebSession, check_csrf

log = structlog.get_logger(__name__)

STATIC_DIR = Path(__file__).parent / "static"

_MESSAGES = {
    400: (
        "The request was not understood",
        "Something in the address or the form was not understood. Go back and try again.",
    ),
    401: ("Please sign in", "You need to sign in to see this page."),
    403: (
        "You do not have access to this page",
        "Your role in remote_guard does not include "
        "this page. If you think it should, ask your designated safeguarding lead.",
    ),
    404: (
        "Page not found",
        "There is no page at this address. Check the address, or go to your home page.",
    ),
    405: ("That cannot be done here", "This page does not accept that kind of request."),
    503: (
        "remote_guard cannot check who you are",
        "Microsoft 365 cannot be reached just now, "
        "so remote_guard cannot check your role. Please try again in a few minutes.",
    ),
}
_CSRF_MESSAGE = (
    "This form was out of date or did not come from remote_guard, so nothing was changed. "
    "Go back, reload the page and try again."
)


def create_app(
    settings: Settings,
    db: sessionmaker[Session],
    graph: GraphClient,
    clock: Clock = utc_now,
    *,
    sign_in: SignInFlow | None = None,
    people: PeopleSource | None = None,
) -> FastAPI:
    """The web app for ``settings``' tenant. The database must be migrated already.

    ``sign_in`` and ``people`` default to Entra ID through MSAL and the roster read through
    ``graph``; tests may pass their own.

    Raises:
        ConfigError: ``[web]`` has no session secret.
    """
    web_settings = settings.web
    if web_settings.session_secret is None:
        raise ConfigError(
            "[web] session_secret_file: is required to run the web app; it signs the session "
            "cookie. Make a secret with  openssl rand -hex 32 > /run/secrets/"
            "remote_guard_session_secret  and name that file.\n"
            '    Example of a good value: session_secret_file = "/run/secrets/'
            'remote_guard_session_secret"'
        )
    context = WebContext(
        settings=settings,
        db=db,
        graph=graph,
        clock=clock,
        sessions=SessionStore(
            db,
            secret=web_settings.session_secret.get_secret_value().encode("utf-8"),
            clock=clock,
            lifetime=timedelta(hours=web_settings.session_hours),
            idle=timedelta(minutes=web_settings.idle_minutes),
            secure=web_settings.uses_https,
        ),
        sign_in=sign_in
        or EntraSignIn(settings.tenant, redirect_uri=web_settings.redirect_uri, clock=clock),
        people=people or RosterCache(graph, settings, clock),
        templates=make_templates(settings.school_day.timezone),
    )
    app = FastAPI(
        title="remote_guard",
        version=remote_guard.__version__,
        description="Checks remote sessions on Microsoft Teams against a school's code of "
        "practice. The API uses the web app's session cookie; state-changing calls need the "
        "X-CSRF-Token header.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(_refuse_nul_characters), Depends(_csrf_protect)],
    )
    app.state.web = context
    app.include_router(auth_router(web_settings.redirect_path))
    for router in (
        home.router,
        dsl.router,
        teacher.router,
        slt.router,
        api.router,
        teacher_api.router,
        slt_api.router,
    ):
        app.include_router(router)

    app.include_router(ops_web.router)  # /healthz, /readyz, /metrics

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_error_pages(app)
    app.add_middleware(RequestContext, web=context)
    app.add_middleware(SecurityHeaders, https=web_settings.uses_https)
    return app


async def _refuse_nul_characters(request: Request) -> None:
    """A NUL character is in no id, name or filter a page takes, and PostgreSQL cannot even
    compare text with one: refuse it in the address and in form fields with a 400, rather than
    let it reach a query (a 500 on PostgreSQL; stored as it is on SQLite).

    Raises:
        HTTPException: 400, a NUL character in the path, the query string or a form field
            (the JSON API's models refuse one field by field, with a 422).
    """
    found = "\x00" in request.url.path or any(
        "\x00" in key or "\x00" in value for key, value in request.query_params.multi_items()
    )
    content_type = request.headers.get("content-type", "")
    if not found and content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        found = any(
            "\x00" in key or (isinstance(value, str) and "\x00" in value)
            for key, value in form.multi_items()
        )
    if found:
        raise StarletteHTTPException(status_code=400)


async def _csrf_protect(request: Request) -> None:
    """Every POST, PUT, PATCH and DELETE must carry the session's CSRF token."""
    await check_csrf(request, request_session(request), web_context(request).settings.web.base_url)


# --- middlewares ------------------------------------------------------------------------------


class RequestContext:
    """Gives each request an id, loads its session and user, and binds the user as the audit
    trail's actor for everything the request records (also inside domain services)."""

    def __init__(self, app: ASGIApp, web: WebContext) -> None:
        self.app = app
        self.web = web

    def _resolve(
        self, cookie: str | None
    ) -> tuple[WebSession | None, User | None, RosterUnavailableError | None]:
        session = self.web.sessions.load(cookie)
        if session is None or session.user_id is None:
            return session, None, None
        try:
            roster = self.web.people.roster()
        except RosterUnavailableError as exc:
            return session, None, exc
        who = roster.user(
            session.user_id,
            name=str(session.data.get("name", "")),
            username=str(session.data.get("username", "")),
        )
        if isinstance(who, User) and can_use_app(who):
            return session, who, None
        # No longer staff (or now a pupil): the session ends at once.
        self.web.sessions.end(session)
        return None, None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        user: User | None = None
        if not scope["path"].startswith(("/static/", *ops_web.OPS_PATHS)):
            cookies = cookie_parser(_header(scope, b"cookie") or "")
            session, user, problem = await run_in_threadpool(
                self._resolve, cookies.get(self.web.sessions.cookie_name)
            )
            state.update(web_session=session, user=user, user_problem=problem)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        # Every log line written while serving the request carries its id.
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            if user is None:
                await self.app(scope, receive, send_with_id)
                return
            with audit.acting_as(actor_for(user), request_id=request_id):
                await self.app(scope, receive, send_with_id)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def security_headers(*, https: bool, static: bool) -> list[tuple[bytes, bytes]]:
    """Headers every answer carries: no framing, no sniffing, no referrer to other sites (the
    sign-in return address holds a code), and no caching of pages that may name children.

    Referrer-Policy is same-origin, not no-referrer: with no-referrer browsers send
    ``Origin: null`` on the app's own form posts, which the CSRF check must refuse."""
    headers = [
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        (b"cache-control", b"public, max-age=3600" if static else b"no-store"),
    ]
    if https:
        headers.append((b"strict-transport-security", b"max-age=31536000"))
    return headers


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(https=self.https, static=scope["path"].startswith("/static/"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The app's own answer wins, except for caching: pages are never cached.
                own = [
                    (key, value)
                    for key, value in message.get("headers", [])
                    if key.lower() != b"cache-control"
                ]
                present = {key.lower() for key, _ in own}
                message["headers"] = own + [(k, v) for k, v in extra if k not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- error pages ------------------------------------------------------------------------------


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, message: str | None = None) -> Response:
    title, default = _MESSAGES.get(status, _MESSAGES[400])
    if _wants_json(request):
        return JSONResponse({"detail": message or title}, status_code=status)
    return render(
        request,
        "error.html",
        {"title": title, "message": message or default, "reference": None},
        status_code=status,
    )


def _add_error_pages(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        if status not in _MESSAGES:
            status = 400 if 400 <= status < 500 else 500
        if status == 500:
            return await server_error(request, exc)
        return await run_in_threadpool(_error, request, status)

    async def invalid(request: Request, exc: Exception) -> Response:
        if _wants_json(request) and isinstance(exc, RequestValidationError):
            # Where and what, never the value sent (it may be a child's name or a secret).
            problems = [
                {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", ""))}
                for error in exc.errors()
            ]
            return JSONResponse({"detail": problems}, status_code=422)
        return await run_in_threadpool(_error, request, 400)

    async def not_signed_in(request: Request, exc: Exception) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "Sign in first."}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={quote(target, safe='/')}", status_code=303)

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        log.info("web.csrf_refused", path=request.url.path, reason=str(exc))
        return await run_in_threadpool(_error, request, 403, _CSRF_MESSAGE)

    async def roster_unavailable(request: Request, exc: Exception) -> Response:
        return await run_in_threadpool(_error, request, 503)

    async def server_error(request: Request, exc: Exception) -> Response:
        reference = str(getattr(request.state, "request_id", "")) or uuid.uuid4().hex
        log.error(
            "web.server_error",
            request_id=reference,
            path=request.url.path,
            error=type(exc).__name__,
            exc_info=exc,
        )
        title = "Something went wrong"
        message = "remote_guard could not finish this request. Nothing you did caused it."
        # This handler runs outside the other middlewares, so it adds the headers itself.
        headers = {
            key.decode(): value.decode()
            for key, value in security_headers(
                https=web_context(request).settings.web.uses_https, static=False
            )
        }
        headers["x-request-id"] = reference
        if _wants_json(request):
            return JSONResponse(
                {"detail": title, "reference": reference}, status_code=500, headers=headers
            )
        try:
            return await run_in_threadpool(
                render,
                request,
                "error.html",
                {"title": title, "message": message, "reference": reference},
                status_code=500,
                headers=headers,
            )
        except Exception:  # noqa: BLE001 - the error page must not fail in turn
            return PlainTextResponse(
                f"{title}. Reference {reference}.", status_code=500, headers=headers
            )

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(NotSignedInError, not_signed_in)
    app.add_exception_handler(CsrfError, csrf_refused)
    app.add_exception_handler(RosterUnavailableError, roster_unavailable)
    app.add_exception_handler(Exception, server_error)
