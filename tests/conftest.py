"""How each pass of the suite uses its database (tests/databases.py).

``make test`` runs the suite twice: on SQLite (every test but the PostgreSQL-only ones), then
with ``REMOTE_GUARD_TEST_DATABASE=postgresql`` (only the tests that store data, on the real
server). The tests a pass leaves out are deselected, not skipped, so the log counts them apart
from tests skipped for a missing system part. Under CI=true a missing PostgreSQL server fails the
PostgreSQL pass.

A test that connects to a database without being marked ``database``, ``sqlite`` or
``postgres`` (or using the ``database_url`` fixture) fails: the PostgreSQL pass selects tests by
those marks, so it would silently leave such a test out. For the same reason a test of the
PostgreSQL pass that connects to SQLite fails, unless it is marked ``sqlite``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from tests import databases, postgres

# Connections opened on the thread running the tests, by database. A server thread a wider
# fixture left running would otherwise be counted against whichever test happens to run.
_CONNECTIONS: Counter[str] = Counter()

# A test using one of these (directly or through another fixture) is marked by that alone.
DATABASE_FIXTURES = ("database_url", "module_database_url")


def _count_connection(connection: Connection) -> None:
    if threading.current_thread() is threading.main_thread():
        _CONNECTIONS[connection.engine.url.get_backend_name()] += 1


def uses_database(item: pytest.Item) -> bool:
    """Whether ``item`` stores data in the test database (runs in the PostgreSQL pass)."""
    fixtures = getattr(item, "fixturenames", ())
    return item.get_closest_marker("database") is not None or any(
        name in fixtures for name in DATABASE_FIXTURES
    )


def pytest_configure(config: pytest.Config) -> None:
    databases.backend()  # a misspelt REMOTE_GUARD_TEST_DATABASE stops the run here
    if not event.contains(Engine, "engine_connect", _count_connection):
        event.listen(Engine, "engine_connect", _count_connection)


def pytest_report_header(config: pytest.Config) -> str:
    return databases.describe()


def pytest_sessionstart(session: pytest.Session) -> None:
    if databases.on_postgresql() and os.environ.get("CI") == "true" and not postgres.available():
        pytest.exit(
            "PostgreSQL is not reachable on 127.0.0.1:5432 (database test, user postgres): "
            "CI must run the PostgreSQL pass",
            returncode=1,
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    postgresql = databases.on_postgresql()
    selected: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        if postgresql:
            wanted = (
                uses_database(item) or item.get_closest_marker("postgres") is not None
            ) and item.get_closest_marker("sqlite") is None
        else:
            wanted = item.get_closest_marker("postgres") is None
        (selected if wanted else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not databases.on_postgresql():
        return
    for problem in databases.drop_all():
        # A schema left behind wastes space but changes no result: say so, and go on.
        print(f"\ntest database: could not drop schema {problem}", file=sys.stderr)


@pytest.fixture(autouse=True)
def _test_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """Drops the PostgreSQL schemas made for the test's folder when it ends, and fails a test
    whose use of a database the PostgreSQL pass would not see."""
    node = request.node
    sqlite_marked = node.get_closest_marker("sqlite") is not None
    declared = uses_database(node) or sqlite_marked or node.get_closest_marker("postgres")
    folder: Path | None = None
    if databases.on_postgresql() and "tmp_path" in request.fixturenames:
        folder = request.getfixturevalue("tmp_path")
    before = Counter(_CONNECTIONS)
    yield
    if folder is not None:
        databases.drop_databases(folder)
    opened = _CONNECTIONS - before
    if opened and not declared:
        pytest.fail(
            f"{node.nodeid} connected to a database ({', '.join(sorted(opened))}) but is not "
            "marked database, sqlite or postgres: mark it (take its URL from "
            "tests/databases.py database_url) so the PostgreSQL pass runs it too"
        )
    if databases.on_postgresql() and opened["sqlite"] and not sqlite_marked:
        pytest.fail(
            f"{node.nodeid} is in the PostgreSQL pass but connected to SQLite: take its URL "
            "from tests/databases.py database_url, or mark it sqlite if it is about SQLite"
        )


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The URL of this test's database (SQLite, or PostgreSQL in the PostgreSQL pass)."""
    return databases.database_url(tmp_path)


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a database the tests of one module share through a module-scoped fixture,
    dropped (on PostgreSQL) after the module."""
    with databases.fresh_database(tmp_path_factory.mktemp("database")) as url:
        yield url
