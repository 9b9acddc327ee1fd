"""Crash safety: the real poller process killed with SIGKILL at random points, again and again.

The test process serves a library scenario from the fake tenant, with its times moved to "now"
(the poller runs in its own process on the real clock). ``remote-guard poll --once`` is started
with a settings file pointing at it and killed at a random moment (seeded) at least
``KILLS`` times; each restart must repeat what the killed run did not finish. A last run is
let finish. Then:

- SQLite passes ``PRAGMA integrity_check``, and ``remote-guard audit verify`` passes (audit
  entries commit with the findings and poll runs they record);
- every poll run has finished or is marked ``interrupted`` (a run found still ``running`` by the
  next run was cut short), and every kill made after a run began left such a mark;
- the findings are exactly those of a clean in-process poll of the same tenant, and meet the
  scenario's hand-written ground truth, with no duplicates.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from remote_guard.clock import utc_now
from remote_guard.fakegraph.harness import key_maps, settings_for
from remote_guard.fakegraph.scenario import Scenario, parse_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.rules.registry import load_rules
from remote_guard.runtime import build_poller
from remote_guard.store.db import make_engine, session_factory
from tests.chaos.harness import (
    check_poll_runs,
    duplicate_findings,
    facts,
    finding_dicts,
    poll_once,
    sqlite_integrity,
)
from tests.scenarios.scoring import Scores

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "scenarios" / "repeated_breaches_chat_three_lessons.yaml"
KILLS = 22
SEED = 20261118
# Each Graph answer takes this long, so that a poll lasts long enough to be killed part-way.
LATENCY_MS = 25.0


def relative_to_now(path: Path) -> Scenario:
    """The scenario with every ISO time rewritten as an offset from its fixed ``now`` (and the
    fixed ``now`` removed), so that it happens the same way relative to the real clock."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    anchor = datetime.fromisoformat(str(data.pop("now")).replace("Z", "+00:00"))

    def shift(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: shift(item) for key, item in value.items()}
        if isinstance(value, list):
            return [shift(item) for item in value]
        if isinstance(value, str) and len(value) >= 20 and value[4:5] == "-" and "T" in value:
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return value
            if moment.tzinfo is None:
                return value
            seconds = int((moment - anchor).total_seconds())
            return f"now{'+' if seconds >= 0 else '-'}{abs(seconds)}s"
        return value

    return parse_scenario(shift(data), source=f"{path} (relative to now)")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}")


def write_settings(path: Path, data: dict[str, Any]) -> None:
    """A settings file as a school writes one: one table per section, schools as [[schools]]."""
    lines: list[str] = []
    for section, values in data.items():
        if isinstance(values, list):
            for item in values:
                lines.append(f"[[{section}]]")
                lines.extend(f"{key} = {_toml_value(value)}" for key, value in item.items())
            continue
        lines.append(f"[{section}]")
        lines.extend(
            f"{key} = {_toml_value(value)}" for key, value in values.items() if value is not None
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def settings_data(server: FakeTenantServer, scenario: Scenario, database: Path) -> dict[str, Any]:
    reference = settings_for(server, scenario, database_url=f"sqlite:///{database}", clock=utc_now)
    return {
        "tenant": {**server.tenant_settings(), "timeout_seconds": 10, "max_retries": 3},
        "directory": {k: list(v) for k, v in server.directory_settings().items()},
        "database": {"url": f"sqlite:///{database}"},
        "poll": {
            "lookback_hours": reference.poll.lookback_hours,
            "lookahead_days": reference.poll.lookahead_days,
        },
        "policy": {
            "profile": reference.policy.profile,
            "packs": list(reference.policy.packs),
            "profile_dirs": [str(ROOT / "config" / "policies")],
        },
        "logging": {"level": "info", "format": "json"},
    }


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMOTE_GUARD_")}
    # requests lets these override the CA bundle pinned to the fake tenant's CA.
    env.pop("REQUESTS_CA_BUNDLE", None)
    env.pop("CURL_CA_BUNDLE", None)
    return env


def poll_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "remote_guard", "--config", str(config), "poll", "--once"],
            cwd=ROOT,
            env=_environment(),
            stdout=out,
            stderr=out,
        )


def _running_runs(database: Path) -> set[str]:
    """The ids of poll runs marked running (read-only; nothing if the table is not there yet)."""
    if not database.exists():
        return set()
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)
        try:
            rows = connection.execute("SELECT id FROM poll_runs WHERE status = 'running'")
            return {str(row[0]) for row in rows}
        finally:
            connection.close()
    except sqlite3.Error:
        return set()


def wait_for_new_run(
    process: subprocess.Popen[bytes], database: Path, known: set[str], *, limit: float
) -> bool:
    """Wait until the process has begun a poll run (a new row marked running): True, or False
    if it exited or ``limit`` seconds passed first."""
    deadline = time.monotonic() + limit
    while process.poll() is None and time.monotonic() < deadline:
        if _running_runs(database) - known:
            return True
        time.sleep(0.005)
    return False


@dataclass
class KillRecord:
    kills: int = 0
    starts: int = 0
    seconds: float = 0.0
    cut_short: set[str] = field(default_factory=set)  # runs running when their process died


def kill_repeatedly(
    config: Path, database: Path, log: Path, *, rng: random.Random, poll_seconds: float
) -> KillRecord:
    """Start ``poll --once`` and SIGKILL it, ``KILLS`` times. Three kills in four are aimed at a
    poll run, at a random point of it (``poll_seconds`` long, shortened whenever a run finishes
    first); the rest at start-up (imports, migrations, the start-up audit entry)."""
    record = KillRecord()
    started = time.monotonic()
    while record.kills < KILLS and record.starts < KILLS * 3:
        record.starts += 1
        known = _running_runs(database)
        process = poll_process(config, log)
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.1, 2.0))
        elif wait_for_new_run(process, database, known, limit=60):
            time.sleep(rng.uniform(0, 1.2 * poll_seconds))
        if process.poll() is not None:
            # It finished first: polls are quicker now (sessions read in full are only
            # re-evaluated), so aim earlier.
            poll_seconds = max(0.1, poll_seconds * 0.6)
            continue
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        record.kills += 1
        # A run still marked running now was cut short by this kill (or by an earlier one whose
        # run this process had not marked interrupted yet).
        record.cut_short |= _running_runs(database)
    record.seconds = time.monotonic() - started
    return record


def poll_run_statuses(database: Path) -> tuple[dict[str, set[str]], str]:
    """Poll run ids by status, and the status of the latest run."""
    connection = sqlite3.connect(database)
    try:
        by_status: dict[str, set[str]] = {}
        for run_id, status in connection.execute("SELECT id, status FROM poll_runs"):
            by_status.setdefault(str(status), set()).add(str(run_id))
        last = connection.execute(
            "SELECT status FROM poll_runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()[0]
    finally:
        connection.close()
    return by_status, str(last)


def audit_verify(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remote_guard", "--config", str(config), "audit", "verify"],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.sqlite  # watches the database file and checks it with SQLite's integrity_check
@pytest.mark.e2e
def test_poller_killed_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    scenario = relative_to_now(SCENARIO)
    rng = random.Random(SEED)  # noqa: S311 - a repeatable kill schedule, not security
    log = tmp_path / "poller.log"
    database = tmp_path / "remote_guard.db"
    config = tmp_path / "remote_guard.toml"
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=utc_now) as server:
        server.state.faults.latency_ms = LATENCY_MS
        sessions, subjects = key_maps(scenario, server)
        # The reference: one clean in-process poll of the same tenant into its own database.
        reference = build_poller(
            settings_for(
                server, scenario, database_url=f"sqlite:///{tmp_path / 'ref.db'}", clock=utc_now
            )
        )
        before = time.monotonic()
        assert poll_once(reference) == ("ok", [])
        reference_seconds = time.monotonic() - before
        baseline = facts(reference.db, sessions)
        truth = Scores().score(
            scenario, finding_dicts(reference.db, sessions, subjects), set(load_rules())
        )
        assert truth == [], "the clean run must meet the scenario's ground truth"

        write_settings(config, settings_data(server, scenario, database))
        record = kill_repeatedly(config, database, log, rng=rng, poll_seconds=reference_seconds)
        final = poll_process(config, log)
        assert final.wait(timeout=120) == 0, log.read_text(encoding="utf-8")[-3000:]

    print(
        f"\ncrash suite: {record.kills} SIGKILLs in {record.starts} starts "
        f"({len(record.cut_short)} cut a poll run short) in {record.seconds:.1f} s; "
        f"an in-process poll of the scenario takes {reference_seconds:.2f} s"
    )
    assert record.kills >= 20
    assert len(record.cut_short) >= 5, "too few kills landed in a poll run to prove anything"
    assert sqlite_integrity(database) == "ok"
    verified = audit_verify(config)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    db = session_factory(make_engine(f"sqlite:///{database}"))
    assert check_poll_runs(db) == []
    by_status, last = poll_run_statuses(database)
    assert last == "ok"
    assert "running" not in by_status
    # Exactly the runs cut short are marked interrupted (by the run that came next).
    assert by_status.get("interrupted", set()) == record.cut_short

    current = facts(db, sessions)
    assert {k: (f.status, f.exempted) for k, f in current.items()} == {
        k: (f.status, f.exempted) for k, f in baseline.items()
    }
    assert duplicate_findings(current.values()) == []
    assert Scores().score(scenario, finding_dicts(db, sessions, subjects), set(load_rules())) == []
