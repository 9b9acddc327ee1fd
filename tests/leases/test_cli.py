"""``remote-guard poll --worker``, and a plain ``poll`` refusing to run beside workers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from remote_guard.cli import main
from remote_guard.clock import utc_now
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.leases.lease import Leases
from remote_guard.leases.models import LeaseRow
from remote_guard.store.db import make_engine, migrate, session_factory
from tests.crash.test_crash import relative_to_now, settings_data, write_settings
from tests.leases.school import shared_school

pytestmark = [pytest.mark.e2e, pytest.mark.database]


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Iterator[Path]:
    """A settings file for the shared school served on the real clock, two shards, storing in
    the test's ``database_url``."""
    source = tmp_path / "shared_school.yaml"
    source.write_text(yaml.safe_dump(shared_school(), sort_keys=False), encoding="utf-8")
    scenario = relative_to_now(source)
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=utc_now) as server:
        data = settings_data(server, scenario, tmp_path / "rg.db")
        data["database"] = {"url": database_url}
        data["poll"] = {**data["poll"], "shards": 2}
        data["logging"] = {"level": "error", "format": "json"}
        path = tmp_path / "remote_guard.toml"
        write_settings(path, data)
        yield path


def test_a_worker_run_once_polls_every_part_and_says_so(
    config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``poll --worker --once`` runs each due part once, prints one entry per part, exits 0,
    and leaves no lease held."""
    assert main(["--config", str(config), "poll", "--worker", "--once"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert sorted(run["part"] for run in printed["runs"]) == ["shard 0 of 2", "shard 1 of 2"]
    assert {run["status"] for run in printed["runs"]} == {"ok"}
    db = session_factory(make_engine(database_url))
    with db() as session:
        held = [row.key for row in session.query(LeaseRow) if row.holder is not None]
    assert held == []


def test_a_plain_poller_refuses_to_run_beside_a_worker(
    config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """While a worker holds a part of the tenant, ``poll --once`` exits 2 naming the worker and
    runs nothing (it would take the worker's run for one cut short)."""
    engine = make_engine(database_url)
    migrate(engine)
    tenant = next(
        line.split("=", 1)[1].strip().strip('"')
        for line in config.read_text(encoding="utf-8").splitlines()
        if line.startswith("tenant_id")
    )
    worker = Leases(session_factory(engine), holder="host-b:4242:abcd", seconds=60)
    assert worker.claim(f"poll:{tenant}:shard:1of2") is not None

    assert main(["--config", str(config), "poll", "--once"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"workers are polling tenant {tenant} (host-b:4242:abcd)" in captured.err
