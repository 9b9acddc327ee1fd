"""Prints what the chaos runs injected and found, after the test run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ChaosRuns:
    runs: int = 0
    failed_runs: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    polls: Counter[str] = field(default_factory=Counter)
    tolerated: int = 0

    def record(self, scenario: str, seed: int, faults: Counter[str], report: Any) -> None:
        self.runs += 1
        self.failed_runs += bool(report.problems)
        self.faults.update(faults)
        self.polls.update(report.polls)
        self.tolerated += len(report.tolerated)


RUNS = ChaosRuns()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RUNS.runs:
        return
    terminalreporter.write_sep("=", "chaos runs")
    terminalreporter.write_line(
        f"{RUNS.runs} runs ({RUNS.failed_runs} broke an invariant); polls by status: "
        + ", ".join(f"{status} {count}" for status, count in sorted(RUNS.polls.items()))
    )
    terminalreporter.write_line(
        "faults injected: "
        + ", ".join(f"{kind} {count}" for kind, count in sorted(RUNS.faults.items()))
    )
    if RUNS.tolerated:
        terminalreporter.write_line(
            f"passes where a rule does not apply, tolerated: {RUNS.tolerated} findings"
        )
