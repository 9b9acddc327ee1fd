"""How long `remote-guard audit verify` takes over a large trail.

Builds ENTRIES entries (100,000 unless REMOTE_GUARD_BENCH_ENTRIES says otherwise;
``python -m bench audit_verify --audit-entries 1000000`` for the long run) in a temporary
SQLite file through the real recording code (batches of 10,000 per transaction, the JSON-lines
file appended after each commit), then times ``verify`` over the table and the file.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from remote_guard import audit
from remote_guard.audit.verify import verify
from remote_guard.settings import AuditSettings
from remote_guard.store.db import make_engine, migrate, session_factory, transaction

ENTRIES = int(os.environ.get("REMOTE_GUARD_BENCH_ENTRIES", "100000"))
BATCH = 10_000
START = datetime(2026, 9, 3, 8, 0, tzinfo=UTC)


def _events(first: int, count: int) -> list[audit.Event]:
    """A mix like a school's trail: finding changes with before/after, and poll runs."""
    events: list[audit.Event] = []
    for number in range(first, first + count):
        if number % 50 == 0:
            events.append(
                audit.Event(
                    "poll.finished",
                    "poll_run",
                    f"run-{number}",
                    after={"status": "ok", "counts": {"sessions": 28, "findings_changed": 3}},
                )
            )
        else:
            events.append(
                audit.Event(
                    "finding.changed",
                    "finding",
                    f"{number:040x}",
                    before={"status": "warn"},
                    after={"status": "fail", "exemption": None},
                    detail={"rule": "pupil_meeting_chat", "session": f"mtg_{number % 997:024x}"},
                )
            )
    return events


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rg-bench-") as folder:
        database = Path(folder) / "bench.db"
        engine = make_engine(f"sqlite:///{database}")
        migrate(engine)
        config = audit.configure(engine, AuditSettings(file=Path(folder) / "bench.audit.jsonl"))
        db = session_factory(engine)
        began = time.perf_counter()
        for first in range(0, ENTRIES, BATCH):
            count = min(BATCH, ENTRIES - first)
            with transaction(db) as session:
                audit.record_many(
                    session, _events(first, count), at=START + timedelta(seconds=first)
                )
        built = time.perf_counter() - began
        began = time.perf_counter()
        report = verify(engine, config)
        checked = time.perf_counter() - began
        began = time.perf_counter()
        table_only = verify(engine, audit.TrailConfig(file=None))
        table_seconds = time.perf_counter() - began
        if not (report.ok and table_only.ok):
            problems = [str(p) for p in report.problems + table_only.problems]
            raise RuntimeError(f"the benchmark's own trail does not verify: {problems[:3]}")
        figures = {
            "entries": report.entries,
            "build_seconds": round(built, 1),
            "verify_seconds_table_and_file": round(checked, 1),
            "verify_seconds_table_only": round(table_seconds, 1),
            "entries_per_second": round(report.entries / checked),
            "database_mb": round(database.stat().st_size / 1e6, 1),
            "file_mb": round((Path(folder) / "bench.audit.jsonl").stat().st_size / 1e6, 1),
        }
        engine.dispose()
    return figures


if __name__ == "__main__":
    print(main())
