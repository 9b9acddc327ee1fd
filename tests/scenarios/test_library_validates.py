"""Every scenario in the library loads, validates and carries hand-written ground truth, and the
library as a whole keeps its coverage and its index (README.md)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from remote_guard.fakegraph.scenario import load_scenario
from remote_guard.rules.registry import load_rules

LIBRARY = Path(__file__).parent
SCENARIO_FILES = sorted(LIBRARY.glob("*.yaml"))
BREACH_STATUSES = {"breach", "fail", "warn"}
# Each rule must be pinned down from both sides: files where it must fire, files where it must not.
MIN_POSITIVE_FILES = 3
MIN_NEGATIVE_FILES = 2


def test_library_is_not_empty() -> None:
    """The library holds at least the ninety edge cases README.md lists."""
    assert len(SCENARIO_FILES) >= 90


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda path: path.stem)
def test_scenario_validates_with_ground_truth(path: Path) -> None:
    """The file validates and has at least one expect or expect_absent entry."""
    scenario = load_scenario(path)

    assert len(scenario.expect) + len(scenario.expect_absent) >= 1


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda path: path.stem)
def test_scenario_is_named_described_and_fixed_in_time(path: Path) -> None:
    """The name matches the file, the description explains the truth, and "now" is fixed."""
    scenario = load_scenario(path)

    assert scenario.name == path.stem
    assert len(scenario.description.split()) >= 20
    assert scenario.now is not None


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda path: path.stem)
def test_scope_is_justified(path: Path) -> None:
    """A file that leaves rules unscored (``scope``) says why in its description, and names only
    registered rules, so a narrowed truth is a visible decision, not an accident."""
    scenario = load_scenario(path)

    if scenario.scope:
        assert "scope" in scenario.description
        assert set(scenario.scope) <= set(load_rules())


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda path: path.stem)
def test_expectations_name_registered_rules(path: Path) -> None:
    """A misspelt rule id in the truth would silently never match (loading does not check it)."""
    scenario = load_scenario(path)
    rules = set(load_rules())

    assert {e.rule for e in [*scenario.expect, *scenario.expect_absent]} <= rules


def test_every_rule_has_positive_and_negative_cases() -> None:
    """Each registered rule must fire in at least three files and stay quiet in at least two."""
    positive: dict[str, set[str]] = defaultdict(set)
    negative: dict[str, set[str]] = defaultdict(set)
    for path in SCENARIO_FILES:
        scenario = load_scenario(path)
        for expectation in scenario.expect:
            if expectation.status in BREACH_STATUSES:
                positive[expectation.rule].add(path.stem)
        for expectation in scenario.expect_absent:
            if expectation.status in BREACH_STATUSES:
                negative[expectation.rule].add(path.stem)

    thin = {
        rule: (len(positive[rule]), len(negative[rule]))
        for rule in sorted(load_rules())
        if len(positive[rule]) < MIN_POSITIVE_FILES or len(negative[rule]) < MIN_NEGATIVE_FILES
    }
    assert thin == {}


def test_readme_lists_every_file() -> None:
    """README.md's table of cases names every file, so the index cannot fall behind."""
    readme = (LIBRARY / "README.md").read_text(encoding="utf-8")

    unlisted = [path.stem for path in SCENARIO_FILES if f"`{path.stem}`" not in readme]
    assert unlisted == []
