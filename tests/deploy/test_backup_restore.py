"""deploy/backup.sh and deploy/restore.sh: a running database holding findings and audit
entries is backed up, more work happens, the backup is restored into a fresh database, and
the restored one holds exactly the findings of the backup and passes `audit verify`.

Run for SQLite (the online backup of a WAL database while its engine is open) and for the
real PostgreSQL server (127.0.0.1:5432, database test, user postgres; a schema per test)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from remote_guard.audit.models import AuditEntryRow
from remote_guard.cli import main
from remote_guard.fakegraph.harness import import_registers, scenario_clock, settings_for
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.findings.models import FindingEventRow, FindingRow
from remote_guard.poll.service import Poller, run_poll
from remote_guard.runtime import build_poller
from remote_guard.settings import AuditSettings
from tests.e2e.conftest import school

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
AUDIT_KEY = "b4ckup-test-" + "k" * 40
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@contextmanager
def polled(tmp_path: Path, database_url: str, audit_file: Path) -> Iterator[Poller]:
    """A poller whose database holds a real poll's findings, events and signed audit entries;
    the fake tenant keeps running so the test can poll again."""
    scenario = school()
    clock = scenario_clock(scenario)
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        settings = settings_for(server, scenario, database_url=database_url, clock=clock)
        settings = settings.model_copy(
            update={"audit": AuditSettings(file=audit_file, hmac_key=SecretStr(AUDIT_KEY))}
        )
        poller = build_poller(settings, clock=clock)
        import_registers(poller, scenario, server, clock=clock)
        assert run_poll(poller).status == "ok"
        yield poller


def contents(database_url: str) -> dict[str, list[dict[str, Any]]]:
    """Every finding and finding event, and how many audit entries there are."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            findings = [
                dict(row._mapping)
                for row in connection.execute(
                    sa.select(FindingRow.__table__).order_by(FindingRow.__table__.c.key)
                )
            ]
            events = [
                dict(row._mapping)
                for row in connection.execute(
                    sa.select(FindingEventRow.__table__).order_by(
                        *FindingEventRow.__table__.primary_key.columns
                    )
                )
            ]
            entries = connection.execute(
                sa.select(sa.func.count()).select_from(AuditEntryRow.__table__)
            ).scalar_one()
    finally:
        engine.dispose()
    return {"findings": findings, "events": events, "audit_entries": [{"count": entries}]}


def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REMOTE_GUARD_")}
    return subprocess.run(
        ["bash", str(DEPLOY / name), *args],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        timeout=120,
    )


def verify(database_url: str, audit_file: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("REMOTE_GUARD_AUDIT__HMAC_KEY", AUDIT_KEY)
    return main(["audit", "verify", "--database", database_url, "--audit-file", str(audit_file)])


@pytest.mark.sqlite
@pytest.mark.e2e
def test_sqlite_backup_of_a_running_database_restores_identically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("sqlite3") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the sqlite3 command is missing: CI must run the backup tests")
        pytest.skip("the sqlite3 command is not installed (apt-get install sqlite3)")
    live = tmp_path / "live" / "remote_guard.db"
    live_audit = live.with_name("remote_guard.audit.jsonl")
    with polled(tmp_path, f"sqlite:///{live}", live_audit) as poller:
        wal = live.with_name(live.name + "-wal")
        # The poller's engine is open: recent pages are still in the write-ahead log.
        assert wal.exists()
        assert wal.stat().st_size > 0
        at_backup = contents(f"sqlite:///{live}")
        assert at_backup["findings"], "the poll found nothing to back up"
        done = script(
            "backup.sh", "--database", f"sqlite:///{live}", "--output", str(tmp_path / "backups")
        )
        assert done.returncode == 0, done.stderr
        backup = Path(done.stdout.strip())
        assert (backup / "database.sqlite").is_file()
        assert (backup / "audit.jsonl").is_file()
        assert "kind: sqlite" in (backup / "MANIFEST").read_text()
        # Work goes on after the backup: the live trail grows past it.
        assert run_poll(poller).status == "ok"
        assert contents(f"sqlite:///{live}")["audit_entries"] != at_backup["audit_entries"]

    restored = tmp_path / "restored" / "remote_guard.db"
    done = script("restore.sh", "--from", str(backup), "--database", f"sqlite:///{restored}")
    assert done.returncode == 0, done.stderr
    assert contents(f"sqlite:///{restored}") == at_backup
    capsys.readouterr()
    restored_audit = restored.with_name("remote_guard.audit.jsonl")
    assert verify(f"sqlite:///{restored}", restored_audit, monkeypatch) == 0, (
        capsys.readouterr().out
    )
    assert "audit trail verified" in capsys.readouterr().out


@pytest.mark.sqlite
def test_sqlite_restore_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command is not installed")
    source = tmp_path / "source.db"
    subprocess.run(
        [
            "sqlite3",
            str(source),
            "create table audit_head (id int, seq int); insert into audit_head values (1, 0);",
        ],
        check=True,
    )
    done = script("backup.sh", "--database", f"sqlite:///{source}", "--output", str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    backup = Path(done.stdout.strip())
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"the school's current database")
    refused = script("restore.sh", "--from", str(backup), "--database", f"sqlite:///{existing}")
    assert refused.returncode != 0
    assert "--force" in refused.stderr
    assert existing.read_bytes() == b"the school's current database"
    forced = script(
        "restore.sh", "--from", str(backup), "--database", f"sqlite:///{existing}", "--force"
    )
    assert forced.returncode == 0, forced.stderr
    kept = list(tmp_path.glob("existing.db.before-restore-*"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == b"the school's current database"


@pytest.mark.sqlite
def test_restore_refuses_a_backup_whose_files_changed(tmp_path: Path) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command is not installed")
    source = tmp_path / "source.db"
    subprocess.run(
        ["sqlite3", str(source), "create table audit_head (id int, seq int);"], check=True
    )
    done = script("backup.sh", "--database", f"sqlite:///{source}", "--output", str(tmp_path / "b"))
    backup = Path(done.stdout.strip())
    with (backup / "database.sqlite").open("ab") as handle:
        handle.write(b"tampered")
    refused = script(
        "restore.sh", "--from", str(backup), "--database", f"sqlite:///{tmp_path / 'new.db'}"
    )
    assert refused.returncode != 0
    assert "checksums" in refused.stderr


def _postgres_available() -> bool:
    try:
        engine = sa.create_engine(f"{SERVER}/test", connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
    except sa.exc.OperationalError:
        return False
    return shutil.which("pg_dump") is not None and shutil.which("pg_restore") is not None


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    """(URL of a fresh schema in database test, schema name); the schema and the database
    restored into are dropped afterwards."""
    if not _postgres_available():
        message = (
            "PostgreSQL (127.0.0.1:5432, database test, user postgres) or pg_dump/pg_restore "
            "is not available"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": CI must run the PostgreSQL backup test")
        pytest.skip(message)
    schema = f"rg_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'create schema "{schema}"'))
    try:
        yield f"{SERVER}/test?options=-csearch_path%3D{schema}", schema
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'drop schema if exists "{schema}" cascade'))
            connection.execute(sa.text(f'drop database if exists "{schema}_restored" with (force)'))
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.e2e
def test_postgresql_backup_restores_into_a_fresh_database(
    postgres_schema: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, schema = postgres_schema
    live_audit = tmp_path / "live" / "audit.jsonl"
    with polled(tmp_path, url, live_audit) as poller:
        at_backup = contents(url)
        assert at_backup["findings"], "the poll found nothing to back up"
        done = script(
            "backup.sh",
            "--database", url,
            "--schema", schema,
            "--audit-file", str(live_audit),
            "--output", str(tmp_path / "backups"),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        backup = Path(done.stdout.strip())
        assert (backup / "database.dump").is_file()
        assert (backup / "audit.jsonl").is_file()
        assert run_poll(poller).status == "ok"

    fresh = f"{schema}_restored"
    admin = sa.create_engine(f"{SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'create database "{fresh}"'))
    admin.dispose()
    restored_url = f"{SERVER}/{fresh}?options=-csearch_path%3D{schema}"
    restored_audit = tmp_path / "restored" / "audit.jsonl"
    done = script(
        "restore.sh", "--from", str(backup), "--database", restored_url,
        "--audit-file", str(restored_audit),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert contents(restored_url) == at_backup
    capsys.readouterr()
    assert verify(restored_url, restored_audit, monkeypatch) == 0, capsys.readouterr().out
    assert "audit trail verified" in capsys.readouterr().out

    # A second restore into the now populated database is refused without --force.
    again = script("restore.sh", "--from", str(backup), "--database", restored_url)
    assert again.returncode != 0
    assert "new database" in again.stderr
