"""The demo scenario: valid, deterministic, always spanning past, live and upcoming sessions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from remote_guard.fakegraph.demo import ONE_TO_ONE, PUPIL_CHAT, demo_scenario
from remote_guard.fakegraph.scenario import Scenario, dump_scenario, parse_scenario

# Moments across the day and the year, including both daylight-saving changes in London.
NOWS = [
    datetime(2026, 11, 18, 16, 0, tzinfo=UTC),
    datetime(2026, 11, 18, 3, 5, tzinfo=UTC),
    datetime(2026, 11, 18, 23, 55, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
    datetime(2026, 10, 25, 0, 45, tzinfo=UTC),
]


def test_demo_validates_as_a_scenario_file() -> None:
    """The demo survives a round trip through the YAML scenario format unchanged."""
    scenario = demo_scenario()

    reloaded = parse_scenario(yaml.safe_load(dump_scenario(scenario)), source="demo.yaml")

    assert reloaded == scenario


def test_demo_is_deterministic_for_a_seed() -> None:
    """The same seed gives the same scenario; another seed changes names, not sessions."""
    first, again, other = demo_scenario(seed=7), demo_scenario(seed=7), demo_scenario(seed=8)

    assert dump_scenario(first) == dump_scenario(again)
    assert [person.key for person in first.people] != [person.key for person in other.people]
    assert [meeting.key for meeting in first.meetings] == [
        meeting.key for meeting in other.meetings
    ]


def test_demo_has_a_realistic_size() -> None:
    """About 120 to 160 people and 20 to 30 meetings."""
    scenario = demo_scenario()

    assert 120 <= len(scenario.people) <= 160
    assert 20 <= len(scenario.meetings) <= 30


@pytest.mark.parametrize("now", NOWS, ids=lambda now: now.isoformat())
def test_demo_has_past_live_and_upcoming_meetings_whatever_the_time(now: datetime) -> None:
    """Relative to any "now", some meetings have ended, some are on, some are still to come."""
    scenario = demo_scenario()
    phases = {_phase(scenario, meeting.start, meeting.end, now) for meeting in scenario.meetings}

    assert phases == {"ended", "live", "upcoming"}


@pytest.mark.parametrize("rule", [PUPIL_CHAT, ONE_TO_ONE])
def test_demo_expects_a_breach_of_each_rule(rule: str) -> None:
    """Each rule that exists has at least one expected breach and one expected absence."""
    scenario = demo_scenario()

    assert any(expectation.rule == rule for expectation in scenario.expect)
    assert any(expectation.rule == rule for expectation in scenario.expect_absent)


def test_demo_expects_a_breach_before_a_one_to_one_starts() -> None:
    """An unregistered one-to-one that is still to come is expected as a breach already."""
    scenario = demo_scenario()
    now = NOWS[0]
    upcoming = {
        meeting.key
        for meeting in scenario.meetings
        if _phase(scenario, meeting.start, meeting.end, now) == "upcoming"
    }

    assert any(
        expectation.rule == ONE_TO_ONE and expectation.session in upcoming
        for expectation in scenario.expect
    )


def _phase(scenario: Scenario, start: str, end: str, now: datetime) -> str:
    if scenario.when(start, now) > now:
        return "upcoming"
    if scenario.when(end, now) <= now:
        return "ended"
    return "live"
