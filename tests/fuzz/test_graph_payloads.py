"""Every Graph payload model, and the collector behind them, against hostile payloads.

``parse`` must give the model or a ``PayloadError`` for any JSON, for every model in
``graph/models.py`` (found by introspection, so a model added later is fuzzed too). Behind the
models, a whole poll is run with the fake tenant's answers corrupted at random: each poll must
end with a recorded status, what could not be read must come out as ``error`` findings or
``missing`` entries, and nothing may escape as an exception.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from remote_guard.collect.snapshot import SessionSnapshot
from remote_guard.fakegraph.faults import ChaosRates
from remote_guard.fakegraph.harness import import_registers, key_maps
from remote_guard.fakegraph.scenario import load_scenario
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.graph import models
from remote_guard.graph.models import GraphModel, PayloadError, parse
from remote_guard.runtime import build_poller
from tests import databases
from tests.chaos.harness import (
    chaos_settings,
    check_poll_runs,
    facts,
    frozen_clock,
    poll_once,
)
from tests.graph.test_models import EDGE_STRINGS, GRAPH_NAMES, _all_fixture_objects

LIBRARY = Path(__file__).resolve().parent.parent / "scenarios"


def graph_models() -> list[type[BaseModel]]:
    """Every payload model ``graph/models.py`` defines (the base classes excluded)."""
    found = [
        value
        for _, value in inspect.getmembers(models, inspect.isclass)
        if issubclass(value, GraphModel)
        and value.__module__ == models.__name__
        and value is not GraphModel
        and value.model_fields
    ]
    return sorted(found, key=lambda model: model.__name__)


MODELS = graph_models()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(EDGE_STRINGS)
)
keys = st.sampled_from(GRAPH_NAMES) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=4),
    max_leaves=10,
)
# Objects shaped like a model's own payload: its property names with hostile values.
json_objects = st.dictionaries(keys, json_values, max_size=8)


def test_every_model_is_fuzzed() -> None:
    """The introspection finds the models the collector reads (and those added since)."""
    names = {model.__name__ for model in MODELS}
    assert {"Event", "OnlineMeeting", "CallRecord", "CallRecordSession", "Group"} <= names
    assert len(MODELS) >= 45


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=json_objects | json_values)
def test_any_json_gives_the_model_or_a_payload_error(model: type[BaseModel], data: Any) -> None:
    with contextlib.suppress(PayloadError):
        assert isinstance(parse(model, data, what="fuzz"), model)


def _all_leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _all_leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _all_leaves(item, (*path, index))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    return [*value[:head], _replaced(value[head], rest, new), *value[head + 1 :]]


@pytest.mark.parametrize(
    ("model", "original"), _all_fixture_objects(), ids=lambda v: getattr(v, "__name__", "fixture")
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_real_payload_with_several_values_corrupted_parses_or_is_refused(
    model: type[BaseModel], original: Any, data: st.DataObject
) -> None:
    """Microsoft's published examples with up to three values anywhere replaced (a key
    removed, a type changed, a huge string): the model or a PayloadError."""
    damaged = original
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        places = list(_all_leaves(damaged))
        place = data.draw(st.sampled_from(places))
        if place and data.draw(st.booleans()) and isinstance(damaged, dict | list):
            parent_path, key = place[:-1], place[-1]
            parent: Any = damaged
            for part in parent_path:
                parent = parent[part]
            if isinstance(parent, dict):
                damaged = _replaced(
                    damaged, parent_path, {k: v for k, v in parent.items() if k != key}
                )
                continue
        damaged = _replaced(damaged, place, data.draw(json_values))
    with contextlib.suppress(PayloadError):
        assert isinstance(parse(model, damaged, what="fuzz"), model)


# --- the collector behind the models ---------------------------------------------------------------


def hostile_rewriter(seed: int, replacements: list[Any]) -> Callable[[str, Any], Any]:
    """A rewrite for the fake tenant: each Graph answer gets one of ``replacements`` put at a
    random place in it (or, one time in four, is left alone)."""
    rng = random.Random(seed)  # noqa: S311 - a repeatable corruption, not security
    pending = list(replacements)

    def rewrite(path: str, body: Any) -> Any:
        if not pending or rng.random() < 0.25:
            return body
        places = list(_all_leaves(body))
        return _replaced(body, rng.choice(places), pending.pop(0))

    return rewrite


SCENARIOS = ("meeting_chat_pupil_posts", "peer_call_staff_pupil", "direct_chat_teacher_pupil")


@pytest.mark.e2e
@pytest.mark.database
@pytest.mark.parametrize("name", SCENARIOS)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    replacements=st.lists(json_values, min_size=1, max_size=12),
)
def test_a_poll_fed_hostile_payloads_records_errors_and_never_crashes(
    name: str, tmp_path_factory: pytest.TempPathFactory, seed: int, replacements: list[Any]
) -> None:
    scenario = load_scenario(LIBRARY / f"{name}.yaml")
    clock = frozen_clock(scenario.reference_now())
    folder = tmp_path_factory.mktemp("hostile")
    with databases.fresh_database(folder) as database_url:
        with FakeTenantServer(scenario, state_dir=folder / "tenant", clock=clock) as server:
            settings_ = chaos_settings(server, scenario, database_url=database_url, clock=clock)
            poller = build_poller(settings_, clock=clock)
            import_registers(poller, scenario, server, clock=clock)
            server.state.chaos.rewrite = hostile_rewriter(seed, replacements)
            server.state.chaos.start(ChaosRates(), seed=seed)
            status, raised = poll_once(poller)
            sessions, _ = key_maps(scenario, server)
        assert raised == []
        assert status in {"ok", "partial", "failed"}
        assert check_poll_runs(poller.db) == []
        with poller.db() as session:
            from remote_guard.collect.models import SnapshotRow

            stored = [row.data for row in session.query(SnapshotRow)]
        for data in stored:
            # Every stored snapshot is one the rules can read again.
            SessionSnapshot.model_validate(json.loads(json.dumps(data)))
        for fact in facts(poller.db, sessions).values():
            assert fact.status in {"pass", "fail", "warn", "error", "not_applicable"}
