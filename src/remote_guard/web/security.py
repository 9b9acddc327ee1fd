"""Sessions and CSRF: a signed session cookie backed by the database, and a token per session.

The cookie holds a random token and its HMAC signature (the ``[web]`` session secret); the
database holds only the token's SHA-256, with the session's CSRF token, the signed-in user and,
before sign-in, the MSAL flow. The cookie is HttpOnly, SameSite=Lax (Entra's redirect back to
the app is a top-level GET, which Lax lets through), and Secure with the ``__Host-`` prefix
when the app is served over HTTPS. A new session (new token, new CSRF token) is made when
sign-in starts and again when it completes, so an id planted before sign-in is worthless.

Every POST, PUT, PATCH and DELETE must carry the session's CSRF token: forms in a hidden field
``csrf_token``, the JSON API in the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.clock import Clock
from remote_guard.store.db import transaction
from remote_guard.web.models import WebSessionRow

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PLAIN_COOKIE = "remote_guard_session"
# Browsers accept a __Host- cookie only if it is Secure, has Path=/ and no Domain: no other
# host or path can set or shadow it.
SECURE_COOKIE = "__Host-remote_guard_session"
# A session that has not completed sign-in lasts as long as Entra's authorization code.
SIGN_IN_LIFETIME = timedelta(minutes=15)
# last_seen_at is written at most this often, so reading pages does not write on every request.
_TOUCH_EVERY = timedelta(minutes=1)


class CsrfError(Exception):
    """A state-changing request did not carry the session's CSRF token (or came from elsewhere)."""


@dataclass
class WebSession:
    """One browser session as loaded for a request."""

    key: str  # the SHA-256 of the token, the row id
    csrf_token: str
    user_id: str | None
    data: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    token: str | None = field(default=None, repr=False)  # only known when just created


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


class SessionStore:
    """Creates, finds and ends web sessions; signs and checks the cookie value."""

    def __init__(
        self,
        db: sessionmaker[Session],
        *,
        secret: bytes,
        clock: Clock,
        lifetime: timedelta,
        idle: timedelta,
        secure: bool,
    ) -> None:
        self._db = db
        self._secret = secret
        self._clock = clock
        self.lifetime = lifetime
        self.idle = idle
        self.secure = secure
        self.cookie_name = SECURE_COOKIE if secure else PLAIN_COOKIE

    # --- the cookie -----------------------------------------------------------------------------

    def _signature(self, token: str) -> str:
        digest = hmac.new(self._secret, token.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def cookie_value(self, session: WebSession) -> str:
        """The signed value to set as the cookie.

        Raises:
            ValueError: the session was loaded, not created here, so its token is unknown.
        """
        if session.token is None:
            raise ValueError("only a session created in this request has its token")
        return f"{session.token}.{self._signature(session.token)}"

    def _token_from(self, cookie: str | None) -> str | None:
        if not cookie or "." not in cookie:
            return None
        token, _, signature = cookie.rpartition(".")
        if not token.isascii() or not hmac.compare_digest(signature, self._signature(token)):
            return None
        return token

    def set_cookie(self, response: Any, session: WebSession) -> None:
        """Put the session's cookie on ``response`` (a Starlette response)."""
        response.set_cookie(
            self.cookie_name,
            self.cookie_value(session),
            max_age=int((session.expires_at - self._clock()).total_seconds()),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def clear_cookie(self, response: Any) -> None:
        response.delete_cookie(
            self.cookie_name, path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    # --- the rows ---------------------------------------------------------------------------

    def create(
        self, *, user_id: str | None = None, data: dict[str, Any] | None = None
    ) -> WebSession:
        """A new session with a new token and CSRF token; expired sessions are removed."""
        now = self._clock()
        token = secrets.token_urlsafe(32)
        lifetime = self.lifetime if user_id is not None else SIGN_IN_LIFETIME
        session = WebSession(
            key=_hash(token),
            csrf_token=secrets.token_urlsafe(32),
            user_id=user_id,
            data=dict(data or {}),
            created_at=now,
            expires_at=now + lifetime,
            token=token,
        )
        with transaction(self._db) as db:
            db.execute(delete(WebSessionRow).where(WebSessionRow.expires_at <= now))
            db.add(
                WebSessionRow(
                    id=session.key,
                    csrf_token=session.csrf_token,
                    user_id=user_id,
                    data=session.data,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=session.expires_at,
                )
            )
        return session

    def load(self, cookie: str | None) -> WebSession | None:
        """The live session the cookie names, or None (bad signature, unknown, expired, idle)."""
        token = self._token_from(cookie)
        if token is None:
            return None
        now = self._clock()
        key = _hash(token)
        with transaction(self._db) as db:
            row = db.get(WebSessionRow, key)
            if row is None:
                return None
            idle_since = row.last_seen_at + self.idle if row.user_id is not None else None
            if row.expires_at <= now or (idle_since is not None and idle_since <= now):
                db.delete(row)
                return None
            if now - row.last_seen_at >= _TOUCH_EVERY:
                row.last_seen_at = now
            return WebSession(
                key=row.id,
                csrf_token=row.csrf_token,
                user_id=row.user_id,
                data=dict(row.data),
                created_at=row.created_at,
                expires_at=row.expires_at,
            )

    def save_data(self, session: WebSession) -> None:
        with transaction(self._db) as db:
            db.execute(
                update(WebSessionRow)
                .where(WebSessionRow.id == session.key)
                .values(data=dict(session.data))
            )

    def end(self, session: WebSession) -> None:
        """Delete the session: its cookie no longer works, even if someone kept a copy."""
        with transaction(self._db) as db:
            db.execute(delete(WebSessionRow).where(WebSessionRow.id == session.key))

    def end_all_for(self, user_id: str) -> int:
        """End every session of ``user_id`` (e.g. when they are no longer staff)."""
        with transaction(self._db) as db:
            ended = db.execute(
                select(WebSessionRow.id).where(WebSessionRow.user_id == user_id)
            ).all()
            db.execute(delete(WebSessionRow).where(WebSessionRow.user_id == user_id))
        return len(ended)


# --- CSRF -------------------------------------------------------------------------------------


def same_origin(request: Request, public_origin: str) -> bool:
    """Whether a state-changing request comes from the app's own pages.

    Browsers send ``Origin`` on every cross-site POST; a request without one (an old browser,
    a script with the header set by hand) is judged by its CSRF token alone.
    """
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    own = {public_origin, f"{request.url.scheme}://{request.url.netloc}"}
    return origin in own


async def check_csrf(request: Request, session: WebSession | None, public_origin: str) -> None:
    """Refuse a state-changing request without the session's CSRF token.

    Raises:
        CsrfError: no session, no token, a wrong token, or a foreign ``Origin``.
    """
    if request.method not in UNSAFE_METHODS:
        return
    if session is None:
        raise CsrfError("no session")
    if not same_origin(request, public_origin):
        raise CsrfError("foreign origin")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise CsrfError("missing or wrong token")
