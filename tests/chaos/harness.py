"""What the chaos and crash suites share: a frozen clock, a clean baseline, and the invariants.

A scenario is first polled once with no faults: that run's findings (every status, passes
included) are the reference, and the scenario's hand-written ground truth is scored against it.
Faulted runs are then judged against both:

- while faults are on, every stored finding is either what the clean run says or ``error``: a
  ``pass`` where the clean run has anything else is a pass made from data that could not be read,
  and any other difference is a wrong answer built from damaged data;
- once faults stop and one more clean poll has run, the findings are exactly the clean run's
  (each expected finding present once, nothing extra left open), every poll run has finished
  with a status, and a failed or partial one says why.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from remote_guard.fakegraph.harness import _finding_dict, import_registers, key_maps, settings_for
from remote_guard.fakegraph.scenario import Scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.findings.models import FindingRow
from remote_guard.poll.models import PollRunRow
from remote_guard.poll.service import Poller, run_poll
from remote_guard.rules.registry import load_rules
from remote_guard.runtime import build_poller
from remote_guard.settings import Settings
from tests import databases
from tests.scenarios.scoring import Scores

FINISHED_STATUSES = frozenset({"ok", "partial", "failed", "interrupted"})


def frozen_clock(at: datetime) -> Callable[[], datetime]:
    """A clock that always says ``at``: the fake tenant and the poller agree on "now" however
    long a run takes, so a faulted run and the clean one see the same tenant."""
    return lambda: at


@dataclass(frozen=True)
class Fact:
    """One stored finding, as the invariants compare it."""

    key: str
    rule: str
    clause: str
    session_id: str
    session: str  # the scenario's key for the session, or the session id if it has none
    subject: str
    status: str
    exempted: bool

    def describe(self) -> str:
        who = f" about {self.subject}" if self.subject else ""
        return f"{self.rule} [{self.clause}] on {self.session}{who}"


def facts(db: sessionmaker[Session], sessions: dict[str, str]) -> dict[str, Fact]:
    with db() as session:
        rows = list(session.scalars(select(FindingRow)))
    return {
        row.key: Fact(
            key=row.key,
            rule=row.rule_id,
            clause=f"{row.clause_id}v{row.clause_version}",
            session_id=row.session_id,
            session=sessions.get(row.session_id, row.session_id),
            subject=row.subject_key,
            status=row.status,
            exempted=row.exemption is not None,
        )
        for row in rows
    }


def finding_dicts(
    db: sessionmaker[Session], sessions: dict[str, str], subjects: dict[str, str]
) -> list[dict[str, Any]]:
    """The stored findings in the shape the scenario scorer reads."""
    with db() as session:
        rows = list(session.scalars(select(FindingRow)))
    return [_finding_dict(row, sessions, subjects) for row in rows]


def chaos_settings(
    server: FakeTenantServer,
    scenario: Scenario,
    *,
    database_url: str,
    clock: Callable[[], datetime],
    timeout_seconds: float = 0.4,
) -> Settings:
    """Settings for the fake tenant with a short client timeout and quick retries, so a slow
    answer is a read timeout and a run under faults stays quick."""
    settings = settings_for(server, scenario, database_url=database_url, clock=clock)
    tenant = settings.tenant.model_copy(
        update={
            "timeout_seconds": timeout_seconds,
            "max_retries": 3,
            "max_retry_wait_seconds": 0.05,
        }
    )
    return settings.model_copy(update={"tenant": tenant})


@dataclass
class Baseline:
    """A clean run of a scenario: the reference every faulted run is judged against."""

    scenario: Scenario
    facts: dict[str, Fact]
    sessions: dict[str, str]
    subjects: dict[str, str]
    truth_problems: list[str]


def clean_baseline(scenario: Scenario, *, at: datetime, folder: Path) -> Baseline:
    """Poll ``scenario`` once with no faults at the frozen time ``at``."""
    clock = frozen_clock(at)
    folder.mkdir(parents=True, exist_ok=True)
    # Only the facts are kept: the database goes once they are read.
    with databases.fresh_database(folder, "baseline") as database_url:
        with FakeTenantServer(scenario, state_dir=folder / "tenant", clock=clock) as server:
            settings = chaos_settings(
                server, scenario, database_url=database_url, clock=clock, timeout_seconds=10
            )
            poller = build_poller(settings, clock=clock)
            import_registers(poller, scenario, server, clock=clock)
            result = run_poll(poller)
            assert result.status == "ok", result.errors
            sessions, subjects = key_maps(scenario, server)
        truth = Scores().score(
            scenario, finding_dicts(poller.db, sessions, subjects), set(load_rules())
        )
        return Baseline(scenario, facts(poller.db, sessions), sessions, subjects, truth)


@dataclass
class Report:
    """What one run found wrong, with the fault counts that led there."""

    problems: list[str] = field(default_factory=list)
    polls: Counter[str] = field(default_factory=Counter)
    # Differences from the clean run that hide nothing (a pass where a rule does not apply).
    tolerated: list[str] = field(default_factory=list)

    def extend(self, where: str, problems: Iterable[str]) -> None:
        self.problems.extend(f"{where}: {problem}" for problem in problems)


def check_during(
    baseline: Baseline,
    current: dict[str, Fact],
    *,
    deleted: Iterable[str] = (),
    tolerated: list[str] | None = None,
) -> list[str]:
    """While faults are on: every finding is the clean run's answer, or ``error``.

    Sessions of meetings deleted mid-cycle (``deleted``, scenario keys) are left out: while a
    meeting is deleted its facts really are different (no invitation, no options). A pass where
    the clean run says the rule does not apply hides nothing: it goes to ``tolerated`` rather
    than the problems.
    """
    problems: list[str] = []
    skipped = set(deleted)
    for key, fact in sorted(current.items()):
        if fact.status == "error" or fact.session in skipped:
            continue
        base = baseline.facts.get(key)
        if fact.status == "pass" and base is not None and base.status == "not_applicable":
            # The rule does not apply to this session at all (one_to_one_without_consent on a
            # direct chat whose messages were unread, say): a pass hides no breach.
            if tolerated is not None:
                tolerated.append(f"{fact.describe()} passed where it does not apply")
            continue
        if base is None:
            if fact.status != "not_applicable":
                problems.append(
                    f"{fact.describe()} is {fact.status}, a finding a clean read does not give"
                )
            continue
        if fact.status == base.status:
            continue
        if fact.status == "pass":
            problems.append(
                f"PASS MADE FROM MISSING DATA: {fact.describe()} is pass; a clean read gives "
                f"{base.status}"
            )
        else:
            problems.append(f"{fact.describe()} is {fact.status}; a clean read gives {base.status}")
    return problems


def check_final(
    baseline: Baseline,
    current: dict[str, Fact],
    findings: list[dict[str, Any]],
    *,
    score_truth: bool = True,
) -> list[str]:
    """After faults stop and one clean poll: exactly the clean run's findings, and (with
    ``score_truth``) the scenario's ground truth met: each expected finding present once,
    nothing unexpected."""
    problems: list[str] = []
    for key, base in sorted(baseline.facts.items()):
        fact = current.get(key)
        if fact is None:
            problems.append(f"{base.describe()} is missing; a clean read gives {base.status}")
        elif (fact.status, fact.exempted) != (base.status, base.exempted):
            problems.append(
                f"{fact.describe()} is {fact.status}{' (exempted)' if fact.exempted else ''}; "
                f"a clean read gives {base.status}{' (exempted)' if base.exempted else ''}"
            )
    for key, fact in sorted(current.items()):
        if key not in baseline.facts and fact.status != "not_applicable":
            problems.append(f"{fact.describe()} is still {fact.status}; a clean read has none")
    problems.extend(duplicate_findings(current.values()))
    if score_truth:
        truth = Scores().score(baseline.scenario, findings, set(load_rules()))
        problems.extend(f"ground truth: {problem}" for problem in truth)
    return problems


def duplicate_findings(current: Iterable[Fact]) -> list[str]:
    """Two open findings of one rule and clause about one subject in one scenario session."""
    seen: Counter[tuple[str, str, str, str]] = Counter(
        (f.rule, f.clause, f.session, f.subject)
        for f in current
        if f.status in ("fail", "warn", "error")
    )
    return [
        f"duplicate: {count} open findings of {rule} [{clause}] on {session} about {subject!r}"
        for (rule, clause, session, subject), count in sorted(seen.items())
        if count > 1
    ]


def check_poll_runs(db: sessionmaker[Session]) -> list[str]:
    """Every poll run has finished with a known status; a failed or partial one says why."""
    problems: list[str] = []
    with db() as session:
        rows = list(session.scalars(select(PollRunRow).order_by(PollRunRow.started_at)))
    for row in rows:
        if row.status not in FINISHED_STATUSES:
            problems.append(f"poll run {row.id} is still {row.status!r}")
        elif row.status in ("partial", "failed") and not row.errors:
            problems.append(f"poll run {row.id} is {row.status} without saying why")
        if row.status != "interrupted" and row.finished_at is None:
            problems.append(f"poll run {row.id} ({row.status}) has no finished_at")
    return problems


def sqlite_integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a SQLite file ("ok" when sound)."""
    connection = sqlite3.connect(path)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


def poll_once(poller: Poller) -> tuple[str, list[str]]:
    """One poll cycle; an exception escaping it is itself a broken invariant."""
    try:
        result = run_poll(poller)
    except Exception as exc:  # noqa: BLE001 - the invariant is that nothing escapes
        return "raised", [f"run_poll raised {type(exc).__name__}: {exc}"]
    return result.status, []
