"""The benchmark's trust generator: the sizes asked for, valid references, repeatable by seed."""

from __future__ import annotations

from collections import Counter

from bench.trust import LARGE, TRUST_DSL, TrustSize, trust_scenario, validate

SMALL = TrustSize(schools=2, staff_per_school=20, pupils_per_school=60, sessions_per_school=40)


def test_the_large_trust_has_the_sizes_the_issue_asks_for() -> None:
    """50 schools, 2,500 staff, 25,000 pupils and 5,000 sessions in the day."""
    trust = trust_scenario(LARGE)
    kinds = Counter(person.kind for person in trust.scenario.people)
    schools = [group for group in trust.scenario.groups if group.role == "school"]

    assert (len(schools), kinds["staff"], kinds["pupil"]) == (50, 2500, 25000)
    assert trust.facts.total_sessions == 5000


def test_a_small_trust_is_a_valid_scenario_with_each_kind_of_session() -> None:
    """Every reference and time resolves, and lessons, one-to-ones, calls, chats, staff
    meetings, meetings elsewhere and small groups are all there."""
    trust = trust_scenario(SMALL)

    scenario = validate(trust)

    assert len(scenario.people) == 2 * (20 + 60)
    assert set(trust.facts.sessions) == {
        "lesson_private",
        "lesson_channel",
        "one_to_one",
        "call",
        "staff_meeting",
        "chat",
        "other_platform",
        "small_group",
    }
    assert trust.facts.total_sessions == 80


def test_the_same_seed_gives_the_same_trust_and_another_seed_another() -> None:
    """Names, breaches and join times follow the seed."""
    first = trust_scenario(SMALL, seed=3).scenario.model_dump()
    again = trust_scenario(SMALL, seed=3).scenario.model_dump()
    other = trust_scenario(SMALL, seed=4).scenario.model_dump()

    assert first == again
    assert first != other


def test_live_sessions_run_at_now_for_run_time_breaches() -> None:
    """At the trust's "now" some lessons are live, small groups hold a teacher and three
    pupils, and the trust-wide DSL is in every school's group."""
    trust = trust_scenario(SMALL)
    facts = trust.facts
    school_groups = [g for g in trust.scenario.groups if g.role == "school"]

    assert facts.live_lessons
    assert set(facts.live_chat_lessons) <= set(facts.live_lessons)
    assert all(len(pupils) == 3 for _teacher, pupils in facts.small_groups.values())
    assert all("trust-central" in group.members for group in school_groups)
    assert TRUST_DSL in next(g.members for g in trust.scenario.groups if g.key == "trust-central")
