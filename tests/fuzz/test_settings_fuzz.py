"""Every setting, wrong: a value of the wrong type, a value out of range, and a misspelt key.

The cases are generated from the settings model itself, so a setting added later is covered
without touching this file. Each must be refused with a ``ConfigError`` that names the file and
the key, and never repeats the value given (it may be a secret).
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from remote_guard.settings import ConfigError, Settings, load_settings

MARKER = "MARKER-0f3c9a-the-value-must-not-be-echoed"

# The smallest valid configuration; each case breaks one key of it.
BASE: dict[str, Any] = {
    "tenant": {
        "tenant_id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "client_id": "11111111-2222-3333-4444-555555555555",
        "client_secret": "good-secret-value",
    },
    "directory": {
        "staff_group_ids": ["aaaaaaaa-0000-4000-8000-000000000001"],
        "pupil_group_ids": ["aaaaaaaa-0000-4000-8000-000000000002"],
    },
}
# A valid item for each list of tables (the case then breaks one key inside it).
ITEMS: dict[str, dict[str, Any]] = {
    "schools": {"key": "north", "name": "North Primary", "group_ids": ["g1"]},
    "school_day.terms": {"start": "2026-09-03", "end": "2026-10-23"},
}


@pytest.fixture(autouse=True)
def _no_remote_guard_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("REMOTE_GUARD_"):
            monkeypatch.delenv(name)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _is_sequence(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_sequence(arg) for arg in get_args(annotation) if arg is not type(None))
    return origin in (tuple, list, set, frozenset)


@dataclass(frozen=True)
class Leaf:
    """One setting: its dotted key (``poll.interval_seconds``), and its field."""

    key: str
    annotation: Any
    metadata: tuple[Any, ...]
    in_list: str | None  # the list of tables it is in ("schools"), if any


def leaves(
    model: type[BaseModel] = Settings, prefix: str = "", in_list: str | None = None
) -> Iterator[Leaf]:
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        inner = _model_in(field.annotation)
        if inner is not None:
            listed = key if _is_sequence(field.annotation) else in_list
            yield from leaves(inner, f"{key}.", listed)
        else:
            yield Leaf(key, field.annotation, tuple(field.metadata), in_list)


ALL_LEAVES = list(leaves())


def document(leaf: Leaf, value: Any, *, misspell: bool = False) -> dict[str, Any]:
    """The base configuration with ``value`` at the leaf's key (or at a misspelt key)."""
    data = json.loads(json.dumps(BASE))
    parts = leaf.key.split(".")
    if misspell:
        parts[-1] += "x"
    if leaf.in_list is not None:
        list_parts = leaf.in_list.split(".")
        item = dict(ITEMS[leaf.in_list])
        item[parts[len(list_parts)]] = value
        target = data
        for part in list_parts[:-1]:
            target = target.setdefault(part, {})
        target[list_parts[-1]] = [item]
        return data
    target = data
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value
    return data


def toml(data: dict[str, Any]) -> str:
    """TOML for the shapes used here: tables, lists of tables, inline tables and scalars."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, str):
            return json.dumps(item)
        if isinstance(item, list):
            return "[" + ", ".join(value(x) for x in item) + "]"
        if isinstance(item, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(v)}" for k, v in item.items()) + " }"
        raise TypeError(type(item))

    lines: list[str] = []

    def table(name: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict) and not _tables(v)}
        lines.append(f"[{name}]")
        lines.extend(f"{json.dumps(k)} = {value(v)}" for k, v in scalars.items())
        for key, item in body.items():
            if isinstance(item, dict):
                table(f"{name}.{key}", item)
            elif _tables(item):
                for entry in item:
                    lines.append(f"[[{name}.{key}]]")
                    lines.extend(f"{json.dumps(k)} = {value(v)}" for k, v in entry.items())

    for name, body in data.items():
        if isinstance(body, dict):
            table(name, body)
        elif _tables(body):
            for entry in body:
                lines.append(f"[[{name}]]")
                lines.extend(f"{json.dumps(k)} = {value(v)}" for k, v in entry.items())
        else:
            lines.insert(0, f"{json.dumps(name)} = {value(body)}")
    return "\n".join(lines) + "\n"


def _tables(item: Any) -> bool:
    return isinstance(item, list) and bool(item) and all(isinstance(x, dict) for x in item)


def out_of_range(leaf: Leaf) -> Any | None:
    """A value just outside the leaf's documented bounds, or None if it has none."""
    for bound in leaf.metadata:
        if isinstance(bound, annotated_types.Ge):
            return bound.ge - 1
        if isinstance(bound, annotated_types.Gt):
            return bound.gt
        if isinstance(bound, annotated_types.Le):
            return bound.le + 1
        if isinstance(bound, annotated_types.Lt):
            return bound.lt
        if isinstance(bound, annotated_types.MinLen):
            return ""
    if get_origin(leaf.annotation) is Literal:
        return "no-such-choice"
    for bound in leaf.metadata:
        if getattr(bound, "pattern", None):
            return "Not A Valid Value!"
    return None


def load(tmp_path: Path, data: dict[str, Any]) -> tuple[Path, str]:
    path = tmp_path / "remote_guard.toml"
    path.write_text(toml(data), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return path, str(caught.value)


def test_the_base_configuration_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(toml(BASE), encoding="utf-8")
    assert load_settings(path).tenant.client_id == BASE["tenant"]["client_id"]
    for name, item in ITEMS.items():
        section, _, key = name.rpartition(".")
        data = json.loads(json.dumps(BASE))
        if section:
            data.setdefault(section, {})[key] = [item]
        else:
            data[key] = [item]
        path.write_text(toml(data), encoding="utf-8")
        load_settings(path)


def test_every_setting_is_covered() -> None:
    """The generator sees every setting of every section (a new one cannot be missed)."""
    sections = {leaf.key.split(".")[0] for leaf in ALL_LEAVES}
    assert sections == set(Settings.model_fields)
    assert len(ALL_LEAVES) >= 60


@pytest.mark.parametrize("leaf", ALL_LEAVES, ids=lambda leaf: leaf.key)
def test_a_value_of_the_wrong_type_names_the_file_and_key(tmp_path: Path, leaf: Leaf) -> None:
    """A table where a value belongs: refused, naming the key, without echoing the value."""
    path, message = load(tmp_path, document(leaf, {"given": MARKER}))

    assert str(path) in message
    assert f"key {leaf.key}" in message
    assert MARKER not in message


RANGED = [leaf for leaf in ALL_LEAVES if out_of_range(leaf) is not None]


@pytest.mark.parametrize("leaf", RANGED, ids=lambda leaf: leaf.key)
def test_a_value_out_of_range_names_the_file_and_key(tmp_path: Path, leaf: Leaf) -> None:
    path, message = load(tmp_path, document(leaf, out_of_range(leaf)))

    assert str(path) in message
    assert f"key {leaf.key}" in message


@pytest.mark.parametrize("leaf", ALL_LEAVES, ids=lambda leaf: leaf.key)
def test_a_misspelt_key_is_refused_with_a_suggestion(tmp_path: Path, leaf: Leaf) -> None:
    path, message = load(tmp_path, document(leaf, "x", misspell=True))

    name = leaf.key.rsplit(".", 1)[-1]
    assert str(path) in message
    assert f"{leaf.key}x" in message
    assert f"did you mean {name}?" in message


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=3)
    ),
    max_leaves=6,
).filter(lambda v: v is not None)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(leaf=st.sampled_from(ALL_LEAVES), value=values)
def test_any_value_for_any_setting_loads_or_is_a_config_error(
    tmp_path: Path, leaf: Leaf, value: Any
) -> None:
    """Random TOML values anywhere: settings or a ConfigError, nothing else."""
    path = tmp_path / "fuzz.toml"
    try:
        path.write_text(toml(document(leaf, value)), encoding="utf-8")
    except (TypeError, ValueError):
        return  # not expressible in TOML (a table list of mixed items, say)
    try:
        load_settings(path)
    except ConfigError as exc:
        message = str(exc)
    else:
        return
    assert str(path) in message


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8")))
def test_any_file_content_loads_or_is_a_config_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "garbage.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError):
        load_settings(path)
