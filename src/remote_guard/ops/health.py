"""Readiness: is the service doing its job? Each check says what it found, in one sentence."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.graph.auth import TokenProvider
from remote_guard.graph.errors import GraphError
from remote_guard.poll.models import PollRunRow
from remote_guard.settings import Settings

# A poll is overdue once three intervals have passed without one finishing.
STALE_INTERVALS = 3
# The token check asks the identity platform at most this often (MSAL's cache answers between
# refreshes anyway; this bounds the calls when Entra keeps refusing).
TOKEN_CHECK_EVERY = timedelta(minutes=1)
# Runs that count as a poll having been done: a failed one read nothing.
_POLLED = ("ok", "partial")


@dataclass(frozen=True)
class Check:
    """One readiness check: its name, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not ready",
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
        }


def database_check(db: sessionmaker[Session]) -> Check:
    """Whether the database answers a trivial query."""
    try:
        with db() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        # The exception type only: its text may hold the database URL with a password.
        return Check("database", False, f"the database does not answer ({type(exc).__name__})")
    return Check("database", True, "the database answers")


def poll_check(
    db: sessionmaker[Session], settings: Settings, *, now: datetime, since: datetime | None
) -> Check:
    """Whether a poll finished (``ok`` or ``partial``) within three poll intervals.

    ``since`` is when the poller started, for a process that polls: until its first poll has
    finished it is not ready, whatever earlier processes did.
    """
    interval = settings.poll.interval_seconds
    window = timedelta(seconds=STALE_INTERVALS * interval)
    tenant = settings.tenant.tenant_id
    try:
        with db() as session:
            last = session.scalars(
                select(PollRunRow)
                .where(
                    PollRunRow.tenant_id == tenant,
                    PollRunRow.status.in_(_POLLED),
                    PollRunRow.finished_at.is_not(None),
                )
                .order_by(PollRunRow.finished_at.desc())
                .limit(1)
            ).one_or_none()
            latest = session.scalars(
                select(PollRunRow)
                .where(PollRunRow.tenant_id == tenant)
                .order_by(PollRunRow.started_at.desc())
                .limit(1)
            ).one_or_none()
    except SQLAlchemyError as exc:
        return Check("poll", False, f"the poll runs cannot be read ({type(exc).__name__})")
    why = ""
    if latest is not None and latest.status in ("failed", "interrupted"):
        first = (latest.errors or ["no reason recorded"])[0]
        why = f"; the latest run {latest.status}: {first}"[:400]
    if last is None or last.finished_at is None or (since is not None and last.finished_at < since):
        if since is not None:
            return Check(
                "poll",
                False,
                f"no poll has finished since start-up at {since:%Y-%m-%d %H:%M:%S} UTC{why}",
            )
        return Check("poll", False, f"no poll has finished yet{why}")
    age = now - last.finished_at
    if age > window:
        return Check(
            "poll",
            False,
            f"the last poll finished at {last.finished_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"{int(age.total_seconds() // 60)} min ago: more than {STALE_INTERVALS} poll "
            f"intervals ({interval} s each){why}",
        )
    return Check(
        "poll",
        True,
        f"the last poll ({last.status}) finished at {last.finished_at:%Y-%m-%d %H:%M:%S} UTC",
    )


class TokenProbe:
    """Whether a Graph token can be had, asked at most once per ``every`` (the answer is kept).

    The token provider's MSAL cache serves a valid token without a call to Entra; only when it
    has none (or Entra refused) is the identity platform asked, and then at most once a minute.
    """

    def __init__(
        self,
        tokens: TokenProvider,
        *,
        clock: Callable[[], datetime],
        every: timedelta = TOKEN_CHECK_EVERY,
    ) -> None:
        self._tokens = tokens
        self._clock = clock
        self._every = every
        self._lock = threading.Lock()
        self._last: tuple[datetime, Check] | None = None
        self.asked = 0  # how many times the token provider was asked

    def check(self) -> Check:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last[0] < self._every:
                return self._last[1]
            self.asked += 1
            try:
                self._tokens.token()
            except GraphError as exc:
                result = Check("token", False, f"no Graph token: {exc}"[:400])
            except OSError as exc:  # the certificate file cannot be read
                result = Check("token", False, f"no Graph token: {type(exc).__name__}")
            else:
                result = Check("token", True, "a Graph token was obtained")
            self._last = (now, result)
            return result


def readiness(
    db: sessionmaker[Session],
    settings: Settings,
    probe: TokenProbe,
    *,
    now: datetime,
    since: datetime | None = None,
) -> Readiness:
    """Database, poll freshness and token, in that order (all are always checked)."""
    return Readiness(
        (
            database_check(db),
            poll_check(db, settings, now=now, since=since),
            probe.check(),
        )
    )
