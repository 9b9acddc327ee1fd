"""The scenario loader and the profile loader against hostile files.

Any mapping (parsed YAML or JSON) gives a ``Scenario`` or a ``ScenarioError``; any file gives a
profile or a ``ProfileError``. Nothing else may escape: these files come from people, and a
mistake in one must be a message naming the file, not a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from remote_guard.fakegraph import scenario as scenario_module
from remote_guard.fakegraph.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from remote_guard.policy.profile import Profile, ProfileError, load_policy, load_profile
from remote_guard.rules.registry import load_rules

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "tests" / "scenarios"
PROFILE = ROOT / "config" / "policies" / "bramham-shadwell.toml"


def _field_names() -> list[str]:
    """Every property name the scenario schema reads, at any depth."""
    names: set[str] = set()
    for value in vars(scenario_module).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            names.update(value.model_fields)
    return sorted(names)


NAMES = _field_names()
TIMES = [
    "now",
    "now-2h",
    "now+90m",
    "today 09:00",
    "+2d 10:00",
    "2026-11-18T10:00:00Z",
    "2026-03-29T01:30:00",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+14:00",
    "yesterday 25:99",
    "now+99999999999d",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(TIMES)
)
keys = st.sampled_from(NAMES) | st.text(max_size=6)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=5),
    max_leaves=12,
)


def _library_documents() -> list[Any]:
    return [
        yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(LIBRARY.glob("*.yaml"))[:12]
    ]


DOCUMENTS = _library_documents()


def _parse(data: Any) -> None:
    try:
        result = parse_scenario(data, source="fuzz")
    except ScenarioError as exc:
        message = str(exc)
    else:
        assert isinstance(result, Scenario)
        return
    assert message.startswith("fuzz")


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(keys, values, max_size=8) | values)
def test_any_mapping_gives_a_scenario_or_a_scenario_error(data: Any) -> None:
    _parse(data)


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_places(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_places(item, (*path, index)))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    return [*value[:head], _replace(value[head], rest, new), *value[head + 1 :]]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_library_scenario_with_values_changed_gives_a_scenario_or_an_error(
    data: st.DataObject,
) -> None:
    """A real scenario with up to three values replaced (a person key that no longer exists, a
    time that cannot be, a list where a mapping was): valid, or a ScenarioError."""
    document = data.draw(st.sampled_from(DOCUMENTS))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        place = data.draw(st.sampled_from(_places(document)))
        document = _replace(document, place, data.draw(values))
    _parse(document)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200), suffix=st.sampled_from([".yaml", ".json"]))
def test_any_file_gives_a_scenario_or_a_scenario_error(
    tmp_path: Path, raw: bytes, suffix: str
) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(raw)
    with pytest.raises(ScenarioError):
        load_scenario(path)


@pytest.mark.parametrize(
    "text",
    [
        "&a [*a]",  # an alias of itself
        "a: &x\n  b: *x\n" * 3,
        "!!python/object/apply:os.system ['true']",
        "- " * 2000 + "x",
        json.dumps({"name": "x", "people": [{"key": "a"}] * 3}),
    ],
)
def test_hostile_yaml_is_a_scenario_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError):
        load_scenario(path)


# --- profiles -----------------------------------------------------------------------------------

REGISTRY = load_rules()
PROFILE_TEXT = PROFILE.read_text(encoding="utf-8")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    raise TypeError(type(value))


toml_values = st.recursive(
    st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.text(max_size=15)
    | st.sampled_from(["SHALL", "SHOULD", "pupil_meeting_chat", "BSF-1.1", ""]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["rule", "params", "id", "text", "level", "threshold", "x"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=8,
)


def _load_and_bind(path: Path, folder: Path) -> Profile:
    profile = load_profile(path)
    load_policy(str(path), (), (folder,), REGISTRY)
    return profile


def _check_profile(tmp_path: Path, text: str | bytes) -> None:
    path = tmp_path / "fuzz.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    try:
        result = _load_and_bind(path, tmp_path)
    except ProfileError as exc:
        message = str(exc)
    else:
        assert isinstance(result, Profile)
        return
    assert str(path) in message or "profile" in message.lower()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from(
        [
            "id",
            "version",
            "text",
            "level",
            "source",
            "rules",
            "manual",
            "covered_by",
            "params",
            "rule",
            "name",
            "clauses",
            "profile",
        ]
    ),
    value=toml_values,
    occurrence=st.integers(min_value=0, max_value=40),
)
def test_a_profile_with_a_value_changed_loads_or_is_a_profile_error(
    tmp_path: Path, key: str, value: Any, occurrence: int
) -> None:
    """The shipped profile with one ``key = ...`` line given another value: a profile (bound
    to the rules), or a ProfileError; never another exception."""
    lines = PROFILE_TEXT.splitlines()
    matching = [i for i, line in enumerate(lines) if line.split("=", 1)[0].strip() == key]
    if matching:
        index = matching[occurrence % len(matching)]
        lines[index] = f"{key} = {_toml_value(value)}"
    else:
        lines.insert(1, f"{key} = {_toml_value(value)}")
    _check_profile(tmp_path, "\n".join(lines) + "\n")


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_any_profile_file_is_a_profile_or_a_profile_error(tmp_path: Path, raw: bytes) -> None:
    _check_profile(tmp_path, raw)


@pytest.mark.parametrize(
    "text",
    [
        '[profile]\nclauses = 1\nid = "x"\n',
        '[profile]\nid = "x"\nname = "x"\n[[clauses]]\nid = "a"\n',
        "profile = 3\n",
        "clauses = 3\n",
        '[[clauses]]\nid = "A"\nversion = 1\ntext = "a clause text"\nlevel = "SHALL"\nsource = "abc"\n'
        '[[clauses.rules]]\nrule = "no_such_rule"\n',
        '[[clauses]]\nid = "A"\nversion = 1\ntext = "a clause text"\nlevel = "SHALL"\nsource = "abc"\n'
        '[[clauses.rules]]\nrule = "repeated_breaches"\nparams = { threshold = "many" }\n',
    ],
)
def test_hostile_profiles_are_profile_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "hostile.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError):
        _load_and_bind(path, tmp_path)
