"""Leases: time-limited, renewable claims on a named piece of work, kept in the database.

A worker claims a key with one conditional upsert (``INSERT ... ON CONFLICT DO UPDATE ... WHERE
the lease is free or expired ... RETURNING``): the row count tells it whether it won, on
SQLite as on PostgreSQL, and two workers can never both win (PostgreSQL locks the row and
re-checks the condition against the committed winner; SQLite has one writer at a time). The
holder renews its leases while it works and releases them when done; a worker that dies
simply stops renewing, and once ``expires_at`` has passed any other worker may take the key.

**Whose clock.** Every time written to or compared with the table is the database server's
(``clock_timestamp()`` on PostgreSQL, SQLite's ``'now'`` on the one machine SQLite lives
on), read in the same transaction as the claim. Workers on different machines may disagree
about the time by seconds or more; if each used its own clock, one running fast would see a
live lease as expired and take it. With one clock for all, only a lease's length is measured
by the holder (it renews every third of it, on its own monotonic timer), and a length needs no
agreement between machines.

**Fencing.** Each time a different worker takes a key its ``fencing_token`` grows by one. A
write that must only happen while the lease is held is *fenced*: in the write's own
transaction, the lease row is updated on condition that holder and token are still the
writer's (:meth:`Leases.fence`). On PostgreSQL that also locks the row until the write
commits, so a takeover waits for it; a worker that lost its lease (paused past the expiry,
cut off from the database) has its write refused instead of overwriting the new holder's.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import (
    CursorResult,
    Result,
    Table,
    and_,
    case,
    delete,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from remote_guard.leases.models import LeaseRow
from remote_guard.store.db import UTCDateTime, transaction

log = structlog.get_logger(__name__)

_TABLE: Table = LeaseRow.__table__  # type: ignore[assignment]  # a declarative model's Table
HOLDER_MAX = 200


class LeaseLostError(Exception):
    """The lease is no longer this worker's: it expired and another worker took it (its fencing
    token moved on), or it was released. The work done under it must not be written."""


def worker_id() -> str:
    """A name for this worker process that no other process shares: host, pid and a random
    part (a pid is reused after a restart, and two containers may share host name and pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"[-HOLDER_MAX:]


def database_now(session: Session) -> datetime:
    """The database server's current time, in UTC (see the module docstring for why).

    Raises:
        ValueError: the database is neither PostgreSQL nor SQLite.
        sqlalchemy.exc.SQLAlchemyError: the database cannot be asked.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # clock_timestamp(), not now(): now() is when the transaction began.
        value = session.execute(text("SELECT clock_timestamp()")).scalar_one()
        if not isinstance(value, datetime):
            raise ValueError(f"the database gave {value!r} as its time")
        return value.astimezone(UTC)
    if dialect == "sqlite":
        # CURRENT_TIMESTAMP has whole seconds only; %f gives milliseconds. SQLite's 'now' is UTC.
        value = session.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
    raise ValueError(f"leases need PostgreSQL or SQLite, not {dialect}")


@dataclass
class Grant:
    """A lease this worker holds: its key, its fencing token, and until when it runs.

    ``lost`` is set when a renewal finds the lease taken over; ``released`` once it is given up.
    """

    key: str
    holder: str
    token: int
    acquired_at: datetime
    expires_at: datetime
    lost: bool = False
    released: bool = False


def _upsert(session: Session) -> Any:
    """The dialect's ``INSERT`` construct, which knows ``ON CONFLICT`` (both have the same API).

    Raises:
        ValueError: the database is neither PostgreSQL nor SQLite.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(_TABLE)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(_TABLE)
    raise ValueError(f"leases need PostgreSQL or SQLite, not {dialect}")


class Leases:
    """The leases of one worker (``holder``), each ``seconds`` long unless renewed.

    Every method runs its own short transaction (``fence`` runs in the caller's) and raises
    ``sqlalchemy.exc.SQLAlchemyError`` when the database cannot be reached.
    """

    def __init__(self, db: sessionmaker[Session], *, holder: str, seconds: float) -> None:
        if not holder or len(holder) > HOLDER_MAX:
            raise ValueError(f"a lease holder is 1 to {HOLDER_MAX} characters, not {holder!r}")
        if seconds <= 0:
            raise ValueError(f"a lease lasts a positive number of seconds, not {seconds}")
        self.db = db
        self.holder = holder
        self.length = timedelta(seconds=seconds)

    def claim(
        self, key: str, *, not_done_since: datetime | timedelta | None = None
    ) -> Grant | None:
        """Take ``key`` if nobody holds it (never held, released, or expired) or this worker
        already does; None if another worker holds it.

        With ``not_done_since`` (a moment, or a span back from now) the key is taken only if
        its work was not finished since then: a shard polled a minute ago is not due again, a
        session another shard stored during this cycle is not read twice.
        """
        table = _TABLE
        with transaction(self.db) as session:
            now = database_now(session)
            expires = now + self.length
            # Typed, so that SQLite is given the same text form as the stored times.
            now_value = literal(now, UTCDateTime())
            expires_value = literal(expires, UTCDateTime())
            mine = table.c.holder == self.holder
            condition = or_(table.c.holder.is_(None), table.c.expires_at <= now, mine)
            if not_done_since is not None:
                since = (
                    now - not_done_since
                    if isinstance(not_done_since, timedelta)
                    else not_done_since
                )
                condition = and_(condition, or_(table.c.done_at.is_(None), table.c.done_at < since))
            statement = _upsert(session).values(
                key=key,
                holder=self.holder,
                fencing_token=1,
                acquired_at=now,
                renewed_at=now,
                expires_at=expires,
                done_at=None,
                run_id=None,
            )
            statement = statement.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={
                    "holder": self.holder,
                    # Taken from someone else (or from nobody): a new token. Claimed again by
                    # its holder: the same lease, the same token.
                    "fencing_token": case(
                        (mine, table.c.fencing_token), else_=table.c.fencing_token + 1
                    ),
                    "acquired_at": case((mine, table.c.acquired_at), else_=now_value),
                    "renewed_at": now_value,
                    "expires_at": expires_value,
                    "run_id": case((mine, table.c.run_id), else_=None),
                },
                where=condition,
            ).returning(table.c.fencing_token, table.c.acquired_at, table.c.expires_at)
            row = session.execute(statement).one_or_none()
        if row is None:
            return None
        token, acquired, until = row
        grant = Grant(
            key=key,
            holder=self.holder,
            token=int(token),
            acquired_at=_utc(acquired),
            expires_at=_utc(until),
        )
        log.debug(
            "lease.claimed",
            key=key,
            holder=self.holder,
            fence=grant.token,
            acquired_at=grant.acquired_at.isoformat(),
            expires_at=grant.expires_at.isoformat(),
        )
        return grant

    def renew(self, grant: Grant) -> bool:
        """Push the lease's expiry ``seconds`` past now; False (and ``grant.lost`` set) if it is
        no longer this worker's under the same token.

        A lease that expired but was not taken is renewed: its token shows nobody else held
        it, so nothing was done twice.
        """
        with transaction(self.db) as session:
            now = database_now(session)
            if not self._update_held(session, grant, renewed_at=now, expires_at=now + self.length):
                return False
        grant.expires_at = now + self.length
        return True

    def renew_held(self, grants: Iterable[Grant]) -> list[Grant]:
        """Renew every lease this worker holds in one statement; return those of ``grants``
        found taken over (each marked ``lost``)."""
        table = _TABLE
        with transaction(self.db) as session:
            now = database_now(session)
            rows = session.execute(
                update(table)
                .where(table.c.holder == self.holder)
                .values(renewed_at=now, expires_at=now + self.length)
                .returning(table.c.key, table.c.fencing_token)
            ).all()
        held = {str(key): int(token) for key, token in rows}
        lost: list[Grant] = []
        for grant in grants:
            if grant.released:
                continue
            if held.get(grant.key) == grant.token:
                grant.expires_at = now + self.length
                continue
            grant.lost = True
            lost.append(grant)
        return lost

    def release(self, grant: Grant, *, done: bool) -> bool:
        """Give the lease up at once (another worker need not wait for it to expire). With
        ``done`` the work counts as finished now (see ``not_done_since``). False if it was no
        longer this worker's."""
        table = _TABLE
        with transaction(self.db) as session:
            now = database_now(session)
            values: dict[str, object] = {
                "holder": None,
                "run_id": None,
                "renewed_at": now,
                "expires_at": now,
            }
            if done:
                values["done_at"] = now
            released = _rowcount(
                session.execute(update(table).where(*self._held(grant)).values(values))
            )
        grant.released = True
        log.debug(
            "lease.released",
            key=grant.key,
            holder=self.holder,
            fence=grant.token,
            done=done,
            released_at=now.isoformat(),
            held=released == 1,
        )
        return released == 1

    def release_all(self) -> int:
        """Give up every lease this worker still holds (the work is not marked done); return
        how many. For a clean shutdown."""
        table = _TABLE
        with transaction(self.db) as session:
            now = database_now(session)
            return _rowcount(
                session.execute(
                    update(table)
                    .where(table.c.holder == self.holder)
                    .values(holder=None, run_id=None, renewed_at=now, expires_at=now)
                )
            )

    def fence(self, session: Session, grant: Grant) -> None:
        """Check, inside the caller's transaction, that ``grant`` is still this worker's, and
        hold the lease row until that transaction ends (a takeover waits for the commit).

        Raises:
            LeaseLostError: the lease was taken over or released; roll the transaction back.
        """
        # A no-op update: it takes the row lock (PostgreSQL) or the write lock (SQLite) and its
        # row count says whether the lease is still ours.
        if not self._update_held(session, grant, holder=_TABLE.c.holder):
            raise LeaseLostError(
                f"lease {grant.key} (fencing token {grant.token}) is no longer held by "
                f"{self.holder}: it expired and was taken over, or was released"
            )

    def attach_run(self, session: Session, grant: Grant, run_id: str) -> None:
        """Record, in the caller's transaction, that poll run ``run_id`` is done under
        ``grant`` (while the lease lives, no other run marks it interrupted).

        Raises:
            LeaseLostError: the lease is no longer this worker's.
        """
        if not self._update_held(session, grant, run_id=run_id):
            raise LeaseLostError(
                f"lease {grant.key} (fencing token {grant.token}) was lost before run {run_id} "
                "began"
            )

    def _update_held(self, session: Session, grant: Grant, **values: Any) -> bool:
        """Set ``values`` on ``grant``'s row if this worker still holds it with that fencing
        token; otherwise mark the grant lost. Whether it was still held."""
        held = _rowcount(session.execute(update(_TABLE).where(*self._held(grant)).values(**values)))
        if held != 1:
            grant.lost = True
            return False
        return True

    def _held(self, grant: Grant) -> tuple[ColumnElement[bool], ...]:
        """The conditions that ``grant``'s row is still this worker's, under the same token."""
        table = _TABLE
        return (
            table.c.key == grant.key,
            table.c.holder == self.holder,
            table.c.fencing_token == grant.token,
        )

    def prune(self, *, prefix: str, older_than: timedelta) -> int:
        """Delete released leases under ``prefix`` whose work was last touched more than
        ``older_than`` ago; return how many. For keys made per item (sessions), which would
        otherwise pile up."""
        table = _TABLE
        with transaction(self.db) as session:
            cutoff = database_now(session) - older_than
            return _rowcount(
                session.execute(
                    delete(table).where(
                        table.c.key.startswith(prefix, autoescape=True),
                        table.c.holder.is_(None),
                        table.c.expires_at < cutoff,
                    )
                )
            )


def runs_under_live_leases(session: Session) -> set[str]:
    """The poll runs some worker is doing under a lease that has not expired."""
    table = _TABLE
    now = database_now(session)
    return {
        str(run_id)
        for run_id in session.scalars(
            select(table.c.run_id).where(
                table.c.run_id.is_not(None),
                table.c.holder.is_not(None),
                table.c.expires_at > now,
            )
        )
    }


def live_holders(session: Session, *, prefix: str) -> dict[str, str]:
    """Key -> holder of the unexpired leases under ``prefix``."""
    table = _TABLE
    now = database_now(session)
    rows = session.execute(
        select(table.c.key, table.c.holder).where(
            table.c.key.startswith(prefix, autoescape=True),
            table.c.holder.is_not(None),
            table.c.expires_at > now,
        )
    ).all()
    return {str(key): str(holder) for key, holder in rows}


def _rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched."""
    return int(cast(CursorResult[Any], result).rowcount)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
