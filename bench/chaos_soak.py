"""A longer chaos soak than ``make test`` runs: many seeded fault schedules per scenario.

Runs ``tests/chaos``'s ``chaos_run`` over every chaos scenario for SEEDS seeds (2 unless
REMOTE_GUARD_BENCH_CHAOS_SEEDS says otherwise; ``python -m bench chaos_soak --chaos-seeds 40``
for a long soak) and the demo school for a quarter as many, and reports the runs, the polls by
status, the faults injected, the findings tolerated as known gaps and every run that broke an
invariant (with its seed, to repeat it as a test).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from remote_guard.logs import configure_logging
from remote_guard.settings import LoggingSettings

SEEDS = int(os.environ.get("REMOTE_GUARD_BENCH_CHAOS_SEEDS", "2"))


class _Folders:
    """``tmp_path_factory`` for ``baseline_for`` outside pytest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def mktemp(self, name: str) -> Path:
        self.count += 1
        folder = self.root / f"{name}-{self.count}"
        folder.mkdir(parents=True)
        return folder


def main() -> dict[str, Any]:
    from tests.chaos.conftest import RUNS
    from tests.chaos.test_chaos import SCENARIOS, baseline_for, chaos_run

    configure_logging(LoggingSettings(level="error"))
    broken: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="remote-guard-soak-") as root:
        folders = _Folders(Path(root))
        plan = [(name, seed) for name in SCENARIOS for seed in range(1000, 1000 + SEEDS)]
        plan += [("demo", seed) for seed in range(5000, 5000 + max(1, SEEDS // 4))]
        for name, seed in plan:
            baseline, at = baseline_for(name, folders)  # type: ignore[arg-type]
            report = chaos_run(baseline, at=at, seed=seed, folder=folders.mktemp("run"))
            if report.problems:
                broken.append({"scenario": name, "seed": seed, "problems": report.problems[:5]})
    return {
        "runs": RUNS.runs,
        "broken_runs": len(broken),
        "seconds": round(time.monotonic() - started, 1),
        "polls": dict(sorted(RUNS.polls.items())),
        "faults_injected": dict(sorted(Counter(RUNS.faults).items())),
        # Findings the chaos harness tolerates as known gaps of the product (see tests/chaos).
        "tolerated_findings": RUNS.tolerated,
        "broken": broken,
    }
