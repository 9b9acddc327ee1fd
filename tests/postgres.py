"""The real PostgreSQL server the tests use (127.0.0.1:5432, database test, user postgres):
whether it is there, and a fresh schema per test. Under CI=true a missing server fails the
test instead of skipping it."""

from __future__ import annotations

import functools
import os
import queue
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@functools.cache
def available() -> bool:
    """Whether the server answers; asked once per run, so a missing server costs one timeout
    rather than one per test."""
    engine = sa.create_engine(SERVER, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()
    return True


def require(what: str = "the PostgreSQL tests") -> None:
    """Skip (fail under CI=true) when the server is not reachable."""
    if available():
        return
    message = "PostgreSQL is not reachable on 127.0.0.1:5432 (database test, user postgres)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must run {what}")
    pytest.skip(message)


@functools.cache
def _admin() -> sa.Engine:
    # One small pool for making and dropping schemas, rather than an engine per test.
    return sa.create_engine(SERVER, pool_size=1, max_overflow=1)


def schema_url(schema: str) -> str:
    """The URL of ``schema``: its tables found through the search path, and every connection
    named after it so the ones a test leaves open can be closed when it is dropped. Commits do
    not wait for the disk (a test's data need not outlive a crash of the server)."""
    options = f"-csearch_path%3D{schema}%20-csynchronous_commit%3Doff"
    return f"{SERVER}?options={options}&application_name={schema}"


def create_schema(schema: str) -> None:
    with _admin().begin() as connection:
        connection.execute(sa.text(f'create schema "{schema}"'))


def drop_schema(schema: str) -> None:
    """Drop ``schema`` and everything in it, first closing connections still open to it (a
    pooled connection idle in a transaction would otherwise hold its locks for ever)."""
    with _admin().begin() as connection:
        connection.execute(
            sa.text(
                "select pg_terminate_backend(pid, 5000) from pg_stat_activity "
                "where application_name = :schema and pid <> pg_backend_pid()"
            ),
            {"schema": schema},
        )
        connection.execute(sa.text(f'drop schema if exists "{schema}" cascade'))


class _Dropper:
    """Drops schemas on a thread of its own, so the next test need not wait for the server to
    remove the last one's tables."""

    def __init__(self) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.failures: list[str] = []

    def put(self, schema: str) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="drop-schemas", daemon=True)
                self._thread.start()
        self._queue.put(schema)

    def _run(self) -> None:
        while True:
            schema = self._queue.get()
            try:
                drop_schema(schema)
            except sa.exc.SQLAlchemyError as exc:
                self.failures.append(f"{schema}: {type(exc).__name__}: {exc}".splitlines()[0])
            finally:
                self._queue.task_done()

    def wait(self) -> list[str]:
        """Block until every schema handed over is dropped; the ones that could not be."""
        self._queue.join()
        return list(self.failures)


_DROPPER = _Dropper()


def drop_schema_later(schema: str) -> None:
    """Drop ``schema`` in the background (``wait_for_drops`` waits for it)."""
    _DROPPER.put(schema)


def wait_for_drops() -> list[str]:
    """Wait for the background drops; a line for each schema that could not be dropped."""
    return _DROPPER.wait()


@contextmanager
def fresh_schema() -> Iterator[str]:
    """The URL of a new schema in the test database, dropped afterwards."""
    require()
    schema = f"rg_{uuid.uuid4().hex[:12]}"
    create_schema(schema)
    try:
        yield schema_url(schema)
    finally:
        drop_schema_later(schema)
