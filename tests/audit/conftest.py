"""A migrated store (on the pass's test database) with its audit trail configured, and an
attacker's tools to tamper."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from remote_guard import audit
from remote_guard.settings import AuditSettings
from remote_guard.store.db import make_engine, migrate, session_factory, transaction

KEY = "k" * 16 + "0123456789abcdef0123456789abcdef"
START = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


@dataclass
class Store:
    engine: Engine
    db: sessionmaker[Session]
    file: Path
    config: audit.TrailConfig

    def write(self, count: int, *, start: int = 0, at: datetime | None = None) -> None:
        """``count`` entries, one per transaction, as a finding's changes would be recorded."""
        for number in range(start, start + count):
            with transaction(self.db) as session:
                audit.record(
                    session,
                    "finding.changed",
                    object_type="finding",
                    object_id=f"finding-{number}",
                    before={"status": "pass"},
                    after={"status": "fail"},
                    detail={"subject": f"pupil-{number % 3}"},
                    at=at or START + timedelta(minutes=number),
                )

    def sql(self, statement: str, **params: object) -> None:
        """Run SQL as someone with direct database access would, past remote_guard."""
        with self.engine.begin() as connection:
            connection.execute(sa.text(statement), params)

    def drop_guards(self) -> None:
        """An attacker who owns the database can drop the append-only triggers first."""
        if self.engine.dialect.name == "sqlite":
            self.sql("DROP TRIGGER audit_entries_no_delete")
            self.sql("DROP TRIGGER audit_entries_purge_only")
        else:
            self.sql("DROP TRIGGER audit_entries_append_only ON audit_entries")


def open_store(url: str, file: Path, *, key: str | None = None) -> Store:
    engine = make_engine(url)
    migrate(engine)
    config = audit.configure(engine, AuditSettings.model_validate({"file": file, "hmac_key": key}))
    return Store(engine=engine, db=session_factory(engine), file=file, config=config)


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(database_url, tmp_path / "audit.jsonl")
    yield opened
    opened.engine.dispose()


@pytest.fixture
def keyed_store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(database_url, tmp_path / "audit.jsonl", key=KEY)
    yield opened
    opened.engine.dispose()
