"""The benchmarks' fake tenant and poller processes.

:class:`TrustTenant` builds the trust (:mod:`bench.trust`), serves it over HTTPS in this process
with Graph-like latency and throttling, and runs the real poller against it in a child process
(:mod:`bench._worker`), each run with a database of its own. Both processes read one clock:
the scenario's "now" at a wall-clock instant, running at real speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.trust import Trust, TrustSize, trust_scenario
from remote_guard.fakegraph.harness import import_registers
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.fakegraph.throttling import Throttling
from remote_guard.runtime import build_poller
from remote_guard.settings import settings_from_mapping

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SharedClock:
    """The scenario's ``now`` at wall-clock time ``epoch``, running at real speed."""

    now: datetime
    epoch: float

    def __call__(self) -> datetime:
        return self.now + timedelta(seconds=time.time() - self.epoch)

    def spec(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "epoch": self.epoch}


@dataclass
class GraphTally:
    """What the fake tenant served between two marks: HTTP requests to Graph, ``$batch`` items,
    429s (HTTP and items) and token requests."""

    http: int = 0
    batch_items: int = 0
    throttled_http: int = 0
    throttled_items: int = 0
    identity: int = 0
    by_status: Counter[int] = field(default_factory=Counter)

    @property
    def throttled(self) -> int:
        return self.throttled_http + self.throttled_items

    def as_dict(self) -> dict[str, Any]:
        return {
            "http_requests": self.http,
            "batch_items": self.batch_items,
            "throttled_responses": self.throttled,
            "throttled_http": self.throttled_http,
            "throttled_batch_items": self.throttled_items,
            "identity_requests": self.identity,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
        }


class TrustTenant:
    """The trust served by the fake tenant, with the knobs the benchmarks turn."""

    def __init__(
        self,
        size: TrustSize,
        *,
        folder: Path,
        latency_ms: float,
        throttling: bool = True,
        seed: int = 2026,
    ) -> None:
        began = time.perf_counter()
        self.trust: Trust = trust_scenario(size, seed=seed)
        self.generate_seconds = time.perf_counter() - began
        self.folder = folder
        self.clock = SharedClock(
            now=self.trust.scenario.reference_now().astimezone(UTC), epoch=time.time()
        )
        began = time.perf_counter()
        self.server = FakeTenantServer(
            self.trust.scenario, state_dir=folder / "tenant", clock=self.clock
        )
        self.build_seconds = time.perf_counter() - began
        began = time.perf_counter()
        self.server.start()
        self.start_seconds = time.perf_counter() - began
        self.latency_ms = latency_ms
        self.throttling_on = throttling
        self.reset_limits()
        self._runs = 0

    def close(self) -> None:
        self.server.stop()

    @property
    def state(self) -> Any:
        return self.server.state

    def timings(self) -> dict[str, Any]:
        return {
            "generate_seconds": round(self.generate_seconds, 1),
            "build_seconds": round(self.build_seconds, 1),
            "start_seconds": round(self.start_seconds, 1),
            "sessions": self.trust.facts.total_sessions,
            "people": len(self.trust.scenario.people),
        }

    def throttling_counts(self) -> dict[str, int]:
        """The 429s the fake answered since the last :meth:`reset_limits`, by limit."""
        return dict(self.state.throttling.counts)

    def reset_limits(
        self, *, latency_ms: float | None = None, throttling: bool | None = None
    ) -> None:
        """Fresh throttling windows (nothing counted yet), and the latency and whether
        throttling is on for what follows."""
        if latency_ms is not None:
            self.latency_ms = latency_ms
        if throttling is not None:
            self.throttling_on = throttling
        throttling_state = Throttling()
        throttling_state.enabled = self.throttling_on
        throttling_state.tenant_users = len(self.state.users)
        self.state.throttling = throttling_state
        self.state.faults.latency_ms = self.latency_ms

    # --- settings and databases -------------------------------------------------------------------

    def settings_mapping(self, database_url: str, **poll: Any) -> dict[str, Any]:
        """remote_guard's settings for this tenant, as a school's file would give them."""
        scenario = self.trust.scenario
        schools = [
            {
                "key": group.school or group.key,
                "name": group.name,
                "group_ids": [scenario.group_id(group.key)],
            }
            for group in scenario.groups
            if group.role == "school"
        ]
        return {
            "tenant": self.server.tenant_settings(),
            "directory": self.server.directory_settings(),
            "schools": schools,
            "database": {"url": database_url},
            "poll": {"lookback_hours": 8, "lookahead_days": 1, **poll},
            "policy": {"profile": scenario.profile, "packs": list(scenario.packs)},
            "school_day": {"timezone": scenario.timezone},
        }

    def new_database(self, name: str) -> str:
        """A fresh SQLite database, migrated, with the trust's registers imported."""
        path = self.folder / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
        settings = settings_from_mapping(self.settings_mapping(url), source="bench")
        poller = build_poller(settings, clock=self.clock)
        import_registers(poller, self.trust.scenario, self.server, clock=self.clock)
        poller.db.kw["bind"].dispose()
        return url

    # --- the request log --------------------------------------------------------------------------

    def mark(self) -> int:
        return len(self.state.requests)

    def tally(self, since: int, until: int | None = None) -> GraphTally:
        """What was served between two marks of the request log."""
        return self._tally(self.state.requests[since:until])

    def tally_between(self, since: datetime, until: datetime) -> GraphTally:
        """What was served between two moments of the shared clock."""
        return self._tally([r for r in self.state.requests if since <= r.at <= until])

    @staticmethod
    def _tally(records: list[Any]) -> GraphTally:
        tally = GraphTally()
        for record in records:
            graph = record.path.lower().startswith("/v1.0/")
            if not graph:
                tally.identity += 1
                continue
            if record.in_batch:
                tally.batch_items += 1
                tally.throttled_items += record.status == 429
            else:
                tally.http += 1
                tally.throttled_http += record.status == 429
            tally.by_status[record.status] += 1
        return tally

    # --- the poller -------------------------------------------------------------------------------

    def run_worker(
        self,
        *,
        mode: str,
        database_url: str,
        cycles: int | None = None,
        interval_seconds: float = 0,
        stop_file: Path | None = None,
        poll: dict[str, Any] | None = None,
        notifications: dict[str, Any] | None = None,
        scheduled: bool = False,
        prepare: bool = False,
        unpaced: bool = False,
        pause_after: int | None = None,
        wait: bool = True,
        poll_from_cycle: list[list[Any]] | None = None,
        nice: int = 0,
    ) -> WorkerRun:
        """Start the poller in a child process; wait for it unless ``wait`` is False.

        ``scheduled``: run it as the service does (every ``interval_seconds`` until the stop
        file appears), with ``notifications`` as its ``[notifications]`` settings if given.
        ``prepare``: the first cycle does not pace itself (see :mod:`bench._worker`);
        ``unpaced``: no cycle does.
        ``pause_after``: after that many cycles it waits for :meth:`WorkerRun.go`.
        ``poll_from_cycle``: ``[[cycle, {setting: value}], ...]``, ``[poll]`` settings changed
        from that cycle on (0 is the first). ``nice``: the process starts at that lower
        priority (see :meth:`WorkerRun.normal_priority`).
        """
        self._runs += 1
        name = f"run{self._runs}-{mode}"
        settings = self.settings_mapping(database_url, **(poll or {}))
        if notifications is not None:
            settings["notifications"] = notifications
        spec = {
            "settings": settings,
            "scheduled": scheduled,
            "prepare": prepare,
            "unpaced": unpaced,
            "pause_after": pause_after,
            "poll_from_cycle": poll_from_cycle or [],
            "nice": nice,
            "clock": self.clock.spec(),
            "mode": mode,
            "cycles": cycles,
            "interval_seconds": interval_seconds,
            "stop_file": str(stop_file) if stop_file else None,
            "out": str(self.folder / f"{name}.json"),
        }
        spec_path = self.folder / f"{name}.spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")])}
        log = (self.folder / f"{name}.log").open("w", encoding="utf-8")
        process = subprocess.Popen(
            [sys.executable, "-m", "bench._worker", str(spec_path)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        run = WorkerRun(process=process, out=Path(spec["out"]), log=self.folder / f"{name}.log")
        if wait:
            run.wait()
        return run


@dataclass
class WorkerRun:
    process: subprocess.Popen[bytes]
    out: Path
    log: Path

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The worker's results once it has exited.

        Raises:
            RuntimeError: the worker failed; the message ends with its log.
            subprocess.TimeoutExpired: it did not finish in ``timeout`` seconds.
        """
        code = self.process.wait(timeout=timeout)
        if code != 0:
            tail = self.log.read_text(encoding="utf-8")[-3000:]
            raise RuntimeError(f"the poller process failed (exit {code}):\n{tail}")
        return self.results()

    def cycles_done(self) -> int:
        return len(self.results().get("cycles", []))

    def wait_for_cycles(self, count: int, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the worker has finished ``count`` cycles; its results so far.

        Raises:
            RuntimeError: the worker stopped first (its log ends the message).
            TimeoutError: not done in ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.cycles_done() < count:
            if self.process.poll() is not None:
                self.wait(timeout=1)
                if self.cycles_done() < count:
                    raise RuntimeError(f"the poller stopped after {self.cycles_done()} cycles")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the poller did not finish {count} cycles in time")
            time.sleep(0.2)
        return self.results()

    def go(self) -> None:
        """Let a worker paused after a cycle go on."""
        Path(f"{self.out}.go").touch()

    def normal_priority(self) -> bool:
        """Set every thread of the worker back to the normal priority (nice 0); whether it
        could (raising a priority needs the right to, as root has)."""
        tasks = Path(f"/proc/{self.process.pid}/task")
        try:
            ids = [int(task.name) for task in tasks.iterdir()]
        except OSError:
            ids = [self.process.pid]
        try:
            for task_id in ids:
                os.setpriority(os.PRIO_PROCESS, task_id, 0)
        except (PermissionError, ProcessLookupError):
            return False
        return True

    def results(self) -> dict[str, Any]:
        if not self.out.exists():
            return {"cycles": []}
        data: dict[str, Any] = json.loads(self.out.read_text(encoding="utf-8"))
        return data

    def stop(self, stop_file: Path, timeout: float = 600) -> dict[str, Any]:
        stop_file.touch()
        return self.wait(timeout=timeout)
