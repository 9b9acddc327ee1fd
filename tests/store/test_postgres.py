"""The same pipeline on the real PostgreSQL server (127.0.0.1:5432, database test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from remote_guard.findings.models import FindingRow
from remote_guard.poll.service import run_poll
from tests.e2e.conftest import Running, school, start
from tests.postgres import fresh_schema


@pytest.fixture
def schema_url() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards."""
    with fresh_schema() as url:
        yield url


@pytest.mark.postgres
def test_poll_stores_idempotent_findings_in_postgresql(schema_url: str, tmp_path: Path) -> None:
    """Two polls into PostgreSQL give the expected open findings exactly once."""
    running: Running
    for running in start(school(), tmp_path, database_url=schema_url):
        assert run_poll(running.poller).status == "ok"
        assert run_poll(running.poller).status == "ok"
        keys = {running.scenario.person_id(p.key): p.key for p in running.scenario.people}
        with running.poller.db() as session:
            rows = list(
                session.scalars(select(FindingRow).where(FindingRow.status.in_(["fail", "warn"])))
            )
        assert sorted(
            (row.rule_id, keys.get(row.subject_key, row.subject_key)) for row in rows
        ) == [
            ("meeting_chat_open_to_pupils", "allow_meeting_chat"),
            ("one_to_one_without_consent", "p1"),
            ("pupil_meeting_chat", "p2"),
        ]
        first_seen = {row.first_seen_at for row in rows}
        assert all(moment.tzinfo is not None for moment in first_seen)
