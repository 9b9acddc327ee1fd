"""The database: engine, sessions, the declarative base, and migrations.

SQLite (WAL mode) by default; PostgreSQL by URL. Schema changes go through alembic; the
migrations ship inside the package so ``remote-guard`` can upgrade a school's database itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and gives them back aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str | URL) -> Engine:
    """Create the engine for ``url``; a SQLite file's folder is created if needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed together on success and rolled back on any error."""
    with factory() as session, session.begin():
        yield session


def migrate(engine: Engine) -> None:
    """Bring the database schema up to date (alembic ``upgrade head``).

    Raises:
        sqlalchemy.exc.OperationalError: the database cannot be reached.
    """
    from alembic import command
    from alembic.config import Config

    # The domain models must be imported so their tables are on Base.metadata.
    import_models()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def import_models() -> None:
    """Import every domain's ``models`` module, registering its tables on ``Base.metadata``."""
    from remote_guard.audit import models as _audit  # noqa: F401
    from remote_guard.cases import models as _cases  # noqa: F401
    from remote_guard.collect import models as _collect  # noqa: F401
    from remote_guard.consent import models as _consent  # noqa: F401
    from remote_guard.dropins import models as _dropins  # noqa: F401
    from remote_guard.exemptions import models as _exemptions  # noqa: F401
    from remote_guard.findings import models as _findings  # noqa: F401
    from remote_guard.leases import models as _leases  # noqa: F401
    from remote_guard.one_to_ones import models as _one_to_ones  # noqa: F401
    from remote_guard.poll import models as _poll  # noqa: F401
    from remote_guard.subscriptions import models as _subscriptions  # noqa: F401
    from remote_guard.web import models as _web  # noqa: F401
