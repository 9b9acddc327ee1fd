"""Every library scenario through the real client against the fake tenant, scored against its
hand-written ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from remote_guard.fakegraph.harness import run_check
from remote_guard.fakegraph.scenario import load_scenario
from remote_guard.policy.profile import Policy
from remote_guard.rules.registry import load_rules
from tests.scenarios.scoring import SCORES, Scores

LIBRARY = sorted(Path(__file__).parent.glob("*.yaml"))


@pytest.mark.e2e
@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_scenario_matches_its_ground_truth(path: Path, tmp_path: Path, database_url: str) -> None:
    """Exactly the expected breaches are found, and nothing that must be absent."""
    scenario = load_scenario(path)
    result = run_check(scenario, state_dir=tmp_path, database_url=database_url)
    assert result.poll.status == "ok", result.poll.errors
    problems = SCORES.score(scenario, result.findings, set(load_rules()))
    assert problems == []
    _every_finding_cites_a_real_clause_and_carries_evidence(result.policy, result.findings)


def _every_finding_cites_a_real_clause_and_carries_evidence(
    policy: Policy, findings: list[dict[str, Any]]
) -> None:
    """Each row names a clause (with its version) of the profile or a pack it was judged
    against, and every open one says what was seen, what to do, and on what data it rests."""
    clauses = {
        (profile.id, f"{clause.id}v{clause.version}")
        for profile in policy.profiles
        for clause in profile.clauses
    }
    for finding in findings:
        assert (finding["profile"], finding["clause"]) in clauses, finding
        if finding["status"] in {"fail", "warn", "error"}:
            assert finding["evidence"], finding
            assert finding["sources"], finding
            assert finding["message"], finding
            assert finding["next_step"], finding


def test_library_is_large_enough() -> None:
    """The library keeps its edge cases (see README.md for what each covers)."""
    assert len(LIBRARY) >= 90


@pytest.mark.e2e
def test_check_command_prints_findings_as_json(tmp_path: Path) -> None:
    """`remote-guard check --format json` runs a scenario end to end in a subprocess."""
    # A file whose truth has a per-pupil breach and a per-setting one (subject not a person).
    path = Path(__file__).parent / "meeting_chat_pupil_posts.yaml"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "remote_guard",
            "check",
            "--scenario",
            str(path),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout)
    assert output["poll"]["status"] == "ok"
    assert output["poll"]["graph_requests"] > 0
    scenario = load_scenario(path)
    # A scorer of its own, so this run does not count twice in the library's table.
    assert Scores().score(scenario, output["findings"], set(load_rules())) == []
    assert all(f["clause"] and f["evidence"] is not None for f in output["findings"])
