"""Which database a test stores its data in: the one place that decides.

SQLite (a file in the test's folder) by default; a fresh schema on the real PostgreSQL server
(tests/postgres.py) when ``REMOTE_GUARD_TEST_DATABASE=postgresql``. ``make test`` runs the suite
once each way. A test that stores data is marked ``database`` (or uses the ``database_url``
fixture, which marks it), so the PostgreSQL pass selects it; tests/conftest.py fails a test that
touches a database without saying so, because the PostgreSQL pass would silently leave it out.

A database is named by a folder and a name, like the SQLite file ``<folder>/<name>.db``: asking
again for the same folder and name gives the same database, on PostgreSQL as on SQLite. A
PostgreSQL schema made for a test's ``tmp_path`` is dropped when that test ends; one made for a
wider fixture's folder is dropped by ``fresh_database`` when the fixture ends, or else at the end
of the run.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import postgres

VARIABLE = "REMOTE_GUARD_TEST_DATABASE"
SQLITE = "sqlite"
POSTGRESQL = "postgresql"

_schemas: dict[tuple[Path, str], str] = {}
_lock = threading.Lock()


def backend() -> str:
    """``sqlite`` or ``postgresql``, from ``REMOTE_GUARD_TEST_DATABASE`` (unset: ``sqlite``).

    Raises:
        pytest.UsageError: the variable names another database.
    """
    value = os.environ.get(VARIABLE, "").strip().lower() or SQLITE
    if value not in (SQLITE, POSTGRESQL):
        raise pytest.UsageError(
            f"{VARIABLE}={value!r} is not a test database: use {SQLITE} (the default) "
            f"or {POSTGRESQL}"
        )
    return value


def on_postgresql() -> bool:
    return backend() == POSTGRESQL


def database_url(folder: Path, name: str = "rg") -> str:
    """The URL of the test database ``name`` kept in ``folder`` (made on first use).

    On SQLite the file ``folder/<name>.db``; on PostgreSQL a fresh, empty schema in the test
    database, the same one each time for the same folder and name. Skips (fails under CI=true)
    when the PostgreSQL pass cannot reach the server.
    """
    if not on_postgresql():
        return f"sqlite:///{folder / f'{name}.db'}"
    key = (folder.resolve(), name)
    with _lock:
        schema = _schemas.get(key)
        if schema is None:
            postgres.require("the PostgreSQL pass")
            schema = f"rg_{uuid.uuid4().hex[:12]}"
            postgres.create_schema(schema)
            _schemas[key] = schema
    return postgres.schema_url(schema)


@contextmanager
def fresh_database(folder: Path, name: str = "rg") -> Iterator[str]:
    """``database_url(folder, name)`` for a fixture wider than one test: the PostgreSQL schema
    is dropped when the block ends."""
    url = database_url(folder, name)
    try:
        yield url
    finally:
        drop_databases(folder, name)


def drop_databases(folder: Path, name: str | None = None) -> None:
    """Drop the PostgreSQL schemas made for ``folder`` (or only ``name`` there), closing any
    connection a test left open to them. Nothing to do on SQLite: the folder goes with pytest's
    temporary files."""
    folder = folder.resolve()
    with _lock:
        keys = [key for key in _schemas if key[0] == folder and name in (None, key[1])]
        schemas = [_schemas.pop(key) for key in keys]
    for schema in schemas:
        postgres.drop_schema_later(schema)


def drop_all() -> list[str]:
    """Drop every schema this process made that is still there (the end of the run); a line
    for each one that could not be dropped."""
    with _lock:
        schemas = list(_schemas.values())
        _schemas.clear()
    for schema in schemas:
        postgres.drop_schema_later(schema)
    return postgres.wait_for_drops()


def describe() -> str:
    """One line for the test log: which database this pass stores data in."""
    if on_postgresql():
        server = sa.make_url(postgres.SERVER).render_as_string(hide_password=True)
        return (
            f"test database: PostgreSQL ({server}, a fresh schema per test); only tests marked "
            "database or postgres run, and those marked sqlite are deselected"
        )
    return (
        f"test database: SQLite (a file in each test's folder); tests marked postgres are "
        f"deselected (they run with {VARIABLE}={POSTGRESQL})"
    )
