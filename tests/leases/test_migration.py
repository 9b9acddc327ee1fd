"""Migration 0010: the lease table, up and down on the test database."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from remote_guard.store.db import MIGRATIONS_DIR, make_engine, migrate


def test_0010_upgrades_and_downgrades(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    columns = {column["name"] for column in inspect(engine).get_columns("leases")}
    assert columns == {
        "key",
        "holder",
        "fencing_token",
        "acquired_at",
        "renewed_at",
        "expires_at",
        "done_at",
        "run_id",
    }
    assert inspect(engine).get_pk_constraint("leases")["constrained_columns"] == ["key"]

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    assert "leases" not in inspect(engine).get_table_names()

    migrate(engine)
    assert "leases" in inspect(engine).get_table_names()
    engine.dispose()
