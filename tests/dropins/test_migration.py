"""Migration 0006: the drop-ins table and the new register columns, up and down on SQLite."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect

from remote_guard.store.db import MIGRATIONS_DIR, make_engine, migrate


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def test_0006_upgrades_and_downgrades(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    assert "dropins" in inspect(engine).get_table_names()
    assert {"transaction_id", "graph_event_id", "calendar_error", "case_id"} <= _columns(
        engine, "dropins"
    )
    assert {"retired_at", "retired_by"} <= _columns(engine, "approved_activities")
    assert "decision_reason" in _columns(engine, "registrations")

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    assert "dropins" not in inspect(engine).get_table_names()
    assert "retired_at" not in _columns(engine, "approved_activities")
    assert "decision_reason" not in _columns(engine, "registrations")

    migrate(engine)
    assert "dropins" in inspect(engine).get_table_names()
    engine.dispose()
