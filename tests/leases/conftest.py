"""A lease table on the test database (SQLite, or a fresh PostgreSQL schema in the PostgreSQL
pass), and the named workers that hold leases in these tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.leases.lease import Leases, database_now
from remote_guard.leases.models import LeaseRow
from remote_guard.store.db import make_engine, session_factory, transaction


@dataclass
class Store:
    engine: Engine
    db: sessionmaker[Session]

    def workers(self, seconds: float = 30) -> tuple[Leases, Leases]:
        """Two workers, ``alice`` and ``bob``, whose leases last ``seconds``."""
        return (
            Leases(self.db, holder="alice", seconds=seconds),
            Leases(self.db, holder="bob", seconds=seconds),
        )

    def expire(self, key: str) -> None:
        """What a dead holder leaves: its lease's expiry passes (set a second into the past)."""
        with transaction(self.db) as session:
            past = database_now(session) - timedelta(seconds=1)
            session.execute(update(LeaseRow).where(LeaseRow.key == key).values(expires_at=past))

    def row(self, key: str) -> LeaseRow | None:
        with self.db() as session:
            return session.get(LeaseRow, key)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """The lease table alone (the migration has its own test)."""
    engine = make_engine(database_url)
    LeaseRow.__table__.create(engine)
    yield Store(engine, session_factory(engine))
    engine.dispose()
