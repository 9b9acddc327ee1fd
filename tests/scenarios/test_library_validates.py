"""Every scenario in the library loads, validates and carries hand-written ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_guard.fakegraph.scenario import load_scenario

LIBRARY = Path(__file__).parent
SCENARIO_FILES = sorted(LIBRARY.glob("*.yaml"))


def test_library_is_not_empty() -> None:
    """The library holds at least the fourteen edge cases it was started with."""
    assert len(SCENARIO_FILES) >= 14


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
