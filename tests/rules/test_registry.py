"""Consistency of the rule pack and the shipped profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote_guard.policy.profile import ProfileError, bind_rules, builtin_profile_dir, load_profile
from remote_guard.rules.registry import load_rules

PROFILES = sorted(builtin_profile_dir().glob("*.toml"))


def test_profiles_are_shipped() -> None:
    """Both schools' profiles are present."""
    assert {path.stem for path in PROFILES} >= {"bramham-shadwell", "whingate", "national-guidance"}


def test_every_rule_id_is_its_module_name() -> None:
    """load_rules refuses a mismatch, so loading is the check; ids are listed for clarity."""
    assert set(load_rules()) >= {"one_to_one_without_consent", "pupil_meeting_chat"}


def test_every_rule_is_used_by_a_clause_of_some_profile() -> None:
    """No rule exists without a clause that it enforces."""
    used = {
        binding.rule
        for path in PROFILES
        for clause in load_profile(path).clauses
        for binding in clause.rules
    }
    assert set(load_rules()) <= used


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_profile_validates_and_binds(path: Path) -> None:
    """Each clause is enforced or manual; every cited rule exists with valid parameters."""
    profile = load_profile(path)
    bound = bind_rules(profile, load_rules(), source=str(path))
    assert all(clause.rules or clause.manual or clause.covered_by for clause in profile.clauses)
    assert len(bound) == sum(len(clause.rules) for clause in profile.clauses)


def test_profile_citing_a_missing_rule_is_refused(tmp_path: Path) -> None:
    """A typo in a rule name stops the profile with the clause named."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[profile]\nid="bad"\nname="n"\nschool="s"\nsource_document="d"\nversion="1"\n'
        '[[clauses]]\nid="A.1"\nversion=1\ntext="Pupils should not chat."\nlevel="SHOULD"\nsource="App A"\n'
        '[[clauses.rules]]\nrule="pupil_meeting_chatt"\n'
    )
    with pytest.raises(
        ProfileError, match=r"clause A\.1: rule 'pupil_meeting_chatt' does not exist"
    ):
        bind_rules(load_profile(path), load_rules(), source=str(path))


def test_profile_with_a_bad_parameter_is_refused(tmp_path: Path) -> None:
    """A parameter of the wrong type is named with its clause and rule."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[profile]\nid="bad"\nname="n"\nschool="s"\nsource_document="d"\nversion="1"\n'
        '[[clauses]]\nid="A.1"\nversion=1\ntext="No one-to-ones without consent."\nlevel="SHALL"\nsource="App A"\n'
        '[[clauses.rules]]\nrule="one_to_one_without_consent"\nparams={threshold_seconds="two minutes"}\n'
    )
    with pytest.raises(
        ProfileError, match="one_to_one_without_consent parameter threshold_seconds"
    ):
        bind_rules(load_profile(path), load_rules(), source=str(path))


def test_clause_without_rules_or_manual_reason_is_refused(tmp_path: Path) -> None:
    """A clause can never silently drop out of checking."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[profile]\nid="bad"\nname="n"\nschool="s"\nsource_document="d"\nversion="1"\n'
        '[[clauses]]\nid="A.1"\nversion=1\ntext="Pupils should not chat."\nlevel="SHOULD"\nsource="App A"\n'
    )
    with pytest.raises(ProfileError, match=r"clause A\.1: a clause needs exactly one of rules"):
        load_profile(path)


def test_every_rule_cites_a_clause_that_binds_it() -> None:
    """Each rule names, in ``clauses``, at least one shipped clause that actually applies it, so
    a reader can go from the rule to the words of a code of practice."""
    binding_clauses: dict[str, set[str]] = {}
    for path in PROFILES:
        for clause in load_profile(path).clauses:
            for binding in clause.rules:
                binding_clauses.setdefault(binding.rule, set()).add(clause.id)
    for rule_id, rule in load_rules().items():
        assert set(rule.clauses) & binding_clauses.get(rule_id, set()), (
            f"{rule_id} cites {rule.clauses}, none of which binds it"
        )


def test_every_rule_is_well_formed() -> None:
    """Documented, staged, with strict parameters that have defaults."""
    import importlib

    for rule_id, rule in load_rules().items():
        module = importlib.import_module(f"remote_guard.rules.{rule_id}")
        assert module.__doc__, rule_id
        assert len(module.__doc__) > 40, rule_id
        assert rule.stage in (1, 2), rule_id
        assert rule.title, rule_id
        assert rule.clauses, rule_id
        assert rule.Params.model_config.get("extra") == "forbid", rule_id
        rule.Params()  # every parameter has a default


def test_packs_load_after_the_school_profile() -> None:
    """A policy is the school's profile then its packs; findings keep each clause's profile id."""
    from remote_guard.policy.profile import load_policy

    policy = load_policy("whingate", ["national-guidance"], [], load_rules())
    assert [p.id for p in policy.profiles] == ["whingate", "national-guidance"]
    assert policy.profile.id == "whingate"
    assert {b.profile_id for b in policy.bound_rules} == {"whingate", "national-guidance"}


def test_a_pack_twice_is_refused() -> None:
    """Two profiles with one id would make findings ambiguous."""
    from remote_guard.policy.profile import load_policy

    with pytest.raises(ProfileError, match="already in use"):
        load_policy("whingate", ["whingate"], [], load_rules())


def test_a_missing_pack_names_where_it_looked(tmp_path: Path) -> None:
    """A typo in a pack name says which folders were searched."""
    from remote_guard.policy.profile import load_policy

    with pytest.raises(ProfileError, match="no profile named 'national-guidence'"):
        load_policy("whingate", ["national-guidence"], [tmp_path], load_rules())


def test_covered_by_must_name_a_clause_of_the_profile(tmp_path: Path) -> None:
    """A clause checked together with another must name one that exists."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[profile]\nid="bad"\nname="n"\nschool="s"\nsource_document="d"\nversion="1"\n'
        '[[clauses]]\nid="A.1"\nversion=1\ntext="Pupils should not chat."\nlevel="SHOULD"\nsource="App A"\n'
        'covered_by="A.9"\n'
    )
    with pytest.raises(ProfileError, match=r"covered_by 'A\.9' is not a clause of this profile"):
        load_profile(path)
