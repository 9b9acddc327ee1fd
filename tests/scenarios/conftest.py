"""Prints the per-rule precision and recall of the scenario library after the run."""

from __future__ import annotations

from typing import Any

from tests.scenarios.scoring import SCORES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SCORES.by_rule:
        return
    terminalreporter.write_sep("=", "scenario library: precision and recall per rule")
    for line in SCORES.table():
        terminalreporter.write_line(line)
