"""The real PostgreSQL server the tests use (127.0.0.1:5432, database test, user postgres):
whether it is there, and a fresh schema per test. Under CI=true a missing server fails the
test instead of skipping it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def available() -> bool:
    try:
        with sa.create_engine(SERVER, connect_args={"connect_timeout": 3}).connect() as connection:
            connection.execute(sa.text("select 1"))
    except sa.exc.OperationalError:
        return False
    return True


def require(what: str = "the PostgreSQL tests") -> None:
    """Skip (fail under CI=true) when the server is not reachable."""
    if available():
        return
    message = "PostgreSQL is not reachable on 127.0.0.1:5432 (database test, user postgres)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must run {what}")
    pytest.skip(message)


@contextmanager
def fresh_schema() -> Iterator[str]:
    """The URL of a new schema in the test database, dropped afterwards."""
    require()
    schema = f"rg_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(SERVER)
    with engine.begin() as connection:
        connection.execute(sa.text(f'create schema "{schema}"'))
    try:
        yield f"{SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'drop schema "{schema}" cascade'))
        engine.dispose()
