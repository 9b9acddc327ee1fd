"""Two real worker processes share one tenant through one PostgreSQL schema; one is killed.

The test process serves the shared school (``school.py``, its times moved to the real clock)
from the fake tenant, and starts ``remote-guard poll --worker`` twice with one settings file:
three shards, a four-second lease. Then:

- both workers finish a cycle of some shard (both do work);
- one is killed with SIGKILL while it is in a poll run;
- the survivor takes the dead worker's shard over once its lease has expired, marks the cut
  short run ``interrupted``, and goes on until every shard has been polled after the kill and
  shard 0 has judged the patterns once more;
- SIGTERM stops the survivor cleanly, releasing its leases;
- the findings are exactly those of one whole-tenant poll of the same tenant, none twice, the
  audit trail verifies, and no session was held by both workers at once: the session claims
  and releases both workers logged (with the database's times) never overlap across workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.clock import utc_now
from remote_guard.fakegraph.harness import key_maps, settings_for
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.leases.models import LeaseRow
from remote_guard.poll.models import PollRunRow
from remote_guard.runtime import build_poller
from remote_guard.store.db import make_engine, session_factory
from tests import databases
from tests.chaos.harness import check_poll_runs, duplicate_findings, facts, poll_once
from tests.crash.test_crash import (
    ROOT,
    _environment,
    audit_verify,
    relative_to_now,
    settings_data,
    write_settings,
)
from tests.leases.compare import differences
from tests.leases.school import shared_school
from tests.postgres import fresh_schema

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SHARDS = 3
LEASE_SECONDS = 4
INTERVAL_SECONDS = 30  # the shortest [poll] interval_seconds allowed
# Each Graph answer takes this long, so that a poll run lasts long enough to be killed in.
LATENCY_MS = 80.0

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], *, limit: float) -> T:
    """Poll ``check`` until it returns something; fail naming ``what`` after ``limit`` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = check()
        if found is not None and found is not False:
            return found
        time.sleep(0.05)
    pytest.fail(f"gave up after {limit:.0f} s waiting for {what}")


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def events(self) -> list[dict[str, Any]]:
        """The worker's JSON log lines (anything else it printed is skipped)."""
        found: list[dict[str, Any]] = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return found

    def holder(self) -> str | None:
        """The worker id it claims leases under (host:pid:random), once it has logged it."""
        started = [e for e in self.events() if e.get("event") == "worker.started"]
        return str(started[0]["holder"]) if started else None

    def finished_units(self) -> int:
        return sum(
            1
            for e in self.events()
            if e.get("event") == "worker.unit_released" and e.get("done") is True
        )

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]


def start_worker(name: str, config: Path, folder: Path) -> Worker:
    log = folder / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "remote_guard", "--config", str(config), "poll", "--worker"],
            cwd=ROOT,
            env=_environment(),
            stdout=out,
            stderr=out,
        )
    return Worker(name, process, log)


def unit_leases(db: sessionmaker[Session]) -> dict[str, LeaseRow]:
    with db() as session:
        rows = session.scalars(select(LeaseRow).where(LeaseRow.key.startswith("poll:"))).all()
    return {row.key: row for row in rows}


@dataclass(frozen=True)
class Hold:
    """One worker's hold on one session lease, from its claim to its release (or death)."""

    key: str
    holder: str
    fence: int
    start: datetime
    end: datetime


def session_holds(workers: list[Worker], ends: dict[str, datetime]) -> list[Hold]:
    """Every session lease each worker held, from its logged claims and releases. A hold never
    released ends when its worker ended (``ends``, by holder): killed, or stopped (a clean stop
    releases everything in one statement)."""
    holds: list[Hold] = []
    for worker in workers:
        opened: dict[tuple[str, int], tuple[str, datetime]] = {}
        for event in worker.events():
            key = str(event.get("key", ""))
            if not key.startswith("session:"):
                continue
            ident = (key, int(event["fence"]))
            if event.get("event") == "lease.claimed":
                at = datetime.fromisoformat(str(event["acquired_at"]))
                opened.setdefault(ident, (str(event["holder"]), at))
            elif event.get("event") == "lease.released" and ident in opened:
                holder, start = opened.pop(ident)
                end = datetime.fromisoformat(str(event["released_at"]))
                holds.append(Hold(key, holder, ident[1], start, end))
        for (key, fence), (holder, start) in opened.items():
            holds.append(Hold(key, holder, fence, start, ends[holder]))
    return holds


def overlaps(holds: list[Hold]) -> list[str]:
    """Pairs of holds of one session by two workers at once, described."""
    problems: list[str] = []
    by_key: dict[str, list[Hold]] = {}
    for hold in holds:
        by_key.setdefault(hold.key, []).append(hold)
    for key, key_holds in by_key.items():
        ordered = sorted(key_holds, key=lambda h: (h.start, h.end))
        for index, first in enumerate(ordered):
            for second in ordered[index + 1 :]:
                if second.holder != first.holder and second.start < first.end:
                    problems.append(
                        f"{key}: {first.holder} held it {first.start}..{first.end}, "
                        f"{second.holder} from {second.start}"
                    )
                if second.holder != first.holder and second.fence <= first.fence:
                    problems.append(
                        f"{key}: {second.holder} took it after {first.holder} with fencing "
                        f"token {second.fence}, not above {first.fence}"
                    )
    return problems


def test_two_workers_share_a_tenant_and_one_survives_the_other(tmp_path: Path) -> None:  # noqa: PLR0915 - one story, read top to bottom
    source = tmp_path / "shared_school.yaml"
    source.write_text(yaml.safe_dump(shared_school(), sort_keys=False), encoding="utf-8")
    scenario = relative_to_now(source)
    with (
        fresh_schema() as url,
        FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=utc_now) as server,
    ):
        sessions, _ = key_maps(scenario, server)
        reference = build_poller(
            settings_for(
                server,
                scenario,
                database_url=databases.database_url(tmp_path, "ref"),
                clock=utc_now,
            )
        )
        assert poll_once(reference) == ("ok", [])
        baseline = facts(reference.db, sessions)
        assert any(
            f.rule == "repeated_breaches" and f.status == "fail" for f in baseline.values()
        ), "the reference must find the pattern across three teachers' lessons"

        server.state.faults.latency_ms = LATENCY_MS
        data = settings_data(server, scenario, tmp_path / "unused.db")
        data["database"] = {"url": url}
        data["poll"] = {
            **data["poll"],
            "shards": SHARDS,
            "lease_seconds": LEASE_SECONDS,
            "interval_seconds": INTERVAL_SECONDS,
        }
        data["logging"] = {"level": "debug", "format": "json"}
        config = tmp_path / "remote_guard.toml"
        write_settings(config, data)

        # Both start on an empty schema: the first to take the start-up lock migrates it.
        workers = [start_worker(name, config, tmp_path) for name in ("first", "second")]
        db = session_factory(make_engine(url))
        ends: dict[str, datetime] = {}
        holders: dict[str, str] = {}
        try:
            for worker in workers:
                holders[worker.name] = wait_for(
                    f"the {worker.name} worker to start", worker.holder, limit=120
                )
            for worker in workers:
                wait_for(
                    f"the {worker.name} worker to finish a shard's cycle "
                    f"(log tail: {worker.tail()})",
                    lambda w=worker: w.finished_units() >= 1 or None,
                    limit=120,
                )

            def in_a_run() -> tuple[Worker, LeaseRow] | None:
                """A worker in a poll run, holding some of its sessions."""
                with db() as session:
                    rows = session.scalars(select(LeaseRow).where(LeaseRow.holder.is_not(None)))
                    held = list(rows)
                sessions_held = {r.holder for r in held if r.key.startswith("session:")}
                for row in held:
                    if not row.key.startswith("poll:") or row.run_id is None:
                        continue
                    for worker in workers:
                        if row.holder == holders[worker.name] and row.holder in sessions_held:
                            return worker, row
                return None

            victim, lease = wait_for(
                "a worker to be in a poll run, holding sessions",
                in_a_run,
                limit=INTERVAL_SECONDS * 3,
            )
            os.kill(victim.process.pid, signal.SIGKILL)
            victim.process.wait(timeout=10)
            killed_at = datetime.now(UTC)
            ends[holders[victim.name]] = killed_at
            survivor = next(w for w in workers if w is not victim)
            assert lease.run_id is not None
            cut_short = lease.run_id

            def all_polled_since_kill() -> datetime | None:
                rows = unit_leases(db)
                done = [row.done_at for row in rows.values()]
                if len(rows) != SHARDS or any(d is None or d <= killed_at for d in done):
                    return None
                return max(d for d in done if d is not None)

            after = wait_for(
                "the survivor to poll every shard after the kill, the dead worker's too",
                all_polled_since_kill,
                limit=INTERVAL_SECONDS * 4,
            )
            shard_0 = f"poll:{scenario.tenant.id}:shard:0of{SHARDS}"

            def patterns_judged_again() -> bool:
                row = unit_leases(db)[shard_0]
                return (
                    row.acquired_at is not None
                    and row.acquired_at > after
                    and row.done_at is not None
                    and row.done_at > row.acquired_at
                )

            wait_for(
                "shard 0 to run once more after every shard was polled",
                patterns_judged_again,
                limit=INTERVAL_SECONDS * 3,
            )
            taken = unit_leases(db)[lease.key]
        finally:
            for worker in workers:
                if worker.process.poll() is None:
                    worker.process.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
                    worker.process.wait(timeout=10)
                ends.setdefault(holders.get(worker.name, worker.name), datetime.now(UTC))

        assert survivor.process.returncode == 0, survivor.tail()
        verified = audit_verify(config)
        assert verified.returncode == 0, verified.stdout + verified.stderr

        # The dead worker's shard was taken over with a newer fencing token.
        assert taken.fencing_token > lease.fencing_token
        # A clean stop released every lease.
        with db() as session:
            still_held = session.scalars(
                select(LeaseRow.key).where(LeaseRow.holder.is_not(None))
            ).all()
            cut = session.get(PollRunRow, cut_short)
        assert still_held == []
        assert cut is not None
        assert cut.status == "interrupted", (cut.status, cut.errors)
        assert check_poll_runs(db) == []

        # Both did work before the kill; the survivor claimed the dead worker's shard after it.
        claims = {
            w.name: [e for e in w.events() if e.get("event") == "worker.unit_claimed"]
            for w in workers
        }
        assert all(claims[w.name] for w in workers)
        assert any(
            e["key"] == lease.key and int(e["fence"]) == taken.fencing_token
            for e in claims[survivor.name]
        )

        current = facts(db, sessions)
        assert (
            differences(
                {
                    k: (f.rule, f"{f.status}{' exempted' if f.exempted else ''}")
                    for k, f in current.items()
                },
                {
                    k: (f.rule, f"{f.status}{' exempted' if f.exempted else ''}")
                    for k, f in baseline.items()
                },
                pattern_rules=reference.rule_ids(stage=2),
            )
            == []
        )
        assert duplicate_findings(current.values()) == []

        holds = session_holds(workers, ends)
        shared = {h.key for h in holds if h.holder == holders[victim.name]} & {
            h.key for h in holds if h.holder == holders[survivor.name]
        }
        print(
            f"\ntwo workers: {victim.name} killed in a run of {lease.key.rsplit(':', 1)[-1]} "
            f"(fence {lease.fencing_token}), taken over with fence {taken.fencing_token}; "
            f"{len(holds)} session holds, {len(shared)} sessions held by both over time; "
            f"units claimed: " + ", ".join(f"{w.name} {len(claims[w.name])}" for w in workers)
        )
        assert shared, "no session was claimed by both workers: the overlap check proves nothing"
        assert overlaps(holds) == []
